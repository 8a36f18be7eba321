"""The notebook 02 self-checks: a wrong answer gets ❌ and a hint, a right one ✅, bad arguments an error.

The graphs here use small offline nodes (no search service), so the tests are fast.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langgraph.graph import END, START, StateGraph

from agency_lib import AgencyState, editor, planner, writer
from agency_lib.checks import nb02


async def researcher(state: AgencyState) -> dict[str, Any]:
    """An offline Researcher: one finding per source and query."""
    await asyncio.sleep(0)
    return {
        "findings": [
            {"source": s, "query": q, "title": f"{s} {q}"} for q in state["queries"] for s in ("web", "kb", "api")
        ]
    }


def build(with_editor: bool = True, writer_to_end: bool = False, writer_to_editor: bool = True):
    """The agency, with the Editor wired in (or one of the classic mistakes)."""

    def builder():
        g = StateGraph(AgencyState)
        g.add_node("planner", planner)
        g.add_node("researcher", researcher)
        g.add_node("writer", writer)
        g.add_edge(START, "planner")
        g.add_edge("planner", "researcher")
        g.add_edge("researcher", "writer")
        if with_editor:
            g.add_node("editor", editor)
            if writer_to_editor:
                g.add_edge("writer", "editor")
            g.add_edge("editor", END)
        if writer_to_end or not with_editor:
            g.add_edge("writer", END)
        return g.compile()

    return builder


async def run_ok(app, topic):
    return await app.ainvoke({"topic": topic})


async def run_sync_invoke(app, topic):
    return app.invoke({"topic": topic})


async def run_await_invoke(app, topic):
    return await app.invoke({"topic": topic})


async def run_no_await(app, topic):
    return app.ainvoke({"topic": topic})


def run_plain_def(app, topic):
    return app.invoke({"topic": topic})


async def run_other_graph(app, topic):
    return await build(with_editor=False)().ainvoke({"topic": topic})


def editor_check(builder, run):
    return asyncio.run(nb02.check_editor(builder, run))


# -- check_editor ---------------------------------------------------------------------
def test_editor_right_answer_passes():
    fb = editor_check(build(), run_ok)
    assert fb and str(fb).startswith("✅") and "approved=True" in str(fb)


def test_editor_accepts_the_compiled_graph_too():
    assert editor_check(build()(), run_ok)


@pytest.mark.parametrize(
    ("builder", "run", "words", "hint"),
    [
        (build(with_editor=False), run_ok, "no 'editor' node", 'add_node("editor", editor)'),
        (build(writer_to_editor=False), run_ok, "no edge writer → editor", 'add_edge("writer", "editor")'),
        (build(writer_to_end=True), run_ok, "edge to END", 'add_edge("editor", END)'),
        (build(), run_sync_invoke, "synchronous method", "await app.ainvoke"),
        (build(), run_await_invoke, "synchronous method", "invoke raises before the await"),
        (build(), run_no_await, "returned a coroutine", "return await app.ainvoke"),
        (build(), run_plain_def, "is a plain def", "async def run_plain_def"),
        (build(), run_other_graph, "no 'article'", "passed in as `app`"),
    ],
)
def test_editor_wrong_answers_say_what_is_missing(builder, run, words, hint):
    fb = editor_check(builder, run)
    assert not fb
    text = str(fb)
    assert text.startswith("❌") and words in text and hint in text


def test_editor_bad_arguments_raise_clear_errors():
    with pytest.raises(TypeError, match="builder function"):
        editor_check(42, run_ok)
    with pytest.raises(TypeError, match="graph.compile"):
        editor_check(lambda: StateGraph(AgencyState), run_ok)
    with pytest.raises(TypeError, match="async run function"):
        editor_check(build(), "run_agency")
    with pytest.raises(ValueError, match="topic"):
        asyncio.run(nb02.check_editor(build(), run_ok, topic=""))


# -- check_node_order -------------------------------------------------------------------
AGENCY = build(with_editor=False)()


async def order_ok(app, inputs):
    names = []
    async for chunk in app.astream(inputs, stream_mode="updates"):
        names.extend(chunk)
    return names


async def order_empty(app, inputs):
    return []


async def order_values(app, inputs):
    names = []
    async for chunk in app.astream(inputs, stream_mode="values"):
        names.extend(chunk)
    return names


async def order_sorted(app, inputs):
    return sorted(await order_ok(app, inputs))


async def order_hardcoded(app, inputs):
    return ["planner", "researcher", "writer"]


async def order_sync_stream(app, inputs):
    return [name for chunk in app.stream(inputs, stream_mode="updates") for name in chunk]


async def order_not_a_list(app, inputs):
    return "planner researcher writer"


def order_check(fn, app=AGENCY):
    return asyncio.run(nb02.check_node_order(fn, app))


def test_node_order_right_answer_passes():
    fb = order_check(order_ok)
    assert fb and "planner → researcher → writer" in str(fb)


@pytest.mark.parametrize(
    ("fn", "words", "hint"),
    [
        (order_empty, "empty list", 'stream_mode="updates"'),
        (order_values, "state keys", 'stream_mode="values"'),
        (order_sorted, "wrong order", "do not sort"),
        (order_hardcoded, "hardcoded", "not from a fixed list"),
        (order_sync_stream, "synchronous method", "app.astream"),
        (order_not_a_list, "not a list of node names", "names = []"),
    ],
)
def test_node_order_wrong_answers_get_hints(fn, words, hint):
    fb = order_check(fn)
    assert not fb
    assert str(fb).startswith("❌") and words in str(fb) and hint in str(fb)


def test_node_order_bad_arguments_raise_clear_errors():
    with pytest.raises(TypeError, match="async function"):
        order_check(None)
    with pytest.raises(TypeError, match="compiled graph"):
        order_check(order_ok, app="agency")
    with pytest.raises(TypeError, match="inputs must be a dict"):
        asyncio.run(nb02.check_node_order(order_ok, AGENCY, inputs=["topic"]))


# -- check_prediction: a chain of two gathering nodes, simulated waits (no service) --------------
def two_gathering_nodes():
    from agency_lib import simulated_search

    async def first(state: AgencyState) -> dict[str, Any]:
        found = await asyncio.gather(*(simulated_search("web", q, delay=0.1) for q in state["queries"]))
        return {"findings": [f for batch in found for f in batch]}

    async def second(state: AgencyState) -> dict[str, Any]:
        found = await asyncio.gather(*(simulated_search("kb", q, delay=0.08) for q in state["queries"]))
        return {"findings": [f for batch in found for f in batch]}

    g = StateGraph(AgencyState)
    g.add_node("first", first)
    g.add_node("second", second)
    g.add_edge(START, "first")
    g.add_edge("first", "second")
    g.add_edge("second", END)
    return g.compile()


INPUTS = {"queries": ["a", "b", "c"]}


@pytest.mark.parametrize(
    ("predicted", "ok", "says"),
    [
        (0.18, True, "one after the other"),  # 0.1 + 0.08: the nodes add up, the calls inside overlap
        (0.1, False, "longest call alone"),
        (0.54, False, "sum of all 6 calls"),
        (3.0, False, "measured"),
        (None, False, "write it first"),
        ("0.2", False, "number of seconds"),
    ],
)
def test_the_prediction_is_compared_with_a_measurement(predicted, ok, says):
    fb = asyncio.run(nb02.check_prediction(predicted, two_gathering_nodes(), INPUTS))
    assert fb.ok is ok, fb
    assert says in fb.message
    assert ok or fb.hints


def test_the_prediction_check_wants_a_graph_and_inputs():
    with pytest.raises(TypeError, match="compiled graph"):
        asyncio.run(nb02.check_prediction(0.2, "agency", INPUTS))
    with pytest.raises(TypeError, match="input dict"):
        asyncio.run(nb02.check_prediction(0.2, two_gathering_nodes(), ["a"]))
