"""The notebook 04 self-checks: a wrong answer gets ❌ and a hint, a right one ✅, bad arguments an error.

The checks run real searches, so a local search service with short latencies runs for
the whole module. Each test runs its coroutine with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from typing import Any

import pytest

from agency_lib import SOURCES, kb_search, search, search_blocking, start_service, web_search
from agency_lib.checks import nb04


@pytest.fixture(scope="module", autouse=True)
def service():
    svc = start_service(seed=4, latency={"web": 0.12, "api": 0.15})
    yield svc
    svc.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- check_unblocked: "fix this researcher so it does not block the loop" -----------------
async def blocking_researcher(query: str) -> list[dict]:
    findings = []
    for source in SOURCES:
        findings += search_blocking(source, query)  # the loop waits for each one
    return findings


async def async_researcher(query: str) -> list[dict]:
    results = await asyncio.gather(*(search(s, query) for s in SOURCES))
    return [f for r in results for f in r]


async def threaded_researcher(query: str) -> list[dict]:
    results = await asyncio.gather(*(asyncio.to_thread(search_blocking, s, query) for s in SOURCES))
    return [f for r in results for f in r]


async def sequential_async_researcher(query: str) -> list[dict]:
    return [f for s in SOURCES for f in await search(s, query)]


async def sleepy_researcher(query: str) -> list[dict]:
    results = await asyncio.gather(*(search(s, query) for s in SOURCES))
    time.sleep(0.2)  # noqa: ASYNC251 (on purpose: a blocking call after the awaits still stalls the loop)
    return [f for r in results for f in r]


async def coroutine_researcher(query: str):
    return search("web", query)  # missing await: returns a coroutine


async def web_only_researcher(query: str) -> list[dict]:
    return await web_search(query)


async def failing_researcher(query: str) -> list[dict]:
    raise ValueError("no sources configured")


def sync_researcher(query: str) -> list[dict]:
    return []


def test_blocking_researcher_fails_with_stall_and_to_thread_hint():
    fb = run(nb04.check_unblocked(blocking_researcher))
    assert not fb
    assert "stalled the event loop" in fb.message
    assert any("asyncio.to_thread" in h for h in fb.hints)


def test_async_researcher_passes_and_overlaps():
    fb = run(nb04.check_unblocked(async_researcher))
    assert fb, fb
    assert "overlapped" in fb.message


def test_to_thread_researcher_passes():
    assert run(nb04.check_unblocked(threaded_researcher))


def test_sequential_async_researcher_passes_with_gather_tip():
    fb = run(nb04.check_unblocked(sequential_async_researcher))
    assert fb, fb
    assert "gather" in fb.message


def test_blocking_call_after_the_awaits_is_caught():
    fb = run(nb04.check_unblocked(sleepy_researcher))
    assert not fb
    assert "stalled" in fb.message


def test_coroutine_result_is_reported_and_closed():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "never awaited" warning would fail the test
        fb = run(nb04.check_unblocked(coroutine_researcher))
    assert not fb
    assert "missing `await`" in fb.message


def test_missing_sources_are_named():
    fb = run(nb04.check_unblocked(web_only_researcher))
    assert not fb
    assert "kb, api" in fb.message


def test_exception_is_reported_not_raised():
    fb = run(nb04.check_unblocked(failing_researcher))
    assert not fb
    assert "ValueError: no sources configured" in fb.message


def test_plain_def_gets_async_def_hint():
    fb = run(nb04.check_unblocked(sync_researcher))
    assert not fb
    assert "async def" in fb.message


@pytest.mark.parametrize("bad", [None, 42, "research_topic"])
def test_check_unblocked_bad_argument_is_a_clear_error(bad):
    with pytest.raises(TypeError, match="without parentheses"):
        run(nb04.check_unblocked(bad))


def test_check_unblocked_bad_query_is_a_clear_error():
    with pytest.raises(ValueError, match="non-empty string"):
        run(nb04.check_unblocked(async_researcher, query=""))


def test_longest_stall_measures_a_blocking_call():
    async def block() -> str:
        time.sleep(0.15)  # noqa: ASYNC251 (on purpose)
        return "done"

    async def wait() -> str:
        await asyncio.sleep(0.15)
        return "done"

    result, stall_blocking, wall = run(nb04.longest_stall(block()))
    assert result == "done" and stall_blocking > 0.6 * wall
    _, stall_async, _ = run(nb04.longest_stall(wait()))
    assert stall_async < 0.5 * stall_blocking


def test_longest_stall_leaves_no_heartbeat_running_however_it_is_cancelled():
    async def main() -> set[asyncio.Task]:
        others = asyncio.all_tasks()
        for steps in (1, 5):  # cancelled at its very first await, or while it awaits the work
            never_done = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(nb04.longest_stall(never_done))
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await asyncio.sleep(0.02)  # a heartbeat still alive would be ticking now
        return asyncio.all_tasks() - others

    assert run(main()) == set()


def test_longest_stall_needs_an_awaitable():
    with pytest.raises(TypeError, match="awaitable"):
        run(nb04.longest_stall(42))


# -- check_report: "find the missing await" --------------------------------------------------
async def report_missing_await(queries: list[str]) -> dict:
    report = {}
    for query in queries:
        report[query] = {"web": await web_search(query), "kb": kb_search(query)}
    return report


async def report_fixed(queries: list[str]) -> dict:
    report = {}
    for query in queries:
        report[query] = {"web": await web_search(query), "kb": await kb_search(query)}
    return report


async def report_gather_not_awaited(queries: list[str]) -> dict:
    report = {}
    for query in queries:
        web, kb = await asyncio.gather(web_search(query), kb_search(query))
        report[query] = {"web": web, "kb": asyncio.gather(kb_search(query))}
    return report


async def report_dropped_call(queries: list[str]) -> dict:
    report = {}
    for query in queries:
        kb_search(query)  # called, never awaited, result dropped
        report[query] = {"web": await web_search(query), "kb": await kb_search(query)}
    return report


async def report_swapped(queries: list[str]) -> dict:
    return {q: {"web": await kb_search(q), "kb": await web_search(q)} for q in queries}


async def report_wrong_keys(queries: list[str]) -> dict:
    return {"all": await web_search(queries[0])}


def test_missing_await_is_found_with_its_path():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fb = run(nb04.check_report(report_missing_await))
    assert not fb
    assert "report['async python']['kb'] is a coroutine object (kb_search)" in fb.message
    assert any("await kb_search" in h for h in fb.hints)


def test_fixed_report_passes():
    fb = run(nb04.check_report(report_fixed))
    assert fb, fb
    assert "no coroutine left" in fb.message


def test_unawaited_gather_is_reported_and_nothing_keeps_running():
    async def go() -> tuple[Any, int]:
        fb = await nb04.check_report(report_gather_not_awaited)
        await asyncio.sleep(0)
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return fb, len(others)

    fb, left = run(go())
    assert not fb
    assert "Future or Task" in fb.message
    assert left == 0


def test_dropped_unawaited_call_is_reported():
    fb = run(nb04.check_report(report_dropped_call))
    assert not fb
    assert "coroutine 'kb_search' was never awaited" in fb.message


def test_swapped_sources_are_reported():
    fb = run(nb04.check_report(report_swapped))
    assert not fb
    assert "findings of web" in fb.message


def test_wrong_keys_are_reported():
    fb = run(nb04.check_report(report_wrong_keys))
    assert not fb
    assert "keyed by the queries" in fb.message


def test_check_report_plain_def_gets_async_def_hint():
    fb = run(nb04.check_report(lambda queries: {}))
    assert not fb
    assert "async def" in fb.message


@pytest.mark.parametrize("bad", [[], "async python", [""], [1, 2]])
def test_check_report_bad_queries_are_a_clear_error(bad):
    with pytest.raises(ValueError, match="non-empty list"):
        run(nb04.check_report(report_fixed, queries=bad))


def test_check_report_bad_function_is_a_clear_error():
    with pytest.raises(TypeError, match="without parentheses"):
        run(nb04.check_report(None))


# -- check_pool_prediction: "predict the thread pool's waves" -------------------------------
def predict(value: object, **kwargs: Any) -> nb04.Feedback:
    return run(nb04.check_pool_prediction(value, **kwargs))


def test_the_right_prediction_passes_and_names_the_waves():
    fb = predict(0.3)  # 10 calls on 4 threads: 3 waves of 0.1 s
    assert fb, fb
    assert "3 waves (4 + 4 + 2)" in fb.message


@pytest.mark.parametrize(
    ("guess", "says"),
    [(0.02, "one call's time"), (0.2, "one call after another"), (0.05, "part of a round"), (0.12, "not it")],
)
def test_typical_wrong_predictions_get_their_own_explanation(guess, says):
    fb = predict(guess, latency=0.02)  # the notebook's 10 calls on 4 threads, with 0.02 s calls: 0.06 s
    assert not fb
    assert says in fb.message
    assert "measured" in fb.message


@pytest.mark.parametrize("stub", [None, ..., "0.3", True, -1])
def test_a_missing_or_non_numeric_prediction_asks_for_a_number(stub):
    fb = predict(stub)
    assert not fb
    assert "predicted_wall" in fb.message


def test_the_default_executor_is_put_back():
    async def main() -> tuple[object, object]:
        loop = asyncio.get_running_loop()
        before = loop._default_executor
        await nb04.check_pool_prediction(0.3, calls=2, workers=2, latency=0.05)
        return before, loop._default_executor

    before, after = run(main())
    assert before is after


def test_the_measurement_follows_the_pool_size():
    # 4 calls on 1 thread take 4 rounds; the check accepts exactly that
    assert predict(0.2, calls=4, workers=1, latency=0.05)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"calls": 0}, "calls"), ({"workers": 1.5}, "workers"), ({"latency": 2}, "latency")]
)
def test_check_pool_prediction_bad_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        predict(0.3, **kwargs)
