"""Self-checks for notebook 07 (backpressure): a bounded gather, the best limit, a bounded fan-out's config.

* `await check_bounded_gather(fn)`: runs the learner's ``bounded_gather(coro_fns, limit)``
  on instrumented fakes and measures how many ran at once, whether a free slot was
  reused at once (not batch by batch), and the order of the results.
* `await check_best_limit(limit, service)`: decides from the service's capacity, then
  measures a real burst at that limit and reports the 429s it got.
* `check_max_concurrency(config, capacity)`: reads a LangGraph run config and says
  whether ``max_concurrency`` is where LangGraph reads it (the top level).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from . import Feedback, failed, passed

__all__ = ["check_bounded_gather", "check_best_limit", "check_max_concurrency"]

#: The fakes `check_bounded_gather` runs: how many, and the limit it asks for.
N_FAKES = 24
LIMIT = 4
_LONG, _SHORT = 0.04, 0.004  # every LIMIT-th fake is slow, so batches would wait for it


class _Probe:
    """Counts how many fakes run at once, how many slow ones overlap, and each fake's runs."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.slow_now = 0
        self.slow_peak = 0
        self.runs: Counter[int] = Counter()

    def fake(self, i: int) -> Callable[[], Awaitable[str]]:
        slow = i % LIMIT == 0

        async def fake_search() -> str:
            self.runs[i] += 1
            self.now += 1
            self.peak = max(self.peak, self.now)
            if slow:
                self.slow_now += 1
                self.slow_peak = max(self.slow_peak, self.slow_now)
            try:
                await asyncio.sleep(_LONG if slow else _SHORT)
            finally:
                self.now -= 1
                if slow:
                    self.slow_now -= 1
            return f"result {i}"

        fake_search.__name__ = f"fake_search_{i}"
        return fake_search


async def check_bounded_gather(bounded_gather: Callable[..., Any]) -> Feedback:
    """Check ``bounded_gather(coro_fns, limit)``: at most `limit` at once, slots reused, input order kept."""
    if not callable(bounded_gather):
        raise TypeError(
            "check_bounded_gather expects your function itself, e.g. "
            f"await nb07.check_bounded_gather(bounded_gather), not {bounded_gather!r:.60}."
        )
    probe = _Probe()
    fns = [probe.fake(i) for i in range(N_FAKES)]
    want = [f"result {i}" for i in range(N_FAKES)]
    try:
        outcome = bounded_gather(fns, LIMIT)
        if not inspect.isawaitable(outcome):
            return failed(
                f"bounded_gather returned {type(outcome).__name__}, not something to await.",
                "write it as `async def bounded_gather(coro_fns, limit):` and `return await asyncio.gather(...)`.",
            )
        results = await asyncio.wait_for(outcome, timeout=10)
    except TimeoutError:
        return failed(
            f"bounded_gather did not finish {N_FAKES} tiny tasks within 10 s: it may wait forever.",
            "release every slot you take: `async with sem:` releases it even when the task fails.",
        )
    except Exception as exc:  # the learner's code failed: say how
        return failed(
            f"bounded_gather raised {type(exc).__name__}: {exc}",
            "coro_fns is a list of async functions that take no argument: call each one, `await fn()`.",
        )
    missing = [i for i in range(N_FAKES) if probe.runs[i] == 0]
    again = [i for i in range(N_FAKES) if probe.runs[i] > 1]
    if missing:
        return failed(
            f"{len(missing)} of the {N_FAKES} functions never ran (e.g. number {missing[0]}).",
            "run every function in coro_fns exactly once: one `await fn()` for each.",
        )
    if again:
        return failed(
            f"{len(again)} functions ran more than once (e.g. number {again[0]} ran {probe.runs[again[0]]} times).",
            "call each function once; a coroutine function called twice does its work twice.",
        )
    if probe.peak > LIMIT:
        return failed(
            f"up to {probe.peak} functions ran at once with limit={LIMIT}: nothing held them back.",
            "make `sem = asyncio.Semaphore(limit)` inside bounded_gather and await each function "
            "inside `async with sem:`.",
        )
    if probe.peak < LIMIT:
        return failed(
            f"never more than {probe.peak} ran at once with limit={LIMIT}: bounded, but slower than it may be.",
            "start them all (asyncio.gather over wrapped calls) and let the semaphore hold back the rest; "
            "awaiting one by one runs them serially.",
        )
    if probe.slow_peak < 2:
        return failed(
            f"at most {LIMIT} ran at once, but batch by batch: each batch waited for its slowest member.",
            "a semaphore starts the next function as soon as any slot frees; "
            "gather over all of them with `async with sem:` around each await, not over slices.",
        )
    if not isinstance(results, (list, tuple)):
        return failed(
            f"bounded_gather returned {type(results).__name__} {results!r:.60}, not a list of results.",
            "return what asyncio.gather returns: the results, one per function.",
        )
    results = list(results)
    if results != want:
        if sorted(results, key=str) == sorted(want):
            return failed(
                "the results are all there, but not in the order of coro_fns (completion order?).",
                "asyncio.gather returns results in input order: return its list, don't append as tasks finish.",
            )
        return failed(
            f"expected {N_FAKES} results ['result 0', 'result 1', …], got {results!r:.80}.",
            "return each function's own result: `return await fn()` inside the semaphore block.",
        )
    return passed(
        f"bounded_gather ran {N_FAKES} functions, never more than {LIMIT} at once, reused each free slot "
        "at once, and returned the results in input order."
    )


def _service_facts(service: Any) -> tuple[int, float]:
    from ..service import SearchService

    if not isinstance(service, SearchService):
        raise TypeError(
            f"check_best_limit needs the running service as its second argument, e.g. "
            f"await nb07.check_best_limit(best_limit, service), not {type(service).__name__}."
        )
    if service.capacity is None:
        raise ValueError("this service has no capacity (capacity=None): start it with start_service(capacity=10).")
    if not service.running:
        raise RuntimeError("the service is stopped: start it again, e.g. service = start_service(capacity=10).")
    return service.capacity, max(service.latency.values())


async def _burst(service: Any, limit: int, n: int) -> tuple[float, int]:
    """`n` web searches to `service` through a Semaphore(limit), no retry: (wall seconds, number of 429s)."""
    import httpx

    from ..tools import ServiceError, web_search

    sem = asyncio.Semaphore(limit)
    rejected = 0
    limits = httpx.Limits(max_connections=limit, max_keepalive_connections=min(limit, 20))

    async with httpx.AsyncClient(base_url=service.url, limits=limits, timeout=5.0, verify=False) as client:

        async def one(i: int) -> None:
            nonlocal rejected
            async with sem:
                try:
                    await web_search(f"limit check {i}", client=client)
                except ServiceError as exc:
                    if exc.status_code != 429:
                        raise
                    rejected += 1

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - start, rejected


async def check_best_limit(limit: Any, service: Any) -> Feedback:
    """Check the concurrency limit that gives the most throughput with 0 rejections on `service`.

    Decides from the service's capacity; for a limit at or above it, also sends a real
    burst of requests (about 0.3 s) and reports the 429s it got.
    """
    capacity, latency = _service_facts(service)
    if limit is None or limit is ... or isinstance(limit, bool) or not isinstance(limit, int):
        return failed(
            f"best_limit is {limit!r}: set it to a whole number of requests in flight, e.g. best_limit = 7.",
            "read the curve: the largest limit that still had 0 rejections.",
        )
    if limit < 1:
        return failed(f"best_limit = {limit}: a limit must let at least one request through.", "try the knee.")
    if limit < capacity:
        return failed(
            f"best_limit = {limit} gets 0 rejections, but caps throughput at {limit} ÷ {latency:.2f} s = "
            f"{limit / latency:.0f} requests/s, while the service could serve {capacity / latency:.0f}/s.",
            "below the knee throughput grows with the limit: go up to where rejections start.",
        )
    wall, rejected = await _burst(service, limit, n=3 * limit)
    if limit > capacity:
        seen = f"{rejected} of {3 * limit} requests came back 429" if rejected else "this burst was lucky"
        return failed(
            f"best_limit = {limit} sends more requests at once than the service admits ({seen}).",
            "above the knee throughput stays flat and the extra requests are rejected: "
            "take the largest limit with 0 rejections on the curve.",
        )
    if rejected:
        return failed(
            f"best_limit = {limit} equals the service's capacity, yet {rejected} requests came back 429.",
            "another client may share the service: check service.stats() and rerun.",
        )
    return passed(
        f"best_limit = {limit}: {3 * limit} requests in {wall:.2f} s, 0 rejected; "
        "the knee of the curve, where the limit equals the service's capacity."
    )


def check_max_concurrency(config: Any, capacity: int = 10) -> Feedback:
    """Check a LangGraph run config that bounds a `Send` fan-out to at most `capacity` tasks at once."""
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
        raise ValueError(f"capacity must be an int ≥ 1 (the service's capacity), not {capacity!r}.")
    if not isinstance(config, Mapping):
        return failed(
            f"config is {type(config).__name__} {config!r:.60}, not a dict.",
            'a run config is a dict: app.ainvoke(inputs, config={"max_concurrency": ...}).',
        )
    inner = config.get("configurable")
    top = config.get("max_concurrency")
    if top is None and isinstance(inner, Mapping) and "max_concurrency" in inner:
        return failed(
            'max_concurrency is inside "configurable": LangGraph never reads it there, so the fan-out '
            "runs unbounded, silently.",
            'move it to the top level of the config: {"max_concurrency": ...}, next to "configurable".',
        )
    if top is None:
        return failed(
            f"config {dict(config)!r:.80} has no max_concurrency: every Send task starts at once.",
            'add a top-level key: {"max_concurrency": k}.',
        )
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        return failed(
            f"max_concurrency = {top!r}: it must be a whole number ≥ 1.",
            "the most tasks LangGraph may run at once, e.g. the service's capacity.",
        )
    if top > capacity:
        return failed(
            f"max_concurrency = {top} is at the top level (good) but above the service's capacity {capacity}: "
            "the extra requests get 429.",
            f"bound it at the capacity: {{'max_concurrency': {capacity}}}.",
        )
    if top < capacity:
        return failed(
            f"max_concurrency = {top} is at the top level and safe, but leaves {capacity - top} of the "
            f"service's {capacity} slots idle.",
            "the most throughput with 0 rejections comes at the capacity itself.",
        )
    return passed(
        f'{{"max_concurrency": {top}}} is at the top level of the config: LangGraph runs at most {top} '
        "Send tasks at once, the service's capacity."
    )
