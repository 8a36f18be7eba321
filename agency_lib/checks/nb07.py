"""Self-checks for notebook 07 (backpressure): a bounded gather, a throughput prediction, a bounded fan-out's config.

* `await check_bounded_gather(fn)`: runs the learner's ``bounded_gather(coro_fns, limit)``
  on instrumented fakes and measures how many ran at once, whether a free slot was
  reused at once (not batch by batch), and the order of the results.
* `check_throughput_prediction(prediction, curve)`: compares a prediction of completed
  queries per second at a few concurrency limits, made before measuring, with the measured curve.
* `check_max_concurrency(config, capacity)`: reads a LangGraph run config and says
  whether ``max_concurrency`` is where LangGraph reads it (the top level).
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from . import Feedback, failed, passed

__all__ = ["check_bounded_gather", "check_throughput_prediction", "check_max_concurrency"]

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


def _curve_by_limit(curve: Any) -> dict[int, float]:
    """The notebook's measured curve as {limit: completed queries per second}; a clear error if it is not one."""
    if not isinstance(curve, list | tuple) or not curve or not all(isinstance(r, Mapping) for r in curve):
        raise TypeError(
            "check_throughput_prediction needs the measured curve as its second argument (a list of dicts "
            f"with 'limit' and 'queries_per_s'), e.g. nb07.check_throughput_prediction(my_prediction, curve), "
            f"not {type(curve).__name__}."
        )
    try:
        return {int(r["limit"]): float(r["queries_per_s"]) for r in curve}
    except (KeyError, TypeError, ValueError):
        raise TypeError(
            "each point of the curve needs a 'limit' and a 'queries_per_s': run the curve cell first."
        ) from None


def check_throughput_prediction(prediction: Any, curve: Any, tolerance: float = 0.3) -> Feedback:
    """Check a prediction ``{limit: completed queries per second}`` against the measured curve.

    A predicted value passes when it is within `tolerance` (30 %) of the measurement at that
    limit, or within 10 % of the ideal ``min(limit, capacity) ÷ latency`` of the running
    service (a busy machine measures less than the ideal). Use it as
    ``nb07.check_throughput_prediction(my_prediction, curve)``.
    """
    from ..service import current_service

    measured = _curve_by_limit(curve)
    service = current_service()
    capacity, latency = service.capacity, service.latency["web"]
    if capacity is None:
        raise ValueError("the service has no capacity: the curve of this exercise needs start_service(capacity=10).")
    if not isinstance(prediction, Mapping) or not prediction:
        return failed(
            f"the prediction should be a dict {{limit: queries per second}}, not {prediction!r:.60}.",
            "e.g. my_prediction = {4: ..., 10: ..., 20: ...}.",
        )
    unmeasured = [k for k in prediction if k not in measured]
    if unmeasured:
        return failed(
            f"no measurement at limit {unmeasured[0]!r}: predict for limits the curve measured ({sorted(measured)}).",
            "keep the keys the exercise gave you.",
        )
    if any(v is None for v in prediction.values()):
        return failed(
            "no prediction yet: write a number of completed queries per second for each limit, then run "
            "the curve cell and this check.",
            "how many queries can be in flight at each limit, and how long does each take?",
        )
    if any(isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in prediction.values()):
        return failed(
            f"every prediction should be a number of queries per second, not {dict(prediction)!r:.80}.",
            "e.g. 25 for 25 completed queries per second.",
        )
    wrong, hints = [], []
    for limit, guess in sorted(prediction.items()):
        got, ideal = measured[limit], min(limit, capacity) / latency
        if abs(guess - got) > tolerance * got and abs(guess - ideal) > 0.1 * ideal:
            wrong.append(f"limit {limit}: you said {guess:.0f}, the curve measured {got:.0f} queries/s")
            above = limit > capacity
            hint = (
                "above the service's capacity, extra requests are rejected, not served: "
                "the service still completes at most capacity ÷ latency queries a second."
                if above
                else "up to the capacity, each of the `limit` slots completes one query per latency: limit ÷ latency."
            )
            if hint not in hints:
                hints.append(hint)
    if wrong:
        return failed(
            f"{len(wrong)} of {len(prediction)} predictions are off by more than {tolerance:.0%}: "
            + "; ".join(wrong)
            + ".",
            *hints,
        )
    return passed(
        f"all {len(prediction)} predictions hold: completed queries per second are at most "
        "min(limit, capacity) ÷ latency, and the curve measured a little less (each request's own overhead)."
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
