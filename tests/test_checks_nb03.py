"""Notebook 03's self-checks: a wrong answer gets ❌ and a hint, a right one ✅, bad arguments a clear error."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.types import Send

from agency_lib.checks import nb03

SOURCES = ("web", "kb", "api")


# -- check_fanout -------------------------------------------------------------------------
def right_fan_out(state: dict[str, Any]) -> list[Send]:
    return [Send("search_one", {"source": s, "query": q}) for q in state["queries"] for s in state["sources"]]


def test_fanout_right_answer_passes() -> None:
    fb = nb03.check_fanout(right_fan_out)
    assert fb.ok and str(fb).startswith("✅")


def test_fanout_order_does_not_matter() -> None:
    def by_source(state: dict[str, Any]) -> list[Send]:
        return [Send("search_one", {"query": q, "source": s}) for s in state["sources"] for q in state["queries"]]

    assert nb03.check_fanout(by_source)


def test_fanout_does_not_let_the_learner_mutate_the_samples() -> None:
    def greedy(state: dict[str, Any]) -> list[Send]:
        state["queries"].append("extra")
        return []

    nb03.check_fanout(greedy)
    assert nb03.SAMPLE_STATES[0]["queries"] == ["async python", "async python pitfalls"]


@pytest.mark.parametrize(
    ("fn", "says", "hint"),
    [
        (lambda state: [], "empty list", "6 Sends: 2 queries × 3 sources"),
        (
            lambda state: [Send("search_one", {"source": "web", "query": q}) for q in state["queries"]],
            "2 Sends",
            "for source in state['sources']",
        ),
        (  # the global sources instead of the state's: right on the first sample, wrong on the second
            lambda state: [Send("search_one", {"source": s, "query": q}) for q in state["queries"] for s in SOURCES],
            "expected 2 (1 query × 2 sources)",
            "state['sources']",
        ),
        (
            lambda state: [
                Send("search", {"source": s, "query": q}) for q in state["queries"] for s in state["sources"]
            ],
            "node 'search'",
            "Send('search_one', payload)",
        ),
        (
            lambda state: [Send("search_one", {"query": q}) for q in state["queries"] for s in state["sources"]],
            "no 'source' key",
            "task['source']",
        ),
        (
            lambda state: [Send("search_one", (s, q)) for q in state["queries"] for s in state["sources"]],
            "not a dict payload",
            "the payload is the task's whole input",
        ),
        (
            lambda state: [{"source": s, "query": q} for q in state["queries"] for s in state["sources"]],
            "not a Send",
            "from langgraph.types import Send",
        ),
        (lambda state: Send("search_one", {"source": "web", "query": "x"}), "one Send, not a list", "return a list"),
        (lambda state: "search_one", "not a list", "one Send"),
        (lambda state: state["query"], "raised KeyError", "state['queries']"),
        (
            lambda state: [
                Send("search_one", {"source": s, "query": state["queries"][0]})
                for _ in state["queries"]
                for s in state["sources"]
            ],
            "missing",
            "exactly once",
        ),
    ],
)
def test_fanout_wrong_answers_say_what_is_wrong(fn: Any, says: str, hint: str) -> None:
    fb = nb03.check_fanout(fn)
    text = str(fb)
    assert not fb and text.startswith("❌")
    assert says in text, text
    assert "hint:" in text and hint in text, text


def test_fanout_async_def_is_explained() -> None:
    async def fan_out(state: dict[str, Any]) -> list[Send]:
        return right_fan_out(state)

    fb = nb03.check_fanout(fan_out)
    assert not fb and "coroutine" in fb.message and "plain `def`" in str(fb)


def test_fanout_rejects_a_non_callable() -> None:
    with pytest.raises(TypeError, match="fan-out function itself"):
        nb03.check_fanout([Send("search_one", {})])  # type: ignore[arg-type]


# -- check_report_state ------------------------------------------------------------------
class NoReducers(TypedDict, total=False):
    topic: str
    findings: list[dict[str, Any]]
    counts: dict[str, int]


class AddForBoth(TypedDict, total=False):
    topic: str
    findings: Annotated[list[dict[str, Any]], operator.add]
    counts: Annotated[dict[str, int], operator.add]


class KeepsLast(TypedDict, total=False):
    topic: str
    findings: Annotated[list[dict[str, Any]], lambda old, new: new]
    counts: Annotated[dict[str, int], operator.or_]


class Right(TypedDict, total=False):
    topic: str
    findings: Annotated[list[dict[str, Any]], operator.add]
    counts: Annotated[dict[str, int], operator.or_]


class NoCounts(TypedDict, total=False):
    findings: Annotated[list[dict[str, Any]], operator.add]


def test_report_state_right_answer_passes() -> None:
    fb = asyncio.run(nb03.check_report_state(Right))
    assert fb.ok and "6 findings" in str(fb) and "{'api': 2, 'kb': 2, 'web': 2}" in str(fb)


def test_report_state_merge_function_passes() -> None:
    class Custom(TypedDict, total=False):
        findings: Annotated[list[dict[str, Any]], operator.add]
        counts: Annotated[dict[str, int], lambda a, b: {**a, **b}]

    assert asyncio.run(nb03.check_report_state(Custom))


def test_report_state_without_reducers_names_the_key() -> None:
    fb = asyncio.run(nb03.check_report_state(NoReducers))
    assert not fb
    assert "Can receive only one value per step" in fb.message
    assert "Annotated[" in str(fb)


def test_report_state_add_on_dicts_points_at_or() -> None:
    fb = asyncio.run(nb03.check_report_state(AddForBoth))
    assert not fb and "TypeError" in fb.message and "operator.or_" in str(fb)


def test_report_state_lossy_reducer_is_caught() -> None:
    fb = asyncio.run(nb03.check_report_state(KeepsLast))
    assert not fb and "expected 6" in fb.message and "operator.add" in str(fb)


def test_report_state_missing_key() -> None:
    fb = asyncio.run(nb03.check_report_state(NoCounts))
    assert not fb and "'counts'" in fb.message


def test_report_state_rejects_an_instance() -> None:
    with pytest.raises(TypeError, match="state class itself"):
        asyncio.run(nb03.check_report_state({"findings": []}))  # type: ignore[arg-type]


# -- check_writer_runs -------------------------------------------------------------------
class Steps(TypedDict, total=False):
    topic: str


async def _quick(state: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {}


def lengths_graph(join: bool = False) -> Any:
    """kb alone, web → web_rank, api → api_details → api_rank; plain edges (or one join) into the writer."""
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(Steps)
    for name in ("planner", "web", "kb", "api", "web_rank", "api_details", "api_rank", "writer"):
        g.add_node(name, _quick)
    g.add_edge(START, "planner")
    for source in SOURCES:
        g.add_edge("planner", source)
    g.add_edge("web", "web_rank")
    g.add_edge("api", "api_details")
    g.add_edge("api_details", "api_rank")
    if join:
        g.add_edge(["kb", "web_rank", "api_rank"], "writer")
    else:
        for end in ("kb", "web_rank", "api_rank"):
            g.add_edge(end, "writer")
    g.add_edge("writer", END)
    return g.compile()


def test_writer_runs_no_prediction_runs_nothing_and_gives_nothing_away() -> None:
    fb = asyncio.run(nb03.check_writer_runs(None, object()))  # not even a graph: nothing runs
    assert not fb and "no prediction yet" in fb.message
    assert "super-step" not in str(fb)


@pytest.mark.parametrize("bad", ["3", 2.5, True])
def test_writer_runs_prediction_must_be_a_whole_number(bad: Any) -> None:
    fb = asyncio.run(nb03.check_writer_runs(bad, lengths_graph()))
    assert not fb and "not a whole number" in fb.message


def test_writer_runs_right_prediction_names_the_steps() -> None:
    fb = asyncio.run(nb03.check_writer_runs(3, lengths_graph()))
    assert fb.ok, str(fb)
    assert "3 times, in super-steps 3, 4 and 5" in fb.message
    assert "kb ran in super-step 2; web_rank ran in super-step 3; api_rank ran in super-step 4" in fb.message


def test_writer_runs_wrong_prediction_says_what_ran() -> None:
    fb = asyncio.run(nb03.check_writer_runs(1, lengths_graph()))
    assert not fb and "you predicted 1; the Writer ran 3 times" in fb.message
    assert "hint:" in str(fb) and "plain edge" in str(fb)


def test_writer_runs_with_a_join_runs_once() -> None:
    fb = asyncio.run(nb03.check_writer_runs(1, lengths_graph(join=True)))
    assert fb.ok and "1 time, in super-step 5" in fb.message
    assert "a join waits for all of kb, web_rank, api_rank" in fb.message, fb.message


def test_writer_runs_rejects_what_is_not_a_graph() -> None:
    with pytest.raises(TypeError, match="compiled graph"):
        asyncio.run(nb03.check_writer_runs(1, lambda state: state))


def test_writer_runs_needs_a_writer_node() -> None:
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(Steps)
    g.add_node("only", _quick)
    g.add_edge(START, "only")
    g.add_edge("only", END)
    with pytest.raises(ValueError, match="no node named 'writer'"):
        asyncio.run(nb03.check_writer_runs(1, g.compile()))
