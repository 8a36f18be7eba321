"""The notebook 05 self-checks: a wrong answer gets ❌ and a hint, a right one ✅, bad arguments an error.

The pipelines here hang (or not) on purpose, with `asyncio.sleep` instead of searches, so
no service is needed. Each test runs its coroutine with ``asyncio.run``, which also
proves that the checks leave no task behind (asyncio.run cancels leftovers, and the test
asserts there were none).
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from agency_lib.checks import nb05


@pytest.fixture(autouse=True)
def quick_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nb05, "HANG_AFTER", 0.1)  # the pipelines below are done (or stuck) well before that


def run(coro: Any) -> Any:
    async def main() -> Any:
        result = await coro
        leftovers = asyncio.all_tasks() - {asyncio.current_task()}
        assert not leftovers, f"the check left tasks running: {leftovers}"
        return result

    return asyncio.run(main())


# -- check_stuck: "which task is stuck, and in which call does it wait?" --------------------
async def queue_pipeline() -> list[int]:
    """Producers put 2 items each; the collector waits for 5: it waits in Queue.get for ever."""
    queue: asyncio.Queue[int] = asyncio.Queue()

    async def produce(i: int) -> None:
        await asyncio.sleep(0.01)
        for item in (i, i):
            await queue.put(item)

    async def collect(expected: int) -> list[int]:
        return [await queue.get() for _ in range(expected)]

    async with asyncio.TaskGroup() as tg:
        for i in range(2):
            tg.create_task(produce(i), name=f"produce {i}")
        collector = tg.create_task(collect(5), name="collect")
    return collector.result()


async def finishing_pipeline() -> int:
    await asyncio.sleep(0.01)
    return 1


async def failing_pipeline() -> int:
    raise ConnectionError("the service is down")


def test_check_stuck_passes_the_task_and_the_call_it_waits_in() -> None:
    fb = run(nb05.check_stuck(queue_pipeline, "collect", "Queue.get"))
    assert fb.ok, fb
    assert "task 'collect' is stuck in Queue.get" in str(fb) and "the 1 other pending task only waits" in str(fb)
    for spelling in ("queue.get", "Queue.get()", "get"):
        assert run(nb05.check_stuck(queue_pipeline, "collect", spelling)).ok


def test_check_stuck_says_a_task_that_waits_for_others_is_a_victim() -> None:
    fb = run(nb05.check_stuck(queue_pipeline, "the pipeline", "Queue.get"))
    assert not fb.ok and "no task named 'the pipeline'" in str(fb)


def test_check_stuck_names_a_missing_task_without_giving_the_answer() -> None:
    fb = run(nb05.check_stuck(queue_pipeline, "produce 0", "Queue.put"))
    assert not fb.ok and "no task named 'produce 0' was pending" in str(fb)  # it had finished
    assert "collect" not in str(fb)


def test_check_stuck_wants_the_call_it_waits_in_not_its_own_coroutine() -> None:
    fb = run(nb05.check_stuck(queue_pipeline, "collect", "collect"))
    assert not fb.ok and "is its own coroutine" in str(fb)
    fb = run(nb05.check_stuck(queue_pipeline, "collect", "Event.wait"))
    assert not fb.ok and "it does not wait in 'Event.wait'" in str(fb)


def test_check_stuck_spots_a_victim_task() -> None:
    async def waits_for_a_worker() -> None:
        async def worker() -> None:
            await asyncio.Event().wait()

        async def boss() -> None:
            await asyncio.gather(asyncio.create_task(worker(), name="worker"))

        await asyncio.create_task(boss(), name="boss")

    fb = run(nb05.check_stuck(waits_for_a_worker, "boss", "gather"))
    assert not fb.ok and "victim" in str(fb)
    assert run(nb05.check_stuck(waits_for_a_worker, "worker", "Event.wait")).ok


def test_check_stuck_on_a_lock_held_across_an_await() -> None:
    async def lock_pipeline() -> None:
        lock = asyncio.Lock()

        async def store() -> None:
            async with lock:
                pass

        async def cached() -> None:
            async with lock:
                await store()  # the lock is not re-entrant: this task waits for itself

        await asyncio.create_task(cached(), name="cached")

    fb = run(nb05.check_stuck(lock_pipeline, "cached", "Lock.acquire"))
    assert fb.ok, fb


def test_check_stuck_with_no_answer_yet_does_not_run_the_pipeline() -> None:
    start = time.perf_counter()
    fb = run(nb05.check_stuck(queue_pipeline, "...", None))
    assert not fb.ok and "stuck_task is still ..." in str(fb)
    assert time.perf_counter() - start < nb05.HANG_AFTER


def test_check_stuck_on_a_pipeline_that_finishes_or_fails() -> None:
    fb = run(nb05.check_stuck(finishing_pipeline, "collect", "Queue.get"))
    assert not fb.ok and "does not hang" in str(fb)
    fb = run(nb05.check_stuck(failing_pipeline, "collect", "Queue.get"))
    assert not fb.ok and "does not hang" in str(fb)


def test_check_stuck_rejects_what_is_not_an_async_function() -> None:
    called = queue_pipeline()  # called, not passed
    with pytest.raises(TypeError, match="pass the async function that hangs"):
        run(nb05.check_stuck(called, "collect", "Queue.get"))  # type: ignore[arg-type]
    called.close()


# -- check_blocking_helper: "which helper holds the loop?" ----------------------------------
def normalise(findings: list[dict]) -> list[dict]:
    return [{**f, "title": " ".join(f["title"].split())} for f in findings]


def tag_licences(findings: list[dict]) -> list[dict]:
    time.sleep(0.12)  # noqa: ASYNC251 (a plain def: the blocking call the check must find)
    return [{**f, "licence": "cc-by"} for f in findings]


async def research_one(findings: list[dict]) -> list[dict]:
    await asyncio.sleep(0)
    return tag_licences(normalise(findings))


def test_check_blocking_helper_passes_the_blocking_one() -> None:
    fb = run(nb05.check_blocking_helper(tag_licences))
    assert fb.ok and "tag_licences is the blocking helper" in str(fb) and "asyncio.to_thread" in str(fb)


def test_check_blocking_helper_rejects_a_fast_helper_and_the_tasks_own_coroutine() -> None:
    fb = run(nb05.check_blocking_helper(normalise))
    assert not fb.ok and "kept the loop free" in str(fb)
    fb = run(nb05.check_blocking_helper(research_one))
    assert not fb.ok and "is an `async def`" in str(fb)


async def research_brief(findings: list[dict]) -> list[dict]:
    async def one() -> list[dict]:
        await asyncio.sleep(0)
        return tag_licences(normalise(findings))

    return await one()


def already_published(findings: list[dict]) -> bool:
    time.sleep(0.12)  # noqa: ASYNC251 (blocks too, but research_brief never calls it)
    return False


def test_check_blocking_helper_with_the_pipeline_wants_a_helper_that_it_calls() -> None:
    assert run(nb05.check_blocking_helper(tag_licences, research_brief)).ok  # called from a nested function
    fb = run(nb05.check_blocking_helper(already_published, research_brief))
    assert not fb.ok and "research_brief never calls already_published" in str(fb)
    with pytest.raises(TypeError, match="pipeline is the slow async function itself"):
        run(nb05.check_blocking_helper(tag_licences, "research_brief"))  # type: ignore[arg-type]


def test_check_stuck_without_the_private_fut_waiter_goes_by_the_chain() -> None:
    no_waiter = SimpleNamespace()  # a task object of a Python without `_fut_waiter`
    assert nb05._waits_for_tasks(no_waiter, ["boss", "gather"])  # type: ignore[arg-type]
    assert not nb05._waits_for_tasks(no_waiter, ["collect", "Queue.get"])  # type: ignore[arg-type]


def test_check_blocking_helper_without_an_answer_or_with_a_wrong_kind_of_answer() -> None:
    fb = run(nb05.check_blocking_helper(None))
    assert not fb.ok and "blocking_helper is None" in str(fb)
    fb = run(nb05.check_blocking_helper(lambda: None))
    assert not fb.ok and "raised TypeError" in str(fb)
    with pytest.raises(TypeError, match="pass the helper function itself"):
        run(nb05.check_blocking_helper("tag_licences"))
