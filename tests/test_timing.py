"""The Recorder: spans across concurrent tasks and threads, the decorator, outcomes, the active
recorder, the summary, and the NodeTimer callback on real LangGraph runs."""

from __future__ import annotations

import asyncio
import operator
import re
import threading
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from nbval.plugin import get_sanitize_patterns

from agency_lib import Recorder, Summary, simulated_search, simulated_search_blocking
from agency_lib.timing import active_recorder

SLEEP = 0.1


# -- spans across concurrent tasks ---------------------------------------------------------
async def _five_sleeps(rec: Recorder) -> None:
    async def one(i: int) -> None:
        async with rec.span(f"task {i}", group="sleep"):
            await asyncio.sleep(SLEEP)

    await asyncio.gather(*(one(i) for i in range(5)))


def test_gathered_sleeps_give_one_span_each_and_all_overlap():
    rec = Recorder("gather")
    asyncio.run(_five_sleeps(rec))
    spans = rec.spans
    assert sorted(s.name for s in spans) == [f"task {i}" for i in range(5)]
    assert max(s.start for s in spans) < min(s.end for s in spans)  # one moment when all five run


def test_summary_of_gathered_sleeps_shows_peak_concurrency_and_overlap():
    rec = Recorder("gather")
    asyncio.run(_five_sleeps(rec))
    summary = rec.summary()
    assert summary.spans == 5
    assert summary.peak_concurrency == 5
    assert 3 < summary.overlap <= 5 + 1e-9  # busy / wall: 5 overlapping waits ≈ 5 in flight (never more)
    assert "overlap" in str(summary) and "peak concurrency 5" in str(summary)


def test_summary_text_calls_busy_over_wall_overlap_not_speedup():
    summary = Summary(spans=3, wall=0.30, busy=0.73, longest=0.30, peak_concurrency=3, errors=1, cancelled=0)
    assert str(summary) == (
        "3 spans, wall 0.30 s, busy 0.73 s, overlap 2.4× (busy ÷ wall), peak concurrency 3, 1 failed, 0 cancelled"
    )
    assert "speed" not in str(summary)
    assert summary.speedup == summary.overlap == pytest.approx(0.73 / 0.30)  # the old name still works


def sanitised(text: str) -> str:
    """What nbval compares: the text after every rule of tests/nbval_sanitize.cfg, in order."""
    rules = get_sanitize_patterns((Path(__file__).parent / "nbval_sanitize.cfg").read_text(encoding="utf-8"))
    for pattern, replace in rules:
        text = re.sub(pattern, replace, text)
    return text


def test_summary_text_is_stable_under_the_notebook_sanitiser():
    one = Summary(spans=3, wall=0.30, busy=0.73, longest=0.30, peak_concurrency=3, errors=0, cancelled=0)
    other = Summary(spans=3, wall=0.31, busy=0.74, longest=0.31, peak_concurrency=3, errors=0, cancelled=0)
    assert sanitised(str(one)) == sanitised(str(other))
    assert sanitised(str(one)) == "3 spans, wall T s, busy T s, overlap N× (busy ÷ wall), peak concurrency 3"


def test_a_figure_repr_is_stable_under_the_notebook_sanitiser_whatever_its_size():
    assert sanitised("<Figure size 720x278.4 with 2 Axes>") == sanitised("<Figure size 900x348 with 2 Axes>")
    assert sanitised("<Figure size 900x348 with 2 Axes>") != sanitised("<Figure size 900x348 with 1 Axes>")


def test_an_empty_wall_has_an_overlap_of_one():
    summary = Summary(spans=1, wall=0.0, busy=0.0, longest=0.0, peak_concurrency=1, errors=0, cancelled=0)
    assert summary.overlap == 1.0


def test_sequential_sleeps_have_an_overlap_near_one():
    rec = Recorder("serial")

    async def main() -> None:
        for i in range(3):
            async with rec.span(f"task {i}"):
                await asyncio.sleep(SLEEP / 2)

    asyncio.run(main())
    summary = rec.summary()
    assert summary.peak_concurrency == 1
    assert 0.8 < summary.overlap <= 1 + 1e-9


def test_spans_start_at_zero_and_come_in_start_order():
    rec = Recorder()
    asyncio.run(_five_sleeps(rec))
    starts = [s.start for s in rec.spans]
    assert starts[0] == 0.0
    assert starts == sorted(starts)


def test_a_span_inside_another_is_not_counted_twice_as_busy():
    rec = Recorder()

    async def main() -> None:
        async with rec.span("node"):
            async with rec.span("tool"):
                await asyncio.sleep(SLEEP)

    asyncio.run(main())
    tool = next(s for s in rec.spans if s.name == "tool")
    assert rec.summary().busy == pytest.approx(tool.duration)


# -- the decorator -------------------------------------------------------------------------
def test_track_records_each_call_of_an_async_function_and_returns_its_result():
    rec = Recorder()

    @rec.track(group="web")
    async def fetch(x: int) -> int:
        await asyncio.sleep(0.01)
        return x * 2

    async def main() -> list[int]:
        return list(await asyncio.gather(fetch(1), fetch(2)))

    assert asyncio.run(main()) == [2, 4]
    assert [(s.name, s.group) for s in rec.spans] == [("fetch", "web"), ("fetch", "web")]
    assert fetch.__name__ == "fetch"  # functools.wraps keeps the name


def test_track_records_a_plain_function_too():
    rec = Recorder()

    @rec.track("parse", group="cpu")
    def parse(text: str) -> list[str]:
        return text.split()

    assert parse("a b") == ["a", "b"]
    (span,) = rec.spans
    assert (span.name, span.group, span.outcome) == ("parse", "cpu", "ok")


def test_track_can_be_used_bare():
    rec = Recorder()

    @rec.track
    def step() -> str:
        return "done"

    assert step() == "done"
    assert [s.name for s in rec.spans] == ["step"]


# -- outcomes: errors and cancellations are recorded, then re-raised -------------------------
def test_a_failing_span_is_recorded_as_error_and_the_exception_re_raised():
    rec = Recorder()

    async def main() -> None:
        async with rec.span("flaky"):
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(main())
    (span,) = rec.spans
    assert span.outcome == "error"
    assert span.error == "ValueError: boom"


def test_taskgroup_cancels_the_sibling_which_is_recorded_as_cancelled():
    rec = Recorder()

    @rec.track
    async def slow() -> None:
        await asyncio.sleep(1.0)

    @rec.track
    async def failing() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("boom")

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(slow())
            tg.create_task(failing())

    with pytest.raises(ExceptionGroup) as info:
        asyncio.run(main())
    assert info.group_contains(ValueError, match="boom")
    by_name = {s.name: s for s in rec.spans}
    assert by_name["failing"].outcome == "error"
    assert by_name["slow"].outcome == "cancelled"
    assert by_name["slow"].duration < 0.5  # cut short, long before its 1 s sleep
    assert rec.summary().errors == 1 and rec.summary().cancelled == 1


def test_a_failing_sync_span_is_recorded_and_re_raised():
    rec = Recorder()
    with pytest.raises(KeyError):
        with rec.span_sync("lookup"):
            {}["missing"]
    assert rec.spans[0].outcome == "error"


# -- the active recorder (with rec:) follows the context ----------------------------------
def test_with_rec_makes_it_active_only_inside_the_block():
    rec = Recorder()
    assert active_recorder() is None
    with rec:
        assert active_recorder() is rec
    assert active_recorder() is None


def test_tasks_created_inside_with_rec_record_into_it():
    rec = Recorder()

    async def main() -> None:
        with rec:
            tasks = [asyncio.create_task(simulated_search(s, "q", delay=0.01)) for s in ("web", "kb", "api")]
        await asyncio.gather(*tasks)  # the tasks copied the context when they were created

    asyncio.run(main())
    assert sorted(s.group for s in rec.spans) == ["api", "kb", "web"]


def test_asyncio_to_thread_carries_the_active_recorder_into_the_thread():
    rec = Recorder()

    async def main() -> None:
        with rec:
            await asyncio.to_thread(simulated_search_blocking, "web", "in a thread", delay=0.01)

    asyncio.run(main())
    assert [s.name for s in rec.spans] == ["web: in a thread"]


def test_a_plain_thread_does_not_see_the_active_recorder():
    rec = Recorder()
    seen: list[Recorder | None] = []
    with rec:
        t = threading.Thread(target=lambda: seen.append(active_recorder()))
        t.start()
        t.join()
    assert seen == [None]  # contextvars do not cross into threads started by hand


def test_concurrent_tasks_can_each_activate_the_same_recorder():
    rec = Recorder()

    async def worker(i: int) -> None:
        with rec:
            await simulated_search("web", f"q{i}", delay=0.01 * (i + 1))

    async def main() -> None:
        await asyncio.gather(*(worker(i) for i in range(3)))

    asyncio.run(main())
    assert len(rec) == 3
    assert active_recorder() is None


# -- threads ---------------------------------------------------------------------------------
def test_spans_from_four_threads_are_all_kept():
    rec = Recorder()

    def work(t: int) -> None:
        for i in range(500):
            with rec.span_sync(f"t{t}-{i}", group=f"thread {t}"):
                pass

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = rec.spans
    assert len(spans) == 2000
    assert len({s.name for s in spans}) == 2000
    assert {s.group for s in spans} == {f"thread {t}" for t in range(4)}


# -- validation ------------------------------------------------------------------------------
def test_summary_of_an_empty_recorder_says_what_to_do():
    with pytest.raises(ValueError, match=r"recorder 'empty' is empty: run something inside `async with rec.span"):
        Recorder("empty").summary()


@pytest.mark.parametrize("name", ["", None, 3])
def test_span_names_must_be_non_empty_strings(name: Any):
    rec = Recorder()
    with pytest.raises(ValueError, match="span name must be a non-empty string"):
        with rec.span_sync(name):
            pass
    with pytest.raises(ValueError, match="span name must be a non-empty string"):
        rec.add(name, 0.0, 1.0)


def test_a_span_cannot_end_before_it_starts():
    with pytest.raises(ValueError, match=r"ends \(1.0\) before it starts \(2.0\)"):
        Recorder().add("backwards", 2.0, 1.0)


def test_outcome_must_be_ok_error_or_cancelled():
    with pytest.raises(ValueError, match="outcome must be 'ok', 'error' or 'cancelled'"):
        Recorder().add("x", 0.0, 1.0, outcome="timeout")  # type: ignore[arg-type]


def test_recorder_name_must_be_a_non_empty_string():
    with pytest.raises(ValueError, match="Recorder"):
        Recorder("")


def test_clear_forgets_every_span():
    rec = Recorder()
    rec.add("x", 1.0, 2.0)
    rec.clear()
    assert len(rec) == 0 and rec.spans == []


# -- NodeTimer: every node run of a LangGraph graph ---------------------------------------------
class State(TypedDict, total=False):
    out: Annotated[list, operator.add]
    i: int


async def _node(name: str, delay: float = 0.02, fail: bool = False):
    await asyncio.sleep(delay)
    if fail:
        raise ValueError(f"{name} failed")
    return {"out": [name]}


def _graph(edges: list[tuple[str, str]], nodes: dict[str, Any]) -> Any:
    g = StateGraph(State)
    for name, fn in nodes.items():
        g.add_node(name, fn)
    for a, b in edges:
        g.add_edge(a, b)
    return g.compile()


def _run(app: Any, rec: Recorder, **config: Any) -> Any:
    return asyncio.run(app.ainvoke({}, config={"callbacks": [rec.callback(**config)]}))


def test_node_timer_records_sequential_nodes_one_after_the_other():
    async def a(s):
        return await _node("a")

    async def b(s):
        return await _node("b")

    app = _graph([(START, "a"), ("a", "b"), ("b", END)], {"a": a, "b": b})
    rec = Recorder()
    _run(app, rec)
    first, second = rec.spans
    assert (first.name, second.name) == ("a", "b")
    assert (first.group, first.lane) == ("a", "a")
    assert first.end <= second.start


def test_node_timer_records_parallel_branches_overlapping_on_their_own_lanes():
    async def web(s):
        return await _node("web", SLEEP)

    async def api(s):
        return await _node("api", SLEEP)

    app = _graph([(START, "web"), (START, "api"), ("web", END), ("api", END)], {"web": web, "api": api})
    rec = Recorder()
    _run(app, rec)
    spans = {s.lane: s for s in rec.spans}
    assert set(spans) == {"web", "api"}
    assert spans["web"].start < spans["api"].end and spans["api"].start < spans["web"].end
    assert rec.summary().peak_concurrency == 2


def _fan_out_graph(n: int) -> Any:
    async def work(s):
        return await _node(f"w{s['i']}")

    g = StateGraph(State)
    g.add_node("work", work)
    g.add_conditional_edges(START, lambda s: [Send("work", {"i": i}) for i in range(n)], ["work"])
    g.add_edge("work", END)
    return g.compile()


def test_node_timer_gives_each_send_task_a_distinct_lane():
    rec = Recorder()
    _run(_fan_out_graph(4), rec)  # START has conditional edges: LangGraph's __start__ runs, and is not drawn
    assert sorted(s.lane for s in rec.spans) == ["work", "work [2]", "work [3]", "work [4]"]
    assert {s.group for s in rec.spans} == {"work"}


def test_node_timer_reused_for_a_second_run_numbers_its_lanes_afresh():
    rec = Recorder()
    callback = rec.callback()
    app = _fan_out_graph(2)

    async def main() -> None:
        for _ in range(2):  # one config reused for two runs, as in a loop over topics
            await app.ainvoke({}, config={"callbacks": [callback]})

    asyncio.run(main())
    assert sorted(s.lane for s in rec.spans) == ["work", "work", "work [2]", "work [2]"]


def test_node_timer_lanes_can_be_named_from_the_send_payload():
    rec = Recorder()
    _run(_fan_out_graph(3), rec, lane=lambda node, inputs: f"{node} #{inputs['i']}")
    assert sorted(s.lane for s in rec.spans) == ["work #0", "work #1", "work #2"]


def test_node_timer_records_a_sync_node_under_ainvoke():
    def blocking(s):
        time.sleep(0.01)
        return {"out": ["sync"]}

    rec = Recorder()
    _run(_graph([(START, "blocking"), ("blocking", END)], {"blocking": blocking}), rec)
    assert [(s.name, s.outcome) for s in rec.spans] == [("blocking", "ok")]


def test_node_timer_records_a_failing_node_as_error():
    async def bad(s):
        return await _node("bad", fail=True)

    rec = Recorder()
    with pytest.raises(ValueError, match="bad failed"):
        _run(_graph([(START, "bad"), ("bad", END)], {"bad": bad}), rec)
    (span,) = rec.spans
    assert (span.outcome, span.error) == ("error", "ValueError: bad failed")


def test_node_timer_records_a_sibling_cancelled_by_a_failing_branch_as_cancelled():
    # LangGraph cancels the other branches of a failing super-step: their callback sees
    # CancelledError, so the chart shows them cancelled, not failed.
    async def slow(s):
        return await _node("slow", 1.0)

    async def bad(s):
        return await _node("bad", 0.02, fail=True)

    app = _graph([(START, "slow"), (START, "bad"), ("slow", END), ("bad", END)], {"slow": slow, "bad": bad})
    rec = Recorder()
    with pytest.raises(ValueError, match="bad failed"):
        _run(app, rec)
    spans = {s.name: s for s in rec.spans}
    assert spans["bad"].outcome == "error"
    assert spans["slow"].outcome == "cancelled"
    assert spans["slow"].duration < 0.5  # stopped long before its 1 s sleep


def test_node_timer_does_not_record_runnables_inside_a_node():
    inner = RunnableLambda(lambda x: x + 1)

    async def node(s):
        await inner.ainvoke(1)  # a runnable inside the node: a chain run, but not a node run
        return {"out": ["n"]}

    rec = Recorder()
    _run(_graph([(START, "node"), ("node", END)], {"node": node}), rec)
    assert [s.name for s in rec.spans] == ["node"]


def test_node_timer_and_tools_together_count_busy_time_once():
    async def research(s):
        await asyncio.gather(*(simulated_search(src, "q", delay=SLEEP) for src in ("web", "kb", "api")))
        return {"out": ["r"]}

    rec = Recorder()

    async def main() -> None:
        app = _graph([(START, "research"), ("research", END)], {"research": research})
        with rec:
            await app.ainvoke({}, config={"callbacks": [rec.callback()]})

    asyncio.run(main())
    assert sorted(s.group for s in rec.spans) == ["api", "kb", "research", "web"]
    tools = [s for s in rec.spans if s.group != "research"]
    summary = rec.summary()
    assert summary.busy == pytest.approx(sum(s.duration for s in tools))  # the node is a container
    assert summary.peak_concurrency == 3


def _recorded_run(app: Any) -> Recorder:
    """Run `app` with the tools recording (`with rec:`) and the node runs too (`rec.callback()`)."""
    rec = Recorder()

    async def main() -> None:
        with rec:
            await app.ainvoke({}, config={"callbacks": [rec.callback()]})

    asyncio.run(main())
    return rec


def test_a_tool_called_through_a_runnable_inside_a_node_still_makes_the_node_a_container():
    async def look_up(x: int) -> list:
        return await simulated_search("web", "q", delay=SLEEP)

    async def node(s):
        await RunnableLambda(look_up).ainvoke(1)  # a chain run between the node run and the tool
        return {"out": ["n"]}

    rec = _recorded_run(_graph([(START, "node"), ("node", END)], {"node": node}))
    spans = {s.name: s for s in rec.spans}
    assert (spans["node"].leaf, spans["web: q"].leaf) == (False, True)
    assert rec.summary().busy == pytest.approx(spans["web: q"].duration)  # counted once


def test_a_langchain_tool_inside_a_node_counts_as_inside_the_node():
    @tool
    async def look_up(query: str) -> str:
        """Search the web."""
        return str(await simulated_search("web", query, delay=SLEEP))

    async def node(s):
        await look_up.ainvoke({"query": "q"})  # a tool run (on_tool_start), not a chain run
        return {"out": ["n"]}

    rec = _recorded_run(_graph([(START, "node"), ("node", END)], {"node": node}))
    assert [(s.name, s.leaf) for s in rec.spans] == [("node", False), ("web: q", True)]


def test_a_subgraph_node_is_the_container_of_the_subgraph_nodes():
    async def leaf(s):
        await simulated_search("web", "q", delay=SLEEP)
        return {"out": ["leaf"]}

    inner = _graph([(START, "leaf"), ("leaf", END)], {"leaf": leaf})
    rec = _recorded_run(_graph([(START, "sub"), ("sub", END)], {"sub": inner}))
    assert {s.name: s.leaf for s in rec.spans} == {"sub": False, "leaf": False, "web: q": True}
    assert rec.summary().busy == pytest.approx(SLEEP, abs=0.05)  # the tool's wait, once


def test_a_span_opened_where_langchain_callbacks_are_a_plain_list_is_nested_in_nothing():
    rec = Recorder()
    token = var_child_runnable_config.set({"callbacks": [rec.callback()]})  # a config outside any run
    try:
        with rec.span_sync("outside"):
            pass
    finally:
        var_child_runnable_config.reset(token)
    assert [(s.name, s.leaf) for s in rec.spans] == [("outside", True)]


def test_node_timer_forgets_a_graph_runs_lane_counts_when_the_run_ends():
    rec = Recorder()
    callback = rec.callback()
    app = _fan_out_graph(3)

    async def main() -> None:
        for _ in range(5):
            await app.ainvoke({}, config={"callbacks": [callback]})

    asyncio.run(main())
    assert len(rec) == 15
    assert callback._per_run == {} and callback._open == {}  # nothing grows with the number of runs


def test_callback_lane_must_be_a_function():
    with pytest.raises(TypeError, match=r"lane must be a function lane\(node, inputs\) -> str"):
        Recorder().callback(lane="query")


def test_a_span_around_a_graph_run_is_the_container_of_its_nodes():
    async def research(s):
        await simulated_search("web", "q", delay=SLEEP)
        return {"out": ["r"]}

    app = _graph([(START, "research"), ("research", END)], {"research": research})
    rec = Recorder()

    async def main() -> None:
        with rec:
            async with rec.span("the whole run", group="caller"):
                await app.ainvoke({}, config={"callbacks": [rec.callback()]})

    asyncio.run(main())
    assert {s.name: s.leaf for s in rec.spans} == {"the whole run": False, "research": False, "web: q": True}
    assert rec.summary().busy == pytest.approx(SLEEP, abs=0.05)


def test_a_span_inside_a_node_contains_the_tools_of_a_runnable_called_inside_it():
    async def look_up(x: int) -> list:
        return await simulated_search("web", "q", delay=SLEEP)

    rec = Recorder()

    async def research(s):
        async with rec.span("step: look up", group="step"):
            await RunnableLambda(look_up).ainvoke(1)
        return {"out": ["r"]}

    async def main() -> None:
        app = _graph([(START, "research"), ("research", END)], {"research": research})
        with rec:
            await app.ainvoke({}, config={"callbacks": [rec.callback()]})

    asyncio.run(main())
    assert {s.name: s.leaf for s in rec.spans} == {"research": False, "step: look up": False, "web: q": True}
