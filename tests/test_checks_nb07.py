"""Notebook 07's self-checks: a wrong answer gets ❌ and a hint, a right one ✅, bad arguments a clear error."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from agency_lib import SearchService, start_service
from agency_lib.checks import nb07


# -- check_bounded_gather -----------------------------------------------------------------
async def right(coro_fns: list[Any], limit: int) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(fn: Any) -> Any:
        async with sem:
            return await fn()

    return await asyncio.gather(*(one(fn) for fn in coro_fns))


async def unbounded(coro_fns: list[Any], limit: int) -> list[Any]:
    return await asyncio.gather(*(fn() for fn in coro_fns))


async def serial(coro_fns: list[Any], limit: int) -> list[Any]:
    return [await fn() for fn in coro_fns]


async def batches(coro_fns: list[Any], limit: int) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(coro_fns), limit):
        out += await asyncio.gather(*(fn() for fn in coro_fns[i : i + limit]))
    return out


async def completion_order(coro_fns: list[Any], limit: int) -> list[Any]:
    sem = asyncio.Semaphore(limit)
    out: list[Any] = []

    async def one(fn: Any) -> None:
        async with sem:
            out.append(await fn())

    await asyncio.gather(*(one(fn) for fn in coro_fns))
    return out


async def twice(coro_fns: list[Any], limit: int) -> list[Any]:
    await right(coro_fns[:1], limit)
    return await right(coro_fns, limit)


async def skips_last(coro_fns: list[Any], limit: int) -> list[Any]:
    return await right(coro_fns[:-1], limit)


async def hard_coded(coro_fns: list[Any], limit: int) -> list[Any]:
    return await right(coro_fns, 10)


async def raises(coro_fns: list[Any], limit: int) -> list[Any]:
    return await asyncio.gather(*(fn(limit) for fn in coro_fns))


def not_async(coro_fns: list[Any], limit: int) -> list[Any]:
    return [fn for fn in coro_fns]


def check(fn: Any) -> Any:
    return asyncio.run(nb07.check_bounded_gather(fn))


def test_bounded_gather_right_answer_passes() -> None:
    fb = check(right)
    assert fb.ok and str(fb).startswith("✅")
    assert "never more than 4 at once" in str(fb)


def test_bounded_gather_with_task_group_passes() -> None:
    async def with_task_group(coro_fns: list[Any], limit: int) -> list[Any]:
        sem = asyncio.Semaphore(limit)

        async def one(fn: Any) -> Any:
            async with sem:
                return await fn()

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one(fn)) for fn in coro_fns]
        return [t.result() for t in tasks]

    assert check(with_task_group)


@pytest.mark.parametrize(
    ("fn", "says", "hint"),
    [
        (unbounded, "up to 24 functions ran at once with limit=4", "asyncio.Semaphore(limit)"),
        (hard_coded, "up to 10 functions ran at once", "inside bounded_gather"),
        (serial, "never more than 1 ran at once", "awaiting one by one"),
        (batches, "batch by batch", "not over slices"),
        (completion_order, "not in the order of coro_fns", "input order"),
        (twice, "ran more than once", "call each function once"),
        (skips_last, "1 of the 24 functions never ran", "exactly once"),
        (raises, "raised TypeError", "take no argument"),
        (not_async, "returned list, not something to await", "async def bounded_gather"),
    ],
)
def test_bounded_gather_wrong_answers_get_a_hint(fn: Any, says: str, hint: str) -> None:
    fb = check(fn)
    assert not fb.ok
    text = str(fb)
    assert text.startswith("❌") and says in text and "hint:" in text and hint in text


def test_bounded_gather_rejects_a_non_function() -> None:
    with pytest.raises(TypeError, match="your function itself"):
        check("bounded_gather")


# -- check_throughput_prediction (a curve as notebook 07 measures it; a real service: capacity 10, 0.1 s) ---
#: queries/s measured at each limit, as on a busy machine: below the ideal min(limit, 10) ÷ 0.1 s
CURVE = [
    {"limit": 4, "wall": 0.54, "queries_per_s": 37.0, "requests_per_s": 37.0, "rejected": 0},
    {"limit": 10, "wall": 0.24, "queries_per_s": 83.0, "requests_per_s": 83.0, "rejected": 0},
    {"limit": 20, "wall": 0.27, "queries_per_s": 75.0, "requests_per_s": 202.0, "rejected": 34},
]


@pytest.fixture(scope="module")
def service() -> Iterator[Any]:
    svc = start_service(capacity=10, latency=0.1, seed=6)
    yield svc
    svc.stop()


def test_throughput_prediction_near_the_measurement_passes(service: Any) -> None:
    fb = nb07.check_throughput_prediction({4: 35, 10: 80, 20: 80}, CURVE)
    assert fb.ok and "min(limit, capacity) ÷ latency" in str(fb)


def test_throughput_prediction_of_the_ideal_passes_on_a_busy_machine(service: Any) -> None:
    assert nb07.check_throughput_prediction({4: 40, 10: 100, 20: 100}, CURVE).ok  # 100 vs 75 measured: the ideal


@pytest.mark.parametrize(
    ("prediction", "says", "hint"),
    [
        ({4: None, 10: None, 20: None}, "no prediction yet", "how many queries can be in flight"),
        ({4: 40, 10: 100, 20: 200}, "limit 20: you said 200", "extra requests are rejected, not served"),
        ({4: 10, 10: 100, 20: 100}, "limit 4: you said 10", "each of the `limit` slots completes one query"),
        ({4: 40, 7: 70}, "no measurement at limit 7", "keep the keys"),
        ({4: "40", 10: 100, 20: 100}, "a number of queries per second", "25 completed queries"),
        ([40, 100, 100], "a dict {limit: queries per second}", "my_prediction = {4"),
    ],
)
def test_throughput_prediction_wrong_answers_get_a_hint(service: Any, prediction: Any, says: str, hint: str) -> None:
    fb = nb07.check_throughput_prediction(prediction, CURVE)
    assert not fb.ok
    assert says in str(fb) and hint in str(fb)


def test_throughput_prediction_needs_the_measured_curve(service: Any) -> None:
    with pytest.raises(TypeError, match="the measured curve"):
        nb07.check_throughput_prediction({4: 40}, "curve")
    with pytest.raises(TypeError, match="run the curve cell first"):
        nb07.check_throughput_prediction({4: 40}, [{"limit": 4}])


def test_throughput_prediction_needs_a_service_with_a_capacity() -> None:
    svc = SearchService(latency=0.1).start()  # no capacity; the module's service keeps running
    try:
        with pytest.raises(ValueError, match="no capacity"):
            nb07.check_throughput_prediction({4: 40}, CURVE)
    finally:
        svc.stop()


# -- check_max_concurrency ----------------------------------------------------------------
def test_max_concurrency_top_level_passes() -> None:
    fb = nb07.check_max_concurrency({"max_concurrency": 10, "configurable": {"thread_id": "1"}}, 10)
    assert fb.ok and "top level" in str(fb)


@pytest.mark.parametrize(
    ("config", "says", "hint"),
    [
        ({"configurable": {"max_concurrency": 10}}, 'inside "configurable"', "top level"),
        ({}, "no max_concurrency", '{"max_concurrency": k}'),
        ({"max_concurrency": 40}, "above the service's capacity 10", "{'max_concurrency': 10}"),
        ({"max_concurrency": 5}, "leaves 5 of the service's 10 slots idle", "capacity itself"),
        ({"max_concurrency": "10"}, "whole number", "at once"),
        ([("max_concurrency", 10)], "not a dict", "config="),
    ],
)
def test_max_concurrency_wrong_configs_get_a_hint(config: Any, says: str, hint: str) -> None:
    fb = nb07.check_max_concurrency(config, 10)
    assert not fb.ok
    assert says in str(fb) and hint in str(fb)


def test_max_concurrency_rejects_a_bad_capacity() -> None:
    with pytest.raises(ValueError, match="capacity must be an int"):
        nb07.check_max_concurrency({"max_concurrency": 10}, 0)
