"""Self-checks for notebook 06, *When things fail*.

* `check_gather_partial`: ``async def gather_partial(coros)`` runs coroutines concurrently
  and returns ``(results, errors)``: the values and the exceptions, each in input order,
  without letting an exception escape.
* `check_retry_prediction`: a prediction, made before measuring, of how many requests a
  ``RetryPolicy`` sends to a source that is down and how long the node takes to give up;
  the check measures it on the running service and explains the arithmetic.
* `check_retry_on`: ``def should_retry(exc) -> bool`` for ``RetryPolicy(retry_on=...)``:
  retries HTTP 429 and 5xx (and connection errors), not the other 4xx, not bugs.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import httpx

from ..tools import ServiceError
from . import Feedback, failed, passed

__all__ = ["check_gather_partial", "check_retry_prediction", "check_retry_on"]


# -- exercise 1: gather_partial ------------------------------------------------------------
async def _ok(value: str, delay: float) -> str:
    await asyncio.sleep(delay)
    return value


async def _boom(exc: Exception, delay: float) -> str:
    await asyncio.sleep(delay)
    raise exc


def _close_unawaited(coros: list[Coroutine[Any, Any, Any]]) -> int:
    """Close the coroutines nobody started (no 'never awaited' warning later); how many."""
    unstarted = [c for c in coros if inspect.getcoroutinestate(c) == inspect.CORO_CREATED]
    for c in unstarted:
        c.close()
    return len(unstarted)


def _name(x: object) -> str:
    return repr(x) if len(repr(x)) <= 100 else repr(x)[:97] + "..."


async def check_gather_partial(fn: Callable[[list[Any]], Any]) -> Feedback:
    """Check ``gather_partial(coros) -> (results, errors)`` on three successes and two failures.

    Use it as ``await nb06.check_gather_partial(gather_partial)``.
    """
    if not callable(fn):
        raise TypeError(
            f"check_gather_partial expects your function, e.g. "
            f"`await check_gather_partial(gather_partial)`, not {type(fn).__name__}."
        )
    if not inspect.iscoroutinefunction(fn):
        return failed(
            f"{getattr(fn, '__name__', 'your function')} is not an async function, so it cannot await the coroutines.",
            "define it with `async def gather_partial(coros):` and `await asyncio.gather(...)` inside.",
        )
    # Three successes at 0.1 s and two failures at 0.05 s: 0.4 s one by one, 0.1 s concurrently.
    errors_in = [ValueError("bad query"), ConnectionError("source down")]
    coros = [
        _ok("a", 0.1),
        _boom(errors_in[0], 0.05),
        _ok("b", 0.1),
        _boom(errors_in[1], 0.05),
        _ok("c", 0.1),
    ]
    serial = 0.1 * 3 + 0.05 * 2
    start = time.perf_counter()
    try:
        out = await asyncio.wait_for(fn(list(coros)), timeout=5)
    except TimeoutError:
        _close_unawaited(coros)
        return failed(
            "gather_partial did not return within 5 s.",
            "await the gather once: `await asyncio.gather(*coros, return_exceptions=True)`.",
        )
    except Exception as exc:
        await asyncio.sleep(0.15)  # let the siblings that gather left running finish
        _close_unawaited(coros)
        return failed(
            f"an exception escaped from gather_partial: {_name(exc)}. One failed source sank the whole batch.",
            "pass `return_exceptions=True` to asyncio.gather: failures come back as values in the list.",
            "then sort each item into results or errors with `isinstance(item, BaseException)`.",
        )
    took = time.perf_counter() - start
    never = _close_unawaited(coros)
    if never:
        return failed(
            f"{never} of the 5 coroutines were never awaited, so their work never ran.",
            "pass all of them to asyncio.gather: `asyncio.gather(*coros, return_exceptions=True)`.",
        )
    if not (isinstance(out, tuple | list) and len(out) == 2):
        return failed(
            f"gather_partial should return a pair (results, errors), not {_name(out)[:80]}.",
            "end with `return results, errors`.",
        )
    results, errors = out
    results, errors = list(results), list(errors)
    if any(isinstance(r, BaseException) for r in results):
        return failed(
            f"results holds exceptions: {[_name(r) for r in results]}.",
            "put an item in errors when `isinstance(item, BaseException)`, else in results.",
        )
    if sorted(map(str, results)) != ["a", "b", "c"]:
        return failed(
            f"results should hold the three values 'a', 'b', 'c', not {results!r}.",
            "each successful coroutine's return value goes into results, once.",
        )
    if results != ["a", "b", "c"]:
        return failed(
            f"results are out of input order: {results!r} (want ['a', 'b', 'c']).",
            "asyncio.gather returns its list in the order of its arguments: keep that order, "
            "do not collect in completion order (as_completed).",
        )
    if [e for e in errors if not isinstance(e, BaseException)]:
        return failed(
            f"errors should hold the exception objects themselves, not {[_name(e) for e in errors]}.",
            "append the exception (`errors.append(item)`), not its text or its type: the caller may re-raise it.",
        )
    if errors != errors_in:
        return failed(
            f"errors should be [ValueError, ConnectionError], the two raised, in input order, "
            f"not {[_name(e) for e in errors]}.",
            "keep every exception gather returns, in the order it returns them.",
        )
    if took > 0.6 * serial:
        return failed(
            f"all the right values, but it took {took:.2f} s: about the sum of the waits ({serial:.2f} s), "
            "so the coroutines ran one after another.",
            "await them together with one `asyncio.gather(*coros, ...)`, not one by one in a loop.",
        )
    return passed(
        f"gather_partial returned 3 results and 2 errors, in input order, in {took:.2f} s "
        f"(one by one: {serial:.2f} s). Nothing escaped."
    )


# -- exercise 2: predict what a RetryPolicy costs ----------------------------------------------
def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _waits(policy: Any) -> list[float]:
    """The waits between the attempts of a jitter-free RetryPolicy, as LangGraph computes them."""
    waits, interval = [], float(policy.initial_interval)
    for _ in range(policy.max_attempts - 1):
        waits.append(min(float(policy.max_interval), interval))
        interval *= policy.backoff_factor
    return waits


async def _measure_retries(policy: Any) -> tuple[int, float, float]:
    """Run a one-node graph (a web search under `policy`) while every request fails.

    Returns (requests the service counted, seconds until the node gave up, the web's latency).
    """
    from langgraph.graph import END, START, StateGraph

    from ..agency import AgencyState
    from ..service import current_service
    from ..tools import web_search

    async def researcher(state: AgencyState) -> dict[str, Any]:
        return {"findings": await web_search(state["topic"])}

    graph = StateGraph(AgencyState)
    graph.add_node("researcher", researcher, retry_policy=policy)
    graph.add_edge(START, "researcher")
    graph.add_edge("researcher", END)
    app = graph.compile()
    service = current_service()
    with service.scenario(failure_rate=1.0):  # the source is down; the knobs come back afterwards
        latency = service.latency["web"]
        start = time.perf_counter()
        try:
            await app.ainvoke({"topic": "retry prediction"})
        except ServiceError:
            pass
        took = time.perf_counter() - start
        requests = service.stats().requests
    return requests, took, latency


async def check_retry_prediction(prediction: Any, policy: Any) -> Feedback:
    """Check a prediction ``{"requests": n, "seconds": s}`` for a node with `policy` on a source that is down.

    Use it as ``await nb06.check_retry_prediction(my_prediction, flaky_policy)``. It measures
    only once the prediction is filled in, so its answer is not given away before.
    """
    from langgraph.types import RetryPolicy

    if not isinstance(policy, RetryPolicy):
        raise TypeError(
            f"check_retry_prediction needs the RetryPolicy as its second argument, e.g. "
            f"`await nb06.check_retry_prediction(my_prediction, flaky_policy)`, not {type(policy).__name__}."
        )
    if policy.jitter:
        raise ValueError("this policy has jitter=True: its waits are random, so no prediction can be checked.")
    if not isinstance(prediction, Mapping) or set(prediction) != {"requests", "seconds"}:
        return failed(
            f"the prediction should be a dict with the keys 'requests' and 'seconds', not {_name(prediction)}.",
            'write it as my_prediction = {"requests": ..., "seconds": ...}.',
        )
    requests, seconds = prediction["requests"], prediction["seconds"]
    if requests is None or seconds is None:
        return failed(
            "no prediction yet: fill in both numbers first, then run this cell (it measures only then).",
            "requests: how many attempts does the policy allow, and how many requests does one attempt send?",
            "seconds: each attempt waits for the service's answer; between attempts the policy sleeps "
            "(initial_interval, then times backoff_factor each time).",
        )
    if not (isinstance(requests, int) and not isinstance(requests, bool)) or not _is_number(seconds):
        return failed(
            f"requests should be a whole number and seconds a number, not {requests!r} and {seconds!r}.",
            'e.g. my_prediction = {"requests": 2, "seconds": 0.5}.',
        )
    measured_requests, measured, latency = await _measure_retries(policy)
    waits = _waits(policy)
    expected = policy.max_attempts * latency + sum(waits)
    arithmetic = (
        f"{policy.max_attempts} attempts of {latency:.2f} s each, and "
        + (" + ".join(f"{w:.2f} s" for w in waits) or "no wait")
        + f" of waiting between them: {expected:.2f} s"
    )
    problems, hints = [], []
    if requests != measured_requests:
        problems.append(f"you predicted {requests} requests; the service counted {measured_requests}")
        hints.append("max_attempts counts the first try too, and each attempt re-runs the whole node: one request.")
    if abs(seconds - measured) > max(0.1, 0.25 * measured):
        problems.append(f"you predicted {seconds:.2f} s; the node gave up after {measured:.2f} s")
        hints.append(
            "add the attempts' own time (the service's latency each) and every wait between two attempts: "
            "initial_interval, then times backoff_factor after each retry."
        )
    if problems:
        return failed("; ".join(problems) + ".", *hints)
    return passed(
        f"right: {measured_requests} requests, and the node gave up after {measured:.2f} s "
        f"(you said {seconds:.2f} s). The arithmetic: {arithmetic}."
    )


# -- exercise 3: a retry_on predicate -----------------------------------------------------------
_REQUEST = httpx.Request("GET", "http://127.0.0.1/search/web?q=async+python")


def _status(code: int) -> httpx.HTTPStatusError:
    return ServiceError("web", "async python", httpx.Response(code, request=_REQUEST))


def _plain_status(code: int) -> httpx.HTTPStatusError:
    return httpx.HTTPStatusError(f"HTTP {code}", request=_REQUEST, response=httpx.Response(code, request=_REQUEST))


#: (label, exception, want, why)
_RETRY_CASES: list[tuple[str, Callable[[], BaseException], bool, str]] = [
    ("ServiceError 429", lambda: _status(429), True, "429 means 'slow down': a later attempt may get in"),
    ("ServiceError 503", lambda: _status(503), True, "5xx is the server's trouble: a retry may succeed"),
    ("ServiceError 500", lambda: _status(500), True, "5xx is the server's trouble: a retry may succeed"),
    ("HTTPStatusError 502", lambda: _plain_status(502), True, "any 5xx, from any httpx call"),
    ("HTTPStatusError 429", lambda: _plain_status(429), True, "any 429, from any httpx call"),
    ("ServiceError 404", lambda: _status(404), False, "a 404 will be a 404 again: retrying only wastes time"),
    ("HTTPStatusError 400", lambda: _plain_status(400), False, "a bad request stays bad"),
    ("ConnectionError", lambda: ConnectionError("refused"), True, "a dropped connection is transient"),
    ("httpx.ConnectError", lambda: httpx.ConnectError("refused"), True, "a dropped connection is transient"),
    ("ValueError", lambda: ValueError("bad query"), False, "a bug in the code: the same input fails the same way"),
    ("KeyError", lambda: KeyError("findings"), False, "a bug in the code: the same input fails the same way"),
]


def check_retry_on(fn: Callable[[Exception], object]) -> Feedback:
    """Check a ``retry_on`` predicate against 429, 5xx, other 4xx, connection errors and bugs.

    Use it as ``nb06.check_retry_on(should_retry)``.
    """
    if not callable(fn) or isinstance(fn, type):
        raise TypeError(
            f"check_retry_on expects your predicate function, e.g. `check_retry_on(should_retry)`, not {fn!r}."
        )
    if inspect.iscoroutinefunction(fn):
        return failed(
            "should_retry is async, but RetryPolicy calls retry_on(exc) without awaiting it: "
            "a coroutine object is always truthy, so everything would be retried.",
            "define it with plain `def should_retry(exc):`.",
        )
    wrong: list[str] = []
    hints: list[str] = []
    for label, make, want, why in _RETRY_CASES:
        exc = make()
        try:
            got = fn(exc)  # type: ignore[arg-type]
        except Exception as e:
            return failed(
                f"should_retry raised {type(e).__name__}: {e} on {label}.",
                "it is called with every exception the node raises: check the type first "
                "(`isinstance(exc, httpx.HTTPStatusError)`) before reading `exc.response.status_code`.",
            )
        if bool(got) != want:
            wrong.append(f"{label} → {got!r}, want {want}: {why}")
            if label.startswith("ConnectionError") or label.startswith("httpx.Connect"):
                hint = "for anything that is not an HTTP status error, return `default_retry_on(exc)` (from langgraph.types)."
            elif "HTTPStatusError" in label and want:
                hint = "test `isinstance(exc, httpx.HTTPStatusError)`: ServiceError is one, and so is any httpx error status."
            elif want:
                hint = "read the status from `exc.response.status_code`: retry 429 and 500–599."
            else:
                hint = "retry only 429 and 500–599 among the status errors; leave the other exceptions to default_retry_on."
            if hint not in hints:
                hints.append(hint)
    if wrong:
        return failed(
            f"should_retry is wrong for {len(wrong)} of {len(_RETRY_CASES)} exceptions:\n     - "
            + "\n     - ".join(wrong),
            *hints,
        )
    return passed(
        f"should_retry is right for all {len(_RETRY_CASES)} exceptions: 429 and 5xx and dropped connections "
        "are retried; other 4xx and bugs are not."
    )
