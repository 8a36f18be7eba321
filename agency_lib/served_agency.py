"""The agency as an importable graph, for LangGraph's Agent Server (``langgraph.json`` names it).

A server imports graphs from modules, not from notebooks, so this module holds a small
reference agency: Planner → one Researcher per source (``Send`` fan-out over web, kb and api,
each gathering its queries) → Writer → Editor (back to the Writer until it approves). It uses
`agency_lib.agency`'s nodes and `agency_lib.tools`, and stands in for the capstone's agency
(notebook 09), which can replace it: point ``langgraph.json`` at that module's compiled graph.

The server runs in a process of its own, where no search service was started: the search
service's URL comes from the environment variable ``AGENCY_SEARCH_URL`` (`agency_lib.server`
sets it, and points the Writer and the Editor's chat model at the same service).

Notebook 10's smaller experiments use the graphs of `agency_lib.served_naps`, which start faster.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, TypedDict

import httpx
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from agency_lib.agency import AgencyState, editor, planner, writer
from agency_lib.tools import SOURCES, kb_search, search

__all__ = ["agency", "SEARCH_URL_ENV", "search_url"]

SEARCH_URL_ENV = "AGENCY_SEARCH_URL"


def search_url() -> str:
    """The local search service's base URL, from ``AGENCY_SEARCH_URL``; a clear error if unset."""
    url = os.environ.get(SEARCH_URL_ENV, "").strip()
    if not url:
        raise RuntimeError(
            f"{SEARCH_URL_ENV} is not set: the served agency does not know where the search service is. "
            "Start the server with agency_lib.server.agent_server(search_url=service.url)."
        )
    return url


class ResearchTask(TypedDict):
    source: str
    queries: list[str]


def fan_out(state: AgencyState) -> list[Send]:
    """One Researcher per source, each with all the Planner's queries."""
    return [Send("researcher", {"source": s, "queries": state["queries"]}) for s in SOURCES]


async def researcher(task: ResearchTask) -> dict[str, Any]:
    """Search one source for every query at once; report progress on the custom stream."""
    progress = get_stream_writer()
    source, queries = task["source"], task["queries"]
    if source == "kb":
        batches = await asyncio.gather(*(kb_search(q) for q in queries))
    else:
        async with httpx.AsyncClient(base_url=search_url(), timeout=5.0, verify=False) as client:
            batches = await asyncio.gather(*(search(source, q, client=client) for q in queries))
    findings = [f for batch in batches for f in batch]
    progress({"source": source, "findings": len(findings)})
    return {"findings": findings}


def after_editor(state: AgencyState) -> str:
    return END if state.get("approved") else "writer"


def _build_agency():
    g = StateGraph(AgencyState)
    g.add_node("planner", planner)
    g.add_node("researcher", researcher)
    g.add_node("writer", writer)
    g.add_node("editor", editor)
    g.add_edge(START, "planner")
    g.add_conditional_edges("planner", fan_out, ["researcher"])
    g.add_edge("researcher", "writer")
    g.add_edge("writer", "editor")
    g.add_conditional_edges("editor", after_editor, ["writer", END])
    return g.compile()


agency = _build_agency()
