"""The agency as an importable graph, for LangGraph's Agent Server (``langgraph.json`` names it).

A server imports graphs from modules, not from notebooks, so this module holds a small
reference agency: Planner → one Researcher per source (``Send`` fan-out over web, kb and api,
each gathering its queries) → Writer → Editor (back to the Writer until it approves). It uses
`agency_lib.agency`'s nodes and `agency_lib.tools`, and stands in for the capstone's agency
(notebook 09), which can replace it: point ``langgraph.json`` at that module's compiled graph.

The server runs in a process of its own, where no search service was started: the search
service's URL comes from the environment variable ``AGENCY_SEARCH_URL`` (`agency_lib.server`
sets it, and points the Writer and the Editor's chat model at the same service).

The search service holds ``AGENCY_SEARCH_CAPACITY`` requests at once (default 4), so the web and
API requests take a slot of **one limiter per server process** (`service_slots`), which every run
the server executes shares, and a 429 or 503 that still comes back is retried. A run's context can
switch that off (``context={"shared_limiter": False}``) to show what the limiter prevents. With
``BG_JOB_ISOLATED_LOOPS=true`` each job slot has an event loop of its own, for as long as the server
runs, and an `asyncio.Semaphore` cannot be shared between loops: the limiter refuses a second loop
(a run on another slot fails with an error that says so) rather than leave a run waiting for ever.

Notebook 10's smaller experiments use the graphs of `agency_lib.served_naps`, which start faster.
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass
from typing import Any, TypedDict

import httpx
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from agency_lib.agency import AgencyState, editor, planner, writer
from agency_lib.tools import SOURCES, Finding, ServiceError, kb_search, search

__all__ = [
    "agency",
    "SEARCH_URL_ENV",
    "CAPACITY_ENV",
    "ServedContext",
    "search_url",
    "search_capacity",
    "service_slots",
]

SEARCH_URL_ENV = "AGENCY_SEARCH_URL"
CAPACITY_ENV = "AGENCY_SEARCH_CAPACITY"
DEFAULT_CAPACITY = 4
ATTEMPTS = 4  # tries of one search, at most
RETRIED = (429, 503)  # over capacity or rate limit, unavailable: worth another try


def search_url() -> str:
    """The local search service's base URL, from ``AGENCY_SEARCH_URL``; a clear error if unset."""
    url = os.environ.get(SEARCH_URL_ENV, "").strip()
    if not url:
        raise RuntimeError(
            f"{SEARCH_URL_ENV} is not set: the served agency does not know where the search service is. "
            "Start the server with agency_lib.server.agent_server(search_url=service.url)."
        )
    return url


def search_capacity() -> int:
    """The requests in flight the search service holds, from ``AGENCY_SEARCH_CAPACITY`` (default 4)."""
    raw = os.environ.get(CAPACITY_ENV, "").strip() or str(DEFAULT_CAPACITY)
    if not raw.isdigit() or int(raw) < 1:
        raise RuntimeError(f"{CAPACITY_ENV} is the search service's capacity, an int ≥ 1, not {raw!r}.")
    return int(raw)


_slots: asyncio.Semaphore | None = None
_slots_loop: asyncio.AbstractEventLoop | None = None


def service_slots() -> asyncio.Semaphore:
    """The search service's limiter: one per server process, so every run's Researchers share it."""
    global _slots, _slots_loop
    loop = asyncio.get_running_loop()
    if _slots is None or _slots_loop is None or _slots_loop.is_closed():  # a closed loop has no waiters left
        _slots, _slots_loop = asyncio.Semaphore(search_capacity()), loop
    elif loop is not _slots_loop:  # BG_JOB_ISOLATED_LOOPS: a semaphore waiting in two loops can hang a run
        raise RuntimeError(
            "service_slots() is an asyncio.Semaphore of one event loop, and this run is on another "
            "(BG_JOB_ISOLATED_LOOPS=true gives each job slot its own): share a limiter between loops with a "
            "thread-safe one, or serve without isolated loops."
        )
    return _slots


@dataclass
class ServedContext:
    """A run's context (``runs.wait(..., context={...})``)."""

    shared_limiter: bool = True  # False: no limiter and no retries, as the agency was before notebook 10's section 5


class ResearchTask(TypedDict):
    source: str
    queries: list[str]


def _retry_delay(attempt: int, exc: ServiceError) -> float:
    """The service's own wait when it gives one (``retry-after-ms``, else ``Retry-After`` in seconds),
    else a jittered exponential back-off (a 429 for being over capacity carries no header)."""
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 1000), ("retry-after", 1)):
        said = headers.get(name, "").strip()
        if said.isdigit():
            return int(said) / scale
    return random.uniform(0, 0.05 * 2 ** (attempt - 1))


async def limited_search(
    source: str, query: str, client: httpx.AsyncClient, shared_limiter: bool = True
) -> list[Finding]:
    """One web or API search through the process's limiter, retried on a 429 or a 503 (the back-off outside the slot)."""
    if not shared_limiter:
        return await search(source, query, client=client)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            async with service_slots():
                return await search(source, query, client=client)
        except ServiceError as exc:
            if exc.status_code not in RETRIED or attempt == ATTEMPTS:
                raise
            await asyncio.sleep(_retry_delay(attempt, exc))
    raise AssertionError("unreachable")


def fan_out(state: AgencyState) -> list[Send]:
    """One Researcher per source, each with all the Planner's queries."""
    return [Send("researcher", {"source": s, "queries": state["queries"]}) for s in SOURCES]


async def researcher(task: ResearchTask, runtime: Runtime[ServedContext]) -> dict[str, Any]:
    """Search one source for every query at once, through the process's limiter; report progress."""
    progress = get_stream_writer()
    source, queries = task["source"], task["queries"]
    shared = (runtime.context or ServedContext()).shared_limiter  # no context given: None, so the defaults
    if source == "kb":  # the kb is not the search service: no slot
        batches = await asyncio.gather(*(kb_search(q) for q in queries))
    else:
        async with httpx.AsyncClient(base_url=search_url(), timeout=5.0, verify=False) as client:
            batches = await asyncio.gather(*(limited_search(source, q, client, shared) for q in queries))
    findings = [f for batch in batches for f in batch]
    progress({"source": source, "findings": len(findings)})
    return {"findings": findings}


def after_editor(state: AgencyState) -> str:
    return END if state.get("approved") else "writer"


def _build_agency():
    g = StateGraph(AgencyState, context_schema=ServedContext)
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
