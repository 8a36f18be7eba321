"""The agency's shared parts: the Planner's queries, and the Writer and the Editor, which ask the
local service's chat model through ChatOpenAI (or, with no service running, give the same answer
without HTTP), alone and wired into a small graph run with ainvoke. Environment variables point
the same code at another provider."""

from __future__ import annotations

import asyncio

import pytest
from langgraph.graph import END, START, StateGraph

from agency_lib import SOURCES, AgencyState, SearchService, editor, plan_queries, planner, simulated_search, writer
from agency_lib import agency as agency_module
from agency_lib.agency import chat_model, editor_verdict
from agency_lib.clients import close_clients


@pytest.fixture(scope="module")
def local_service():
    with SearchService(chat_ttft=0.0) as svc:
        yield svc


@pytest.fixture(autouse=True, params=["local service", "no service"])
def mode(request, monkeypatch, local_service):
    """Every Writer and Editor test runs twice: against the local chat model, and with no service."""
    for name in ("AGENCY_CHAT_MODEL", "AGENCY_CHAT_BASE_URL", "AGENCY_CHAT_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    if request.param == "no service":

        def no_service():
            raise RuntimeError("No local search service is running.")

        monkeypatch.setattr(agency_module, "current_service", no_service)
    else:
        monkeypatch.setattr(agency_module, "current_service", lambda: local_service)
    local_service.scenario(chat_ttft=0.0)
    return request.param


def run(coro):
    async def main():
        try:
            return await coro
        finally:
            await close_clients()

    return asyncio.run(main())


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
    assert run(planner({"topic": "graphs", "n_queries": 2})) == {"queries": ["graphs", "graphs pitfalls"]}


# -- the Writer and the Editor ----------------------------------------------------------------------
def test_writer_drafts_one_line_per_source_in_source_order():
    draft = run(writer({"topic": "async python", "findings": FINDINGS}))["draft"]
    assert draft == (
        "# Async Python\n\n- web: 2 findings, e.g. 'W1'\n- kb: 1 findings, e.g. 'K1'\n- api: 1 findings, e.g. 'A1'"
    )


def test_writer_is_deterministic_whatever_the_order_of_the_findings():
    drafts = {run(writer({"topic": "t", "findings": order}))["draft"] for order in (FINDINGS, FINDINGS[::-1])}
    assert len(drafts) == 1


def test_writer_says_when_the_research_came_back_empty():
    assert "(no findings: the research came back empty)" in run(writer({"topic": "t"}))["draft"]


def test_editor_approves_a_draft_that_cites_every_source():
    draft = run(writer({"topic": "t", "findings": FINDINGS}))["draft"]
    assert run(editor({"draft": draft})) == {"article": draft, "revisions": 1, "approved": True}


def test_editor_sends_back_a_draft_with_missing_sources():
    out = run(editor({"draft": "# T\n\n- web: 1 findings, e.g. 'W1'"}))
    assert out["approved"] is False and out["revisions"] == 1
    assert out["article"].endswith("(editor: missing sources kb, api)")


def test_editor_gives_up_and_approves_at_the_third_revision():
    assert run(editor({"draft": "# T", "revisions": 2}))["approved"] is True


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
    out = run(agency(researcher).ainvoke({"topic": "async python"}))
    assert out["queries"] == plan_queries("async python")
    assert len(out["findings"]) == 9  # 3 queries x 3 sources, merged by operator.add
    assert out["approved"] is True and out["revisions"] == 1
    assert out["article"].startswith("# Async Python\n\n- web: 3 findings")


def test_the_planner_reads_n_queries_from_the_graph_input():
    out = run(agency(researcher).ainvoke({"topic": "graphs", "n_queries": 2}))
    assert out["queries"] == ["graphs", "graphs pitfalls"]


def test_the_editor_loop_stops_after_three_revisions():
    out = run(agency(web_only_researcher).ainvoke({"topic": "t"}))
    assert out["revisions"] == 3 and out["approved"] is True
    assert "(editor: missing sources kb, api)" in out["article"]


# -- which chat model -------------------------------------------------------------------------------
def test_the_writer_asks_the_local_chat_model_once_per_draft(mode, local_service):
    run(writer({"topic": "t", "findings": FINDINGS}))
    assert local_service.chat_stats().requests == (1 if mode == "local service" else 0)


def test_the_default_chat_model_is_chat_openai_on_the_local_service(mode, local_service):
    if mode == "no service":
        with pytest.raises(RuntimeError, match="No local search service is running"):
            chat_model()
        return
    model = chat_model(max_retries=0, timeout=3)
    assert type(model).__name__ == "ChatOpenAI"
    assert (model.openai_api_base, model.model_name, model.max_retries) == (local_service.chat_url, "agency-local", 0)


def test_environment_variables_point_the_same_code_at_another_provider(mode, monkeypatch):
    with SearchService(chat_ttft=0.0) as provider:  # stands in for a real provider: only its URL is known
        monkeypatch.setenv("AGENCY_CHAT_BASE_URL", provider.chat_url)
        monkeypatch.setenv("AGENCY_CHAT_MODEL", "openai:some-model")
        monkeypatch.setenv("AGENCY_CHAT_API_KEY", "sk-test")
        draft = run(writer({"topic": "t", "findings": FINDINGS}))["draft"]
        assert draft.startswith("# T\n\n- web: 2 findings")
        assert provider.chat_stats().requests == 1
        assert chat_model().model_name == "some-model"


def test_a_provider_without_a_key_is_a_clear_error_never_a_prompt(mode, monkeypatch):
    monkeypatch.setenv("AGENCY_CHAT_MODEL", "gpt-4o-mini")
    with pytest.raises(RuntimeError, match="no key is set: set AGENCY_CHAT_API_KEY"):
        run(writer({"topic": "t", "findings": FINDINGS}))


@pytest.mark.parametrize("kwargs", [{"max_retries": -1}, {"max_retries": 1.5}, {"timeout": 0}])
def test_chat_model_checks_its_arguments(kwargs):
    with pytest.raises(ValueError, match="max_retries is|timeout is"):
        chat_model(**kwargs)


@pytest.mark.parametrize(
    "reply, missing",
    [
        ("approved", []),
        ("Approved.", []),
        ("missing: kb, api", ["kb", "api"]),
        ("The draft lacks api.", ["api"]),
        ("no", ["web", "kb", "api"]),
    ],
)
def test_the_editor_reads_a_verdict(reply, missing):
    assert editor_verdict(reply) == missing


def test_max_retries_0_leaves_the_retrying_to_the_node_and_the_default_retries_in_the_client(mode, local_service):
    if mode == "no service":
        return  # no HTTP, nothing to retry
    with local_service.scenario(chat_ttft=0.0, chat_failure_rate=1.0, chat_retry_after=0.0):
        with pytest.raises(Exception, match="503|500"):
            run(writer({"topic": "t", "findings": FINDINGS}, max_retries=0))
        assert local_service.chat_stats().requests == 1  # one request: the client did not retry
    with local_service.scenario(chat_ttft=0.0, chat_failure_rate=1.0, chat_retry_after=0.0):
        with pytest.raises(Exception, match="503|500"):
            run(editor({"draft": "d"}))
        assert local_service.chat_stats().requests == 3  # the SDK's default: 1 + 2 retries


def test_chat_model_takes_a_rate_limiter_for_a_quota(mode, local_service):
    if mode == "no service":
        return
    from langchain_core.rate_limiters import InMemoryRateLimiter

    limiter = InMemoryRateLimiter(requests_per_second=50)
    assert chat_model(max_retries=0, rate_limiter=limiter).rate_limiter is limiter
