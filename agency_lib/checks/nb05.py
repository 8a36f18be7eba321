"""Self-checks for notebook 05 (debugging async code): a stuck task, a blocking helper.

* ``await nb05.check_stuck(pipeline, stuck_task, waits_in)`` runs ``pipeline()`` until it
  hangs, looks at every task it left pending and where each one waits, and says whether
  ``stuck_task`` (a task's name) is the one that waits on something no task will provide,
  and whether ``waits_in`` is the call it waits in;
* ``await nb05.check_blocking_helper(helper, pipeline)`` checks that ``pipeline`` calls
  ``helper``, then calls ``helper(findings)`` next to a heartbeat and says whether it is
  the call that holds the event loop.

To tell a stuck task from one that only waits for other tasks, ``check_stuck`` reads the
task's private ``_fut_waiter`` (what its repr shows as ``wait_for=...``); on a Python
without it, it goes by the names in the task's await chain alone.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from . import Feedback, failed, passed
from .nb04 import _short, longest_stall

__all__ = ["check_stuck", "check_blocking_helper", "pending_tasks"]

HANG_AFTER = 0.6  # seconds: a pipeline not done by then counts as hung (the notebook's searches take 0.1-0.2 s)

# Frames a task is in when it only waits for other tasks: it is a victim of the hang, not its cause.
_WAITS_FOR_TASKS = ("TaskGroup.__aexit__", "gather", "wait", "wait_for", "shield", "as_completed")


def _chain(task: asyncio.Task[Any]) -> list[str]:
    """The qualnames of the coroutines a task is suspended in, outermost first."""
    names: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        names.append(frame.f_code.co_qualname)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return names


def _waits_for_tasks(task: asyncio.Task[Any], names: list[str]) -> bool:
    # What the task waits on right now: private (what the task's repr shows as wait_for=...), so read
    # softly; without it, the names in the chain decide.
    awaited = getattr(task, "_fut_waiter", None)
    if isinstance(awaited, asyncio.Task) or type(awaited).__name__ == "_GatheringFuture":
        return True
    return any(n in _WAITS_FOR_TASKS for n in names)


async def pending_tasks(
    pipeline: Callable[[], Any], hang_after: float | None = None
) -> list[tuple[str, list[str], bool]] | None:
    """Run ``pipeline()``; if it is not done after `hang_after` s, what it left pending, else None.

    Each pending task (the run itself included, as the first one) comes as (name, the
    coroutines it is suspended in, outermost first, whether it only waits for other
    tasks). Everything the run started is cancelled and awaited before this returns, so
    nothing outlives the check; the run's result or error, if it finished, is dropped.
    """
    before = asyncio.all_tasks()
    run = asyncio.create_task(pipeline(), name="the pipeline")
    try:
        done, _ = await asyncio.wait({run}, timeout=HANG_AFTER if hang_after is None else hang_after)
        if done:
            return None
        others = [t for t in asyncio.all_tasks() - before - {run, asyncio.current_task()} if not t.done()]
        found = []
        for task in [run, *sorted(others, key=lambda t: t.get_name())]:
            names = _chain(task)
            found.append((task.get_name(), names, _waits_for_tasks(task, names)))
        return found
    finally:
        started = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
        for t in started:
            t.cancel()
        await asyncio.gather(*started, return_exceptions=True)
        if run.done() and not run.cancelled():
            run.exception()  # retrieved: no "exception was never retrieved" report later


def _normal(call: str) -> str:
    return call.strip().removesuffix("()").replace(".<locals>.", ".").lower()


def _short_names(call: str) -> set[str]:
    full = _normal(call)
    return {full, full.rsplit(".", 1)[-1]}


async def check_stuck(pipeline: Callable[[], Any], stuck_task: Any, waits_in: Any) -> Feedback:
    """Check the answer to "which task is stuck, and in which call does it wait?" against a real hung run."""
    if not callable(pipeline) or not inspect.iscoroutinefunction(pipeline):
        raise TypeError(
            f"pass the async function that hangs, without parentheses (e.g. research_pipeline), not {pipeline!r:.60}."
        )
    for value, what in ((stuck_task, "stuck_task"), (waits_in, "waits_in")):
        if not isinstance(value, str) or not value.strip() or value.strip() == "...":
            shown = "still ..." if value is ... or value == "..." else repr(value)
            return failed(
                f"{what} is {shown}: write your answer there as a string, then run the check again.",
                "run the pipeline as a task under a timeout, then print the name and await chain of "
                "every task still pending (asyncio.all_tasks(), await_chain(task)).",
            )
    try:
        found = await pending_tasks(pipeline)
    except Exception as exc:
        return failed(f"running the pipeline raised {_short(exc)}", "run the cell that defines it again, then check.")
    if found is None:
        return failed(
            f"{pipeline.__name__}() finished within {HANG_AFTER:g} s: it does not hang, so no task is stuck.",
            "pass the planted pipeline, the one that hangs, not a fixed one.",
        )
    name = stuck_task.strip()
    mine = [(chain, victim) for n, chain, victim in found[1:] if n == name]
    if not mine:
        return failed(
            f"no task named {name!r} was pending inside the pipeline when it hung ({len(found) - 1} tasks were).",
            "copy the name exactly as task.get_name() prints it; the pipeline's tasks are the ones created "
            "after it started (the kernel has tasks of its own, and so has the run you wrapped it in).",
        )
    chain, victim = mine[0]
    if victim:
        return failed(
            f"task {name!r} is pending, but only because it waits for other tasks (its chain: "
            f"{' > '.join(chain)}): it is a victim of the hang, not its cause.",
            "find the task whose chain ends in a call that waits for something else: an event, a queue, a lock.",
        )
    innermost = chain[-1] if chain else ""
    answer = _normal(waits_in)
    if chain and answer in _short_names(chain[0]) and answer not in _short_names(innermost):
        return failed(
            f"{name!r} is the stuck task, and {waits_in!r} is its own coroutine: in which call inside it does it wait?",
            "read its await chain to the end: the last entry is what it waits in.",
        )
    if answer not in _short_names(innermost):
        return failed(
            f"{name!r} is the stuck task, but it does not wait in {waits_in!r}.",
            "read its await chain to the end: the last entry is what it waits in.",
        )
    victims = sum(v for _, _, v in found)
    stuck = len(found) - victims
    others = f"{victims} other pending task{' only waits' if victims == 1 else 's only wait'}"
    return passed(
        f"task {name!r} is stuck in {innermost}, waiting for something no task will ever provide; "
        f"the {others} for other tasks (the pipeline's own task included)."
        + (f" {stuck} tasks are stuck like it." if stuck > 1 else "")
    )


_SAMPLE = [
    {"source": "web", "query": "async python", "title": "  A practical  guide to async python ", "rank": 2},
    {"source": "web", "query": "async python", "title": "async python, explained", "rank": 1},
    {"source": "kb", "query": "async python", "title": "Event loops", "score": -3.2, "id": "kb-001"},
]


def _names_called(code: Any) -> set[str]:
    """The global and attribute names a function's code uses, nested functions included."""
    names = set(code.co_names) | set(code.co_freevars)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _names_called(const)
    return names


async def check_blocking_helper(helper: Any, pipeline: Callable[..., Any] | None = None) -> Feedback:
    """Check that ``helper`` (a function that takes a list of findings) is the one that holds the event loop.

    With ``pipeline`` (the slow async function), the helper must also be one that it calls.
    """
    if pipeline is not None and not hasattr(pipeline, "__code__"):
        raise TypeError(f"pipeline is the slow async function itself (e.g. research_brief), not {pipeline!r:.60}.")
    if helper is None:
        return failed(
            "blocking_helper is None: set it to the helper function you suspect (the function itself, "
            "no parentheses), then run the check again.",
            "the report names the task and where its slow step ended; the blocking call is in the code "
            "that task ran since its previous await.",
        )
    if not callable(helper):
        raise TypeError(f"pass the helper function itself, without parentheses, not {type(helper).__name__}.")
    name = getattr(helper, "__name__", "that function")
    if inspect.iscoroutinefunction(helper):
        return failed(
            f"{name} is an `async def`: the report names it because the slow step ran in it, but the "
            "blocking call is a plain function it calls between two awaits.",
            "look at the lines between the previous await and the end of the slow step: which call there blocks?",
        )
    if pipeline is not None and name not in _names_called(pipeline.__code__):
        return failed(
            f"{pipeline.__name__} never calls {name}: whatever {name} does, it is not what slows this pipeline down.",
            f"pick one of the helpers that {pipeline.__name__}'s tasks call after their last await.",
        )
    findings = [dict(f) for f in _SAMPLE]

    async def call() -> Any:
        return helper(findings)

    try:
        _, stall, wall = await longest_stall(call())
    except Exception as exc:
        return failed(
            f"{name}(findings) raised {_short(exc)}",
            "pass one of the helpers the Researcher calls on its findings (they take a list of findings).",
        )
    if stall < 0.05 or stall < 0.5 * wall:
        return failed(
            f"{name}(findings) kept the loop free (longest stall {stall:.2f} s): it is not the blocking call.",
            "the report's slow step covers all the code since the task's previous await: try the other calls there.",
        )
    return passed(
        f"{name} is the blocking helper: one call held the event loop {stall:.2f} s. Fix it with "
        f"`await asyncio.to_thread({name}, findings)`, or give it an async client."
    )
