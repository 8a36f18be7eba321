"""Self-checks for notebook 09, *The capstone*.

* `check_route`: ``def route_after_editor(state) -> str`` ends the revision loop: an approved
  article goes to END; a rejected one goes back to ``"writer"`` while fewer than
  `max_revisions` revisions were made, and to END after that.
* `check_bounds`: the Researcher's bounds (an HTTP semaphore and ``max_concurrency``) give
  a run with no 429s whose research phase is close to its critical path.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.graph import END

from ..progress import critical_path
from ..service import ServiceStats
from ..timing import Recorder
from . import Feedback, failed, passed

__all__ = ["check_route", "check_bounds", "research_ratio"]


# -- exercise: the route of the revision loop ----------------------------------------------------
def _samples(max_revisions: int) -> list[tuple[dict[str, Any], str, str]]:
    """(state, expected route, why) for the sample states an editor can leave behind."""
    m = max_revisions
    return [
        ({"approved": True, "revisions": 1}, END, "an approved article is finished"),
        ({"approved": False, "revisions": 1}, "writer", f"a rejected draft after 1 of {m} revisions gets rewritten"),
        ({"approved": True, "revisions": m}, END, "an approved article is finished"),
        ({"approved": False, "revisions": m}, END, f"after {m} revisions the loop must stop, approved or not"),
        ({"approved": False, "revisions": m + 1}, END, "past the limit the loop must stop"),
    ]


def check_route(fn: Callable[[dict[str, Any]], Any], max_revisions: int = 2) -> Feedback:
    """Check a revision-loop route on sample states: approved → END, else "writer" until the limit.

    Use it as ``nb09.check_route(route_after_editor, max_revisions=MAX_REVISIONS)``.
    """
    if not callable(fn):
        raise TypeError(
            f"check_route expects your route function, e.g. `check_route(route_after_editor)`, not {type(fn).__name__}."
        )
    if not isinstance(max_revisions, int) or isinstance(max_revisions, bool) or max_revisions < 2:
        raise ValueError(f"max_revisions must be an int ≥ 2 (the limit of the loop), not {max_revisions!r}.")
    if inspect.iscoroutinefunction(fn):
        return failed(
            "your route is an async function: it returns a coroutine, not the name of the next node.",
            "a route only reads the state, it waits for nothing: define it with plain `def`.",
        )
    for state, expected, why in _samples(max_revisions):
        try:
            got = fn(dict(state))
        except Exception as exc:  # the learner's code: report, do not crash the check
            return failed(
                f"for the state {state} your route raised {type(exc).__name__}: {exc}",
                "read the state with state.get('approved') and state.get('revisions', 0).",
            )
        if got == expected:
            continue
        hints = [f"{why}, so the route should return {expected!r}."]
        if got is None:
            hints.append("every path through the function needs a `return`: END or 'writer'.")
        elif got == "editor":
            hints.append("the loop goes back to the writer: the editor then reads the new draft.")
        elif expected == END and got == "writer":
            hints.append(
                "compare with `<`: state['revisions'] < max_revisions means another revision is allowed."
                if state.get("revisions", 0) >= max_revisions
                else "check `approved` first: an approved draft is never sent back."
            )
        elif got not in (END, "writer"):
            hints.append(f"return END (from langgraph.graph import END) or 'writer', not {got!r}.")
        return failed(f"for the state {state} your route returned {got!r}, not {expected!r}.", *hints)
    return passed(
        f"all {len(_samples(max_revisions))} sample states route as expected: the loop ends after at most "
        f"{max_revisions} revisions."
    )


# -- exercise: the Researcher's bounds -------------------------------------------------------------
def research_ratio(rec: Recorder, capacity: int | None, retry: Any = None) -> tuple[float, float]:
    """(research wall time, critical path) of a recorded run, in seconds.

    The research phase runs from the first start to the last end of the ``researcher`` node
    runs (recorded with ``rec.callback()``); the critical path comes from the tool spans.
    """
    runs = [s for s in rec.spans if s.group == "researcher"]
    if not runs:
        raise ValueError(
            "the recording has no 'researcher' node run: run the graph with "
            "config={'callbacks': [rec.callback()]} inside `with rec:`."
        )
    wall = max(s.end for s in runs) - min(s.start for s in runs)
    return wall, critical_path(rec, capacity=capacity, retry=retry).length


def _bound(name: str, value: object) -> str | None:
    """A message when `value` is not a usable bound, else None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{name} is {value!r}: set it to a whole number."
    if value < 1:
        return f"{name} is {value}: a bound of less than 1 lets nothing run."
    return None


async def check_bounds(
    run: Callable[[int, int], Awaitable[tuple[Recorder, ServiceStats]]],
    *,
    http_slots: Any,
    max_concurrency: Any,
    capacity: int,
    tasks: int,
    limit: float = 1.3,
) -> Feedback:
    """Run the Researcher with your bounds; pass with no 429 and research ≤ `limit` × its critical path.

    `run(http_slots, max_concurrency)` runs the agency once and returns its recording
    (tool spans and ``rec.callback()`` node runs) and the service's stats. `capacity` is
    the service's, `tasks` the number of research tasks the planner fans out.
    """
    if not callable(run):
        raise TypeError(f"run must be the notebook's async function run(http_slots, max_concurrency), not {run!r}.")
    for name, value in (("capacity", capacity), ("tasks", tasks)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int ≥ 1, not {value!r}.")
    if not isinstance(limit, (int, float)) or limit < 1:
        raise ValueError(f"limit is a ratio ≥ 1 (research time / critical path), not {limit!r}.")
    for name, value in (("http_slots", http_slots), ("max_concurrency", max_concurrency)):
        problem = _bound(name, value)
        if problem:
            return failed(
                problem,
                f"http_slots sizes the semaphore around the requests to the service (it holds {capacity} at once).",
                f"max_concurrency caps the tasks of a graph step ({tasks} research tasks here), kb searches included.",
            )
    try:
        rec, stats = await run(http_slots, max_concurrency)
    except Exception as exc:  # the run itself failed: say how, and what in the bounds causes it
        hints = []
        if type(exc).__name__ == "NodeTimeoutError":
            hints.append(
                "a node's timeout clock runs while its task waits for an HTTP slot: with few slots, "
                "the last requests queue for longer than the timeout. Give the service all its slots."
            )
        return failed(f"the run failed with {type(exc).__name__}: {exc}", *hints)
    if not isinstance(rec, Recorder) or not isinstance(stats, ServiceStats):
        raise TypeError("run(...) must return (Recorder, ServiceStats): the recording and service.stats().")
    if stats.rejected:
        return failed(
            f"{stats.rejected} request(s) rejected with 429: up to {stats.peak_in_flight} were in flight, "
            f"the service holds {capacity}.",
            f"http_slots = {http_slots} lets more requests in flight than the service's capacity: lower it.",
            "max_concurrency does not protect the service by itself if it is larger than the capacity.",
        )
    wall, cp = research_ratio(rec, capacity)
    ratio = wall / cp
    if ratio > limit:
        hints = []
        if max_concurrency < tasks:
            hints.append(
                f"max_concurrency = {max_concurrency} holds back tasks that need no service slot (the kb "
                f"searches): it counts all {tasks} tasks, so keep it at or above that."
            )
        if http_slots < capacity:
            hints.append(
                f"http_slots = {http_slots} leaves {capacity - http_slots} of the service's {capacity} slots "
                "idle while requests wait: use all of them."
            )
        if not hints:
            hints.append("the machine may be busy: run the check again.")
        return failed(
            f"no 429s, but the research took {wall:.2f} s, {ratio:.2f}x its critical path ({cp:.2f} s): "
            "requests waited although the service had room.",
            *hints,
        )
    return passed(
        f"no 429s, and the research took {wall:.2f} s, {ratio:.2f}x its critical path ({cp:.2f} s): "
        "the only waits left are the service's."
    )
