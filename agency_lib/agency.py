"""The agency's shared parts: its state and the Planner, Writer and Editor nodes.

The Researcher is what the course teaches, so each notebook writes its own. Writer and
Editor are deterministic and offline by default; set ``AGENCY_CHAT_MODEL`` (for example
``openai:gpt-4o-mini``, with ``langchain`` and the provider package installed and the
provider's key in the environment) to let a real chat model write the draft instead.
"""

from __future__ import annotations

import asyncio
import operator
import os
from typing import Annotated, Any, TypedDict

from .tools import SOURCES

__all__ = ["AgencyState", "plan_queries", "planner", "writer", "editor", "WRITER_LATENCY"]

#: How long the local Writer and Editor take, standing in for a model call.
WRITER_LATENCY = 0.05


class AgencyState(TypedDict, total=False):
    """What flows through the agency. `findings` and `errors` merge with `operator.add`."""

    topic: str
    n_queries: int  # how many queries the Planner makes (default 3); a key the graph must know to keep it
    queries: list[str]
    findings: Annotated[list[dict[str, Any]], operator.add]
    errors: Annotated[list[str], operator.add]
    draft: str
    article: str
    revisions: int
    approved: bool


_ANGLES = ["", "pitfalls", "best practices", "benchmarks", "case study", "checklist", "history", "tools"]


def plan_queries(topic: str, n: int = 3) -> list[str]:
    """The Planner's queries for a topic: the topic itself, then angles on it."""
    if not isinstance(topic, str) or not topic.strip():
        raise ValueError(f"topic must be a non-empty string, e.g. 'async python', not {topic!r}.")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(_ANGLES):
        raise ValueError(f"n must be an int from 1 to {len(_ANGLES)}, not {n!r}.")
    topic = topic.strip()
    return [f"{topic} {angle}".strip() for angle in _ANGLES[:n]]


async def planner(state: AgencyState) -> dict[str, Any]:
    """Planner node: turn the topic into search queries (``state['n_queries']``, default 3)."""
    n = state.get("n_queries", 3)
    return {"queries": plan_queries(state["topic"], n)}


def _draft_offline(topic: str, findings: list[dict[str, Any]]) -> str:
    by_source: dict[str, list[dict[str, Any]]] = {}
    for f in sorted(findings, key=lambda f: (f.get("source", ""), f.get("query", ""), f.get("title", ""))):
        by_source.setdefault(f.get("source", "?"), []).append(f)
    lines = [f"# {topic.strip().title()}", ""]
    for source in [s for s in SOURCES if s in by_source] + sorted(set(by_source) - set(SOURCES)):
        items = by_source[source]
        lines.append(f"- {source}: {len(items)} findings, e.g. {items[0].get('title', '')!r}")
    if not findings:
        lines.append("- (no findings: the research came back empty)")
    return "\n".join(lines)


async def _draft_with_model(model_name: str, topic: str, findings: list[dict[str, Any]]) -> str:
    try:
        from langchain.chat_models import init_chat_model  # type: ignore[import-not-found]
    except ImportError as exc:
        raise RuntimeError(
            f"AGENCY_CHAT_MODEL={model_name!r} asks for a real chat model, but the package "
            "'langchain' (and the provider's package) is not installed. Unset AGENCY_CHAT_MODEL "
            "to use the offline writer, or `pip install langchain langchain-openai`."
        ) from exc
    model = init_chat_model(model_name)
    notes = "\n".join(f"- [{f.get('source')}] {f.get('title')}" for f in findings[:30])
    reply = await model.ainvoke(f"Write a 120-word brief on {topic!r} from these notes:\n{notes}")
    return str(reply.content)


async def writer(state: AgencyState) -> dict[str, Any]:
    """Writer node: a draft from the findings (offline and deterministic unless AGENCY_CHAT_MODEL is set)."""
    findings = state.get("findings", [])
    model_name = os.environ.get("AGENCY_CHAT_MODEL", "").strip()
    if model_name:
        return {"draft": await _draft_with_model(model_name, state["topic"], findings)}
    await asyncio.sleep(WRITER_LATENCY)
    return {"draft": _draft_offline(state["topic"], findings)}


async def editor(state: AgencyState) -> dict[str, Any]:
    """Editor node: approve a draft that cites every source, else send it back (counted in `revisions`)."""
    await asyncio.sleep(WRITER_LATENCY)
    draft = state.get("draft", "")
    missing = [s for s in SOURCES if f"- {s}:" not in draft]
    revisions = state.get("revisions", 0) + 1
    approved = not missing or revisions >= 3
    article = draft if not missing else draft + "\n\n(editor: missing sources " + ", ".join(missing) + ")"
    return {"article": article, "revisions": revisions, "approved": approved}
