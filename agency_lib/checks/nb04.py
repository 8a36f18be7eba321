"""Self-checks for notebook 04 (the event loop's enemies): a blocking researcher, a missing await,
and a prediction of the thread pool's waves.

The first two are async and need the local search service running:

* ``await nb04.check_unblocked(research_topic)`` runs ``research_topic(query)`` next to a
  heartbeat task and reports the longest time the event loop was stalled;
* ``await nb04.check_report(research_report)`` runs ``research_report(queries)`` and looks
  for coroutines (or unfinished futures) hidden in what it returns;
* ``await nb04.check_pool_prediction(predicted_wall)`` runs ``POOL_CALLS`` blocking calls of
  ``POOL_LATENCY`` s through ``asyncio.to_thread`` on a default pool of ``POOL_WORKERS`` threads,
  measures the wall time and compares your prediction with it (no service needed).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from numbers import Real
from typing import Any

from ..tools import SOURCES
from . import Feedback, failed, passed

__all__ = [
    "check_unblocked",
    "check_report",
    "check_pool_prediction",
    "longest_stall",
    "POOL_CALLS",
    "POOL_WORKERS",
    "POOL_LATENCY",
]

_TICK = 0.005  # the heartbeat's period, seconds


def _short(exc: BaseException) -> str:
    """`Type: message` on one line, cut short."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 110 else text[:107] + "..."


def _check_fn(fn: Any, argument: str) -> str:
    if not callable(fn):
        raise TypeError(
            f"pass your async function itself (e.g. {argument}, without parentheses), not {type(fn).__name__}."
        )
    return getattr(fn, "__name__", "your function")


async def _heartbeat(stop: asyncio.Event) -> float:
    """Tick every few ms until `stop` is set; return the longest extra wait between two ticks."""
    longest = 0.0
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(_TICK)
        longest = max(longest, time.perf_counter() - before - _TICK)
    return longest


async def longest_stall(awaitable: Any) -> tuple[Any, float, float]:
    """Await `awaitable` next to a heartbeat: (its result, the longest loop stall, wall time) in seconds.

    A stall is a time the heartbeat should have ticked but could not, because something
    held the event loop's thread. The awaitable's exception, if any, propagates.
    """
    if not inspect.isawaitable(awaitable):
        raise TypeError(f"longest_stall needs an awaitable (e.g. fn(query)), not {type(awaitable).__name__}.")
    stop = asyncio.Event()
    beat = asyncio.create_task(_heartbeat(stop))
    start = time.perf_counter()
    try:  # from here on the heartbeat is stopped and awaited, however this ends
        await asyncio.sleep(0)  # let the heartbeat take its first tick
        start = time.perf_counter()
        result = await awaitable
    finally:
        wall = time.perf_counter() - start
        stop.set()
        stall = await beat
    return result, stall, wall


def _sources_of(findings: Any) -> set[str] | None:
    """The sources in a list of findings, or None if it is not a list of finding dicts."""
    if not isinstance(findings, list) or not all(isinstance(f, dict) for f in findings):
        return None
    return {str(f.get("source")) for f in findings}


async def check_unblocked(research_topic: Callable[[str], Any], query: str = "async python") -> Feedback:
    """Check that ``await research_topic(query)`` searches web, kb and api without stalling the loop."""
    name = _check_fn(research_topic, "research_topic")
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"query must be a non-empty string, e.g. 'async python', not {query!r}.")
    if not inspect.iscoroutinefunction(research_topic):
        return failed(
            f"{name} is a plain def: the exercise asks for an `async def` that the loop can run alongside others.",
            f"keep `async def {name}(query)` and make each search awaitable.",
        )
    try:
        result, stall, wall = await longest_stall(research_topic(query))
    except Exception as exc:
        return failed(f"{name}({query!r}) raised {_short(exc)}", "read the message, fix, and run the check again.")
    if inspect.iscoroutine(result):
        result.close()  # never awaited: close it, so no warning follows the learner around
        return failed(
            f"{name} returned a coroutine, not findings: a call inside it is missing `await`.",
            "write `await search(source, query)` (or `await asyncio.gather(...)`), not just the call.",
        )
    sources = _sources_of(result)
    if sources is None:
        return failed(
            f"{name} returned {type(result).__name__}, not a list of findings (dicts).",
            "collect the findings of the three searches into one list and return it.",
        )
    missing = [s for s in SOURCES if s not in sources]
    if missing:
        return failed(
            f"{name} returned no findings from {', '.join(missing)}.",
            f"search every source in SOURCES {SOURCES}, not only some of them.",
        )
    # 0.1 s: far above what a busy machine delays a tick (0.07 s seen under load), far below one blocking search.
    if stall > 0.1 and stall > 0.25 * wall:
        return failed(
            f"{name} stalled the event loop for {stall:.2f} s of its {wall:.2f} s run: nothing else could run.",
            "a blocking call (search_blocking, time.sleep, httpx.Client, requests) inside `async def` holds "
            "the loop's only thread until it returns.",
            "use the async tool, `await search(source, query)`, or push the blocking one to a worker thread: "
            "`await asyncio.to_thread(search_blocking, source, query)`.",
        )
    overlap = (
        "the three searches overlapped"
        if wall < 0.75 * _serial_estimate()
        else "tip: `asyncio.gather` the three searches to overlap them as well"
    )
    return passed(
        f"{name} kept the loop free: longest stall {stall:.2f} s in a {wall:.2f} s run, "
        f"{len(result)} findings from {', '.join(SOURCES)}; {overlap}."
    )


def _serial_estimate() -> float:
    """How long the three sources take one after another with the course's latencies."""
    from ..service import current_service
    from ..tools import SOURCE_LATENCY

    try:
        latency = current_service().latency
    except RuntimeError:
        latency = {}
    return sum(latency.get(s, SOURCE_LATENCY[s]) for s in SOURCES)


def _walk(value: Any, path: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """Every (path, item) in nested dicts, lists and tuples."""
    yield path, value
    if depth > 6:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}[{k!r}]", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]", depth + 1)


_SETTLE = 2.0  # seconds the learner's leftover futures get to finish before they are cancelled


async def _settle(pending: list[asyncio.Future[Any]]) -> None:
    """Let futures the learner's code left running finish (cancel them after a while), so
    nothing outlives the check and no search is cut off halfway."""
    if not pending:
        return
    _, still_running = await asyncio.wait(pending, timeout=_SETTLE)
    for f in still_running:
        f.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


async def check_report(
    research_report: Callable[[list[str]], Any], queries: list[str] | tuple[str, ...] = ("async python", "event loop")
) -> Feedback:
    """Check ``await research_report(queries)``: {query: {"web": findings, "kb": findings}}, no coroutine inside."""
    name = _check_fn(research_report, "research_report")
    if (
        not isinstance(queries, (list, tuple))
        or not queries
        or not all(isinstance(q, str) and q.strip() for q in queries)
    ):
        raise ValueError(f"queries must be a non-empty list of non-empty strings, not {queries!r}.")
    queries = list(queries)
    if not inspect.iscoroutinefunction(research_report):
        return failed(
            f"{name} is a plain def: it must be `async def` to await the searches.",
            f"write `async def {name}(queries)`.",
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        try:
            report = await research_report(queries)
        except Exception as exc:
            return failed(f"{name} raised {_short(exc)}", "read the message, fix, and run the check again.")
        found = list(_walk(report, "report"))
        coroutines = [(p, v) for p, v in found if inspect.iscoroutine(v)]
        futures = [(p, v) for p, v in found if isinstance(v, asyncio.Future)]
        for _, c in coroutines:
            c.close()  # never awaited: close them, so no warning follows the learner around
        await _settle([f for _, f in futures])
        del found  # (an un-awaited call that was dropped has warned already, inside catch_warnings)
    lost = sorted({str(w.message) for w in caught if "was never awaited" in str(w.message)})
    if coroutines:
        path, coro = coroutines[0]
        what = getattr(coro, "__qualname__", "a coroutine")
        return failed(
            f"{path} is a coroutine object ({what}), not findings: {what}(...) was called without `await`.",
            "calling an `async def` function only creates a coroutine; nothing runs until it is awaited.",
            f"write `await {what}(...)` there (or gather several with `await asyncio.gather(...)`).",
        )
    if futures:
        path, _ = futures[0]
        return failed(
            f"{path} is an asyncio Future or Task, not findings: `asyncio.gather(...)` or a task was not awaited.",
            "write `await asyncio.gather(...)`, and `await` any task before using its result.",
        )
    if lost:
        return failed(
            f"{name} called a coroutine function without awaiting it: {lost[0]}.",
            "an un-awaited call does nothing: add `await` in front of it (or delete it).",
        )
    if not isinstance(report, dict) or sorted(report) != sorted(queries):
        keys = sorted(report) if isinstance(report, dict) else type(report).__name__
        return failed(
            f"{name} should return a dict keyed by the queries {queries}, not {keys}.",
            'build `report[query] = {"web": ..., "kb": ...}` for each query.',
        )
    for q in queries:
        entry = report[q]
        if not isinstance(entry, dict) or set(entry) != {"web", "kb"}:
            return failed(
                f"report[{q!r}] should be a dict with keys 'web' and 'kb', not {entry!r:.80}.",
                'use `{"web": await web_search(query), "kb": await kb_search(query)}`.',
            )
        for source in ("web", "kb"):
            got = _sources_of(entry[source])
            if got != {source}:
                return failed(
                    f"report[{q!r}][{source!r}] should be the findings of {source} (a list of dicts), "
                    f"not {type(entry[source]).__name__} with sources {sorted(got or [])}.",
                    f"put the result of the {source} search there.",
                )
    n = sum(len(report[q][s]) for q in queries for s in ("web", "kb"))
    return passed(f"{name} awaited every search: {n} findings for {len(queries)} queries, no coroutine left inside.")


# -- check_pool_prediction: "predict the thread pool's waves" -----------------------------
POOL_CALLS = 10  #: blocking calls started at once with asyncio.to_thread
POOL_WORKERS = 4  #: threads in the loop's default pool during the measurement
POOL_LATENCY = 0.1  #: seconds each call blocks its thread (time.sleep)


@contextmanager
def _default_pool(loop: asyncio.AbstractEventLoop, workers: int) -> Iterator[None]:
    """The loop's default executor is a pool of `workers` threads for the block; then the previous one again."""
    previous = loop._default_executor  # type: ignore[attr-defined]  # asyncio has no getter
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nb04-check")
    loop.set_default_executor(pool)
    try:
        yield
    finally:
        loop._default_executor = previous  # type: ignore[attr-defined]
        pool.shutdown(wait=False)  # idle workers exit on their own: the loop does not wait for them


async def check_pool_prediction(
    predicted: object, calls: int = POOL_CALLS, workers: int = POOL_WORKERS, latency: float = POOL_LATENCY
) -> Feedback:
    """Check a prediction of the wall time of ``calls`` x ``asyncio.to_thread(time.sleep, latency)``,
    gathered, when the loop's default pool has ``workers`` threads. The check measures it too."""
    for label, value, top in (("calls", calls, 64), ("workers", workers, 64)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise ValueError(f"{label} must be an int between 1 and {top}, not {value!r}.")
    if isinstance(latency, bool) or not isinstance(latency, Real) or not 0 < latency <= 1:
        raise ValueError(f"latency must be seconds in (0, 1], not {latency!r}.")
    if predicted is None or predicted is Ellipsis:
        return failed(
            f"predicted_wall is {predicted!r}: write your prediction, a number of seconds, before you run the check.",
            "e.g. predicted_wall = 0.5",
        )
    if isinstance(predicted, bool) or not isinstance(predicted, Real) or predicted < 0:
        return failed(
            f"predicted_wall should be a number of seconds (≥ 0), not {type(predicted).__name__} {predicted!r}.",
            "e.g. predicted_wall = 0.5",
        )
    p = float(predicted)
    loop = asyncio.get_running_loop()
    with _default_pool(loop, workers):
        start = time.perf_counter()
        await asyncio.gather(*(asyncio.to_thread(time.sleep, latency) for _ in range(calls)))
        wall = time.perf_counter() - start
    waves = math.ceil(calls / workers)
    model = waves * latency
    measured = f"measured: {wall:.2f} s"
    tol = 0.3 * latency
    if abs(p - model) <= tol:
        sizes = [min(workers, calls - i * workers) for i in range(waves)]
        return passed(
            f"{p:g} s ({measured}): {calls} calls on {workers} threads run in {waves} waves "
            f"({' + '.join(map(str, sizes))}), each as long as one call, {latency:g} s."
        )
    runs_at_once = f"the pool runs {min(workers, calls)} calls at once; the others wait in its queue for a free thread"
    if waves > 1 and abs(p - latency) <= tol:
        return failed(
            f"{p:g} s is one call's time: true only for a pool of at least {calls} threads ({measured}).",
            runs_at_once,
            "how many rounds does the pool need?",
        )
    if abs(p - calls * latency) <= tol:
        return failed(f"{p:g} s is one call after another ({measured}).", runs_at_once)
    if calls % workers and abs(p - calls / workers * latency) <= tol:
        return failed(
            f"{p:g} s counts a part of a round ({measured}).",
            f"the last round has only {calls % workers} calls in it, yet it lasts a whole call: round up.",
        )
    return failed(f"{p:g} s is not it ({measured}).", runs_at_once, "count the rounds, then multiply.")
