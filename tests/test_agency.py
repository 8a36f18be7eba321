"""The agency's shared parts: the Planner's queries, the offline Writer and the Editor, alone
and wired into a small graph run with ainvoke."""

from __future__ import annotations

import asyncio

import pytest
from langgraph.graph import END, START, StateGraph

from agency_lib import SOURCES, AgencyState, editor, plan_queries, planner, simulated_search, writer


@pytest.fixture(autouse=True)
def offline_writer(monkeypatch):
    monkeypatch.delenv("AGENCY_CHAT_MODEL", raising=False)


def finding(source: str, query: str, title: str) -> dict:
    return {"source": source, "query": query, "title": title}


FINDINGS = [finding("web", "b", "W2"), finding("api", "a", "A1"), finding("kb", "a", "K1"), finding("web", "a", "W1")]


# -- the Planner -----------------------------------------------------------------------------------
def test_plan_queries_starts_with_the_topic_then_adds_angles():
    assert plan_queries("async python") == ["async python", "async python pitfalls", "async python best practices"]
    assert plan_queries("  graphs  ", 1) == ["graphs"]
    assert len(plan_queries("graphs", 8)) == 8


@pytest.mark.parametrize("topic", ["", "   ", None, 3])
def test_plan_queries_needs_a_topic(topic):
    with pytest.raises(ValueError, match="topic must be a non-empty string"):
        plan_queries(topic)


@pytest.mark.parametrize("n", [0, 9, True, 2.0, "3"])
def test_plan_queries_needs_n_from_1_to_8(n):
    with pytest.raises(ValueError, match="n must be an int from 1 to 8"):
        plan_queries("graphs", n)


def test_planner_node_returns_the_queries():
    assert asyncio.run(planner({"topic": "graphs", "n_queries": 2})) == {"queries": ["graphs", "graphs pitfalls"]}


# -- the Writer and the Editor ----------------------------------------------------------------------
def test_writer_drafts_one_line_per_source_in_source_order():
    draft = asyncio.run(writer({"topic": "async python", "findings": FINDINGS}))["draft"]
    assert draft == (
        "# Async Python\n\n- web: 2 findings, e.g. 'W1'\n- kb: 1 findings, e.g. 'K1'\n- api: 1 findings, e.g. 'A1'"
    )


def test_writer_is_deterministic_whatever_the_order_of_the_findings():
    drafts = {asyncio.run(writer({"topic": "t", "findings": order}))["draft"] for order in (FINDINGS, FINDINGS[::-1])}
    assert len(drafts) == 1


def test_writer_says_when_the_research_came_back_empty():
    assert "(no findings: the research came back empty)" in asyncio.run(writer({"topic": "t"}))["draft"]


def test_editor_approves_a_draft_that_cites_every_source():
    draft = asyncio.run(writer({"topic": "t", "findings": FINDINGS}))["draft"]
    assert asyncio.run(editor({"draft": draft})) == {"article": draft, "revisions": 1, "approved": True}


def test_editor_sends_back_a_draft_with_missing_sources():
    out = asyncio.run(editor({"draft": "# T\n\n- web: 1 findings, e.g. 'W1'"}))
    assert out["approved"] is False and out["revisions"] == 1
    assert out["article"].endswith("(editor: missing sources kb, api)")


def test_editor_gives_up_and_approves_at_the_third_revision():
    assert asyncio.run(editor({"draft": "# T", "revisions": 2}))["approved"] is True


# -- the three nodes in a small graph ------------------------------------------------------------------
async def researcher(state: AgencyState) -> dict:
    batches = await asyncio.gather(*(simulated_search(s, q, delay=0.0) for q in state["queries"] for s in SOURCES))
    return {"findings": [f for batch in batches for f in batch]}


async def web_only_researcher(state: AgencyState) -> dict:
    return {"findings": [finding("web", q, f"about {q}") for q in state["queries"]]}


def agency(research) -> object:
    g = StateGraph(AgencyState)
    g.add_node("planner", planner)
    g.add_node("researcher", research)
    g.add_node("writer", writer)
    g.add_node("editor", editor)
    g.add_edge(START, "planner")
    g.add_edge("planner", "researcher")
    g.add_edge("researcher", "writer")
    g.add_edge("writer", "editor")
    g.add_conditional_edges("editor", lambda s: END if s["approved"] else "writer", ["writer", END])
    return g.compile()


def test_the_agency_runs_end_to_end_with_ainvoke():
    out = asyncio.run(agency(researcher).ainvoke({"topic": "async python"}))
    assert out["queries"] == plan_queries("async python")
    assert len(out["findings"]) == 9  # 3 queries x 3 sources, merged by operator.add
    assert out["approved"] is True and out["revisions"] == 1
    assert out["article"].startswith("# Async Python\n\n- web: 3 findings")


def test_the_planner_reads_n_queries_from_the_graph_input():
    out = asyncio.run(agency(researcher).ainvoke({"topic": "graphs", "n_queries": 2}))
    assert out["queries"] == ["graphs", "graphs pitfalls"]


def test_the_editor_loop_stops_after_three_revisions():
    out = asyncio.run(agency(web_only_researcher).ainvoke({"topic": "t"}))
    assert out["revisions"] == 3 and out["approved"] is True
    assert "(editor: missing sources kb, api)" in out["article"]
