"""Self-checks for notebook 01 (why async): a concurrent Researcher, and predicting a gather's wall time.

Both checks measure for themselves: they run your code (or the delays) and time it, so
what they report is what happened on this machine, not what was configured.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any

from ..timing import Recorder
from ..tools import SOURCES
from . import Feedback, failed, passed

__all__ = ["check_research_concurrently", "check_prediction", "QUERIES", "DELAYS"]

#: The queries `check_research_concurrently` passes to your function (each has hits in every source).
QUERIES = ("event loop", "connection pool")
#: The waits (seconds) whose `asyncio.gather` wall time you predict.
DELAYS = (0.2, 0.1, 0.3, 0.1)

_GATHER_HINT = "make every coroutine first, then run them together: return await asyncio.gather(*coros)"


def _check_queries(queries: Sequence[str]) -> list[str]:
    if isinstance(queries, str) or not isinstance(queries, Sequence) or not queries:
        raise ValueError(f"queries must be a non-empty list of strings, e.g. ['event loop'], not {queries!r}.")
    if not all(isinstance(q, str) and q.strip() for q in queries):
        raise ValueError(f"every query must be a non-empty string: {list(queries)!r}.")
    return list(queries)


async def _discard(result: Any) -> None:
    """Drop an awaitable the learner returned instead of awaiting: no task or warning outlives the check."""
    if inspect.iscoroutine(result):
        result.close()
    elif asyncio.isfuture(result):
        result.cancel()
        try:
            await result
        except BaseException:  # the cancelled gather, or the error one of its searches raised
            pass


async def check_research_concurrently(fn: Callable[[list[str]], Any], queries: Sequence[str] = QUERIES) -> Feedback:
    """Run ``await fn(queries)`` and check the results, their order and that the searches overlapped.

    Expected: one list of findings per (query, source) pair, in the order
    ``[(q, s) for q in queries for s in SOURCES]``, and a wall time closer to the longest
    search (all overlapping) than to the sum of the searches' durations (one after another),
    both measured here: wall < max + 0.5 × (Σ − max).
    """
    if inspect.iscoroutine(fn):
        fn.close()
        raise TypeError(
            "pass the function itself, without calling it: "
            "await nb01.check_research_concurrently(research_concurrently)"
        )
    if not callable(fn):
        raise TypeError(f"pass your async function, not {type(fn).__name__} {fn!r}.")
    queries = _check_queries(queries)
    if not inspect.iscoroutinefunction(fn):
        return failed(
            f"{getattr(fn, '__name__', 'your function')} is a plain `def`: it cannot await the searches.",
            "declare it with `async def research_concurrently(queries):`",
        )
    pairs = [(q, s) for q in queries for s in SOURCES]
    rec = Recorder("check")
    start = time.perf_counter()
    try:
        with rec:
            result = await fn(list(queries))
    except Exception as exc:
        return failed(
            f"your function raised {type(exc).__name__}: {exc}",
            "run it on its own first: await research_concurrently(['event loop'])",
            "is the service running? service = start_service(seed=0)",
        )
    wall = time.perf_counter() - start
    if inspect.isawaitable(result):
        await _discard(result)
        return failed(
            f"your function returned {type(result).__name__} (an awaitable) instead of the results.",
            "await it inside the function: return await asyncio.gather(*coros)",
        )
    if not isinstance(result, list):
        return failed(
            f"your function returned {type(result).__name__}, not a list.",
            "return the list that `await asyncio.gather(...)` gives you",
        )
    if len(result) != len(pairs):
        hints = [f"search once per pair: {len(queries)} queries × {len(SOURCES)} sources = {len(pairs)} searches"]
        if result and all(isinstance(r, dict) for r in result):
            hints.insert(0, "it looks flattened: return gather's list as it is, one list of findings per search")
        return failed(
            f"expected {len(pairs)} lists of findings, one per (query, source) pair; got {len(result)}.", *hints
        )
    for i, (item, (q, s)) in enumerate(zip(result, pairs, strict=True)):
        if not isinstance(item, list):
            return failed(
                f"item {i} is a {type(item).__name__}; expected the list of findings of search({s!r}, {q!r}).",
                "gather returns each awaitable's result, here a list of findings",
            )
        first = item[0] if item and isinstance(item[0], dict) else {}
        got = (first.get("source"), first.get("query"))
        if item and got != (s, q):
            return failed(
                f"item {i} holds the findings of {got[0]!r} for {got[1]!r}, but should hold {s!r} for {q!r}: "
                "the results are not in input order.",
                f"expected order: for each query, the sources {SOURCES}",
                "asyncio.gather returns results in the order of its arguments: "
                "do not collect them as they finish (as_completed) or sort them",
            )
    if not len(rec):
        return failed(
            "the results look right, but no search was recorded: were they made with the course's tools?",
            "call search(source, query) (or web_search / kb_search / api_lookup) for each pair",
        )
    summary = rec.summary()
    busy, longest = summary.busy, summary.longest
    if wall >= longest + 0.5 * (busy - longest):
        return failed(
            f"right results in the right order, but the {len(rec)} searches took {wall:.2f} s: "
            f"nearer the sum of their waits ({busy:.2f} s) than the longest one ({longest:.2f} s). "
            "They ran one after another.",
            "an `await` inside a loop waits for each search before it starts the next one",
            _GATHER_HINT,
        )
    return passed(
        f"{len(pairs)} results in input order, and the searches overlapped: {busy:.2f} s of waiting in "
        f"{wall:.2f} s, about the longest search ({longest:.2f} s); peak {summary.peak_concurrency} at once."
    )


def _check_delays(delays: Sequence[float]) -> list[float]:
    if isinstance(delays, str) or not isinstance(delays, Sequence) or not delays:
        raise ValueError(f"delays must be a non-empty list of seconds, e.g. (0.2, 0.1), not {delays!r}.")
    for d in delays:
        if isinstance(d, bool) or not isinstance(d, Real) or not 0 < d <= 5:
            raise ValueError(f"every delay must be a number of seconds in (0, 5], not {d!r}.")
    return [float(d) for d in delays]


async def check_prediction(predicted: object, delays: Sequence[float] = DELAYS) -> Feedback:
    """Check a prediction of ``await asyncio.gather(*(asyncio.sleep(d) for d in delays))``'s wall time.

    The check runs that gather, measures it, and accepts max(delays) within 10 % (at least 0.03 s).
    """
    waits = _check_delays(delays)
    if predicted is None or predicted is Ellipsis:
        return failed(
            f"predicted is {predicted!r}: write your prediction first, as a number of seconds (e.g. predicted = 0.5).",
            "decide before you measure: that is the exercise",
        )
    if isinstance(predicted, bool) or not isinstance(predicted, Real):
        return failed(
            f"predicted should be a number of seconds, not {type(predicted).__name__} {predicted!r}.",
            "e.g. predicted = 0.5",
        )
    p = float(predicted)
    longest, total, mean = max(waits), sum(waits), sum(waits) / len(waits)
    start = time.perf_counter()
    await asyncio.gather(*(asyncio.sleep(d) for d in waits))
    wall = time.perf_counter() - start
    measured = f"measured: gather over {len(waits)} waits took {wall:.2f} s"
    tol = max(0.03, 0.1 * longest)
    if abs(p - longest) <= tol:
        return passed(
            f"{p:g} s: gather waits as long as the longest wait, max = {longest:g} s ({measured}). "
            f"A loop of awaits would take the sum, Σ = {total:g} s: Σ / max predicts a speed-up of {total / longest:.2f}."
        )
    overlap = "gather starts every wait at once, so they overlap: the slowest one decides when all are done"
    if abs(p - total) <= tol:
        return failed(
            f"{p:g} s is the sum of the waits: what a loop of `await`s takes, one after another ({measured}).",
            overlap,
        )
    if abs(p - mean) <= tol:
        return failed(f"{p:g} s is the average wait ({measured}).", overlap, "the others are still waiting then")
    if abs(p - min(waits)) <= tol:
        return failed(
            f"{p:g} s is the shortest wait: gather returns when all are done, not the first ({measured}).",
            overlap,
        )
    return failed(f"{p:g} s is not it ({measured}).", overlap, "which wait ends last?")
