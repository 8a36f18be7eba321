"""Make asyncio's quiet reports visible in the cell that caused them.

* `report_unawaited()`: print the "coroutine ... was never awaited" warnings of a block
  when the block ends, instead of whenever the garbage collector gets to them (in a
  notebook that can be many cells later, under an innocent cell).
* `report_loop_errors()`: print what the event loop reports during a block (a task's
  exception that nobody retrieved, a pending task destroyed), which a notebook
  otherwise never shows.
* `report_slow_callbacks()`: turn on asyncio's debug mode for a block and print each step
  that held the event loop longer than a threshold (the "Executing <Task ...> took 0.200
  seconds" log record, which in Jupyter reaches no cell), with the task's name and where
  it paused next.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["report_unawaited", "report_loop_errors", "report_slow_callbacks", "SlowStep"]


class report_unawaited:  # noqa: N801 - used like a function: `with report_unawaited():`
    """Print the 'never awaited' warnings raised in the block, when the block ends.

    An error leaving the block still propagates; its traceback is dropped first,
    because the traceback's frames are what keep the forgotten coroutine alive.
    """

    def __enter__(self) -> report_unawaited:
        self._catcher = warnings.catch_warnings(record=True)
        self.caught = self._catcher.__enter__()
        warnings.simplefilter("always", RuntimeWarning)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> bool:
        del traceback
        while error is not None:
            error.__traceback__ = None
            error = error.__cause__ or error.__context__
        if not self.unawaited():
            gc.collect()  # a coroutine caught in a reference cycle waits for the garbage collector
        self._catcher.__exit__(None, None, None)
        for message in self.unawaited():
            print(f"RuntimeWarning: {message}")
        return False

    def unawaited(self) -> list[str]:
        """The messages of the 'never awaited' warnings caught so far."""
        return [str(w.message) for w in self.caught if "was never awaited" in str(w.message)]


class report_loop_errors:  # noqa: N801 - used like a function: `with report_loop_errors():`
    """Print what the running event loop reports inside the block (lost task errors, destroyed tasks).

    It installs an exception handler on the loop for the block's duration; that handler
    is where asyncio sends the errors that no code received.
    """

    def __enter__(self) -> report_loop_errors:
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "report_loop_errors() needs a running event loop: use it in a notebook cell "
                "(top-level await) or inside async def."
            ) from None
        self.previous = self.loop.get_exception_handler()
        self.reports: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda loop, context: self.reports.append(context))
        return self

    def __exit__(self, *exc: object) -> bool:
        self.loop.set_exception_handler(self.previous)
        for context in self.reports:
            error = context.get("exception")
            detail = f" ({type(error).__name__}: {error})" if error else ""
            print(f"event loop: {context['message']}{detail}")
        return False


# -- report_slow_callbacks ---------------------------------------------------------------------
_REPO = Path(__file__).resolve().parent.parent


def _short_path(path: str) -> str:
    """A file name fit to print: `<cell>` for a notebook cell, else relative to the repo or to sys.path."""
    if "ipykernel_" in path or path.startswith("<"):
        return "<cell>"
    resolved = Path(path)
    for root in sorted({_REPO, *(Path(p) for p in sys.path if p)}, key=lambda r: len(str(r)), reverse=True):
        try:
            return resolved.relative_to(root).as_posix()
        except ValueError:
            continue
    return resolved.name


_ASYNCIO_DIR = Path(asyncio.__file__).resolve().parent


def _await_chain(task: asyncio.Task[Any]) -> tuple[tuple[str, ...], str]:
    """The coroutines a pending task is suspended in, outermost first, and the line the innermost one waits at.

    asyncio's own coroutines (``sleep``, ``Lock.acquire``, ...) and this module's are left
    out: the line that matters is the last one in your code (or a library's).
    """
    frames = []
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break  # a Future, or an async generator's step: nothing more to see
        frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    here = Path(__file__).resolve()

    def ours(frame: Any) -> bool:
        path = Path(frame.f_code.co_filename).resolve()
        return path != here and _ASYNCIO_DIR not in path.parents

    frames = [f for f in frames if ours(f)] or frames
    if not frames:
        return (), ""
    last = frames[-1]
    return tuple(f.f_code.co_qualname for f in frames), f"{_short_path(last.f_code.co_filename)}:{last.f_lineno}"


@dataclass(frozen=True)
class SlowStep:
    """One step of the event loop that ran longer than the threshold without reaching an `await`."""

    seconds: float
    task: str | None  # the task's name, or None when the step was a plain callback
    coroutines: tuple[str, ...]  # the task's coroutines after the step, outermost first (or the callback)
    where: str  # where the task waits now (its next await); for a finished task or a callback, its definition
    finished: bool = False  # the task returned (or raised) in that very step

    def __str__(self) -> str:
        what = " > ".join(self.coroutines) or "?"
        if self.task is None:
            return f"{self.seconds:.2f} s  callback {what} ({self.where})"
        if self.finished:
            return f"{self.seconds:.2f} s  task {self.task!r}: {what} (defined at {self.where}), finished in that step"
        return f"{self.seconds:.2f} s  task {self.task!r}: {what}, next await at {self.where}"


_TASK_NAME = re.compile(r"name='((?:[^'\\]|\\.)*)'")
_CORO = re.compile(r"coro=<(\S+?)\(\) (running at|done, defined at) (.+?):(\d+)>")
_HANDLE = re.compile(r"^<\w*Handle (\S+?) at (.+?):(\d+)")


# The loop's private attribute that holds the handle it is running (set in debug mode, there since
# Python 3.4 but not an API: uvloop's loop, for one, has no such attribute). Through it the report
# reaches the task object, and so its whole await chain; without it, only the log record's text.
_CURRENT_HANDLE = "_current_handle"


def _slow_step(record: logging.LogRecord, loop: asyncio.AbstractEventLoop) -> SlowStep | None:
    """The SlowStep in an asyncio 'Executing %s took %.3f seconds' record, or None for another record.

    Never raises: whatever the loop or the record looks like, the step is read as well as it can be.
    """
    if record.msg != "Executing %s took %.3f seconds" or not isinstance(record.args, tuple) or len(record.args) != 2:
        return None
    try:
        text, seconds = str(record.args[0]), float(record.args[1])
    except (TypeError, ValueError):
        return None
    try:
        step = _step_from_task(seconds, loop)
    except Exception:  # an unexpected handle or coroutine: fall back to the record's text
        step = None
    return step or _step_from_text(text, seconds)


def _step_from_task(seconds: float, loop: asyncio.AbstractEventLoop) -> SlowStep | None:
    """The step read from the task the loop has just run, or None if the loop does not say which."""
    # While the record is logged the loop still holds the handle it ran: from it we reach the task
    # itself, and see where it waits now.
    handle = getattr(loop, _CURRENT_HANDLE, None)
    task = getattr(getattr(handle, "_callback", None), "__self__", None)
    if not isinstance(task, asyncio.Task):
        return None
    if not task.done():
        chain, where = _await_chain(task)
        if chain:
            return SlowStep(seconds, task.get_name(), chain, where)
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    defined = f"{_short_path(code.co_filename)}:{code.co_firstlineno}" if code else ""
    return SlowStep(seconds, task.get_name(), (getattr(coro, "__qualname__", "?"),), defined, task.done())


def _step_from_text(text: str, seconds: float) -> SlowStep:
    """The step read from the record's text alone: the task's name and its outermost coroutine."""
    name, coro_match = _TASK_NAME.search(text), _CORO.search(text)
    if text.startswith("<Task") and name and coro_match:
        finished = coro_match.group(2) != "running at"
        where = f"{_short_path(coro_match.group(3))}:{coro_match.group(4)}"
        return SlowStep(seconds, name.group(1), (coro_match.group(1),), where, finished)
    handle_match = _HANDLE.search(text)
    if handle_match:
        where = f"{_short_path(handle_match.group(2))}:{handle_match.group(3)}"
        return SlowStep(seconds, None, (handle_match.group(1),), where)
    return SlowStep(seconds, None, (text.split(" ")[0].lstrip("<") or "?",), "")


class _Collect(logging.Handler):
    """Keep the asyncio log records emitted on one thread (the loop's), turning slow steps into SlowSteps."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(logging.WARNING)
        self.loop = loop
        self.thread = threading.get_ident()
        self.steps: list[SlowStep] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return  # another thread's event loop (the search service's, say): not ours to report
        self.records.append(record)
        try:
            step = _slow_step(record, self.loop)
        except Exception as exc:  # never let a report break the loop that it reports on
            step = SlowStep(0.0, None, (f"(could not read this record: {type(exc).__name__}: {exc})",), "")
        if step is not None:
            self.steps.append(step)


class report_slow_callbacks:  # noqa: N801 - used like a function: `with report_slow_callbacks():`
    """Turn on debug mode for the running loop and print each step that held it `threshold` seconds or more.

    In debug mode asyncio times every step of every task (the code between two `await`s)
    and logs "Executing <Task ...> took 0.200 seconds" for a slow one. That record goes to
    the ``asyncio`` logger, which in a notebook reaches no cell. Inside this block the
    record comes here instead, and when the block ends each slow step is printed (and kept
    in ``.steps``): how long it held the loop, the task's name, the coroutines it is in,
    outermost first, and the line of its next `await`, just after the blocking code.

    To show the task's whole await chain it reads the loop's private ``_current_handle``
    (the handle that has just run; asyncio's own loops have it since Python 3.4). On a
    loop without it, the report falls back to the log record's text (the task's name and
    outermost coroutine) and says so.

    On exit, also on error, the loop's debug mode, its ``slow_callback_duration`` and the
    ``asyncio`` logger's level, handlers and propagation are put back as they were.

    The loop decides whether to time a step before the step starts, and logs it when it
    ends, at its next `await`. So with ``with``, the block's own code before its first
    `await` and after its last one is not timed (the other tasks' steps all are); with
    ``async with`` it is, because entering and leaving the block each take an `await`.
    """

    def __init__(self, threshold: float = 0.1) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 60:
            raise ValueError(
                f"threshold is the seconds a step may hold the loop before it is reported (e.g. 0.1), not {threshold!r}."
            )
        self.threshold = float(threshold)
        self.steps: list[SlowStep] = []
        self.records: list[logging.LogRecord] = []
        self.sees_tasks = True

    def __enter__(self) -> report_slow_callbacks:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "report_slow_callbacks() needs a running event loop: use it in a notebook cell "
                "(top-level await) or inside async def."
            ) from None
        self.loop = loop
        self._logger = logging.getLogger("asyncio")
        self._saved = (loop.get_debug(), loop.slow_callback_duration, self._logger.level, self._logger.propagate)
        self._handler = _Collect(loop)
        self.sees_tasks = hasattr(loop, _CURRENT_HANDLE)  # else only the log record's text (see _CURRENT_HANDLE)
        self._logger.addHandler(self._handler)
        if self._logger.getEffectiveLevel() > logging.WARNING:
            self._logger.setLevel(logging.WARNING)
        self._logger.propagate = False  # the records come here, not to stderr or the root logger as well
        loop.slow_callback_duration = self.threshold
        loop.set_debug(True)
        return self

    def __exit__(self, *exc: object) -> bool:
        debug, duration, level, propagate = self._saved
        self.loop.set_debug(debug)
        self.loop.slow_callback_duration = duration
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(level)
        self._logger.propagate = propagate
        self.steps, self.records = self._handler.steps, self._handler.records
        print(self.summary())
        return False

    async def __aenter__(self) -> report_slow_callbacks:
        self.__enter__()
        try:
            await asyncio.sleep(0)  # start the block in a step of its own, timed now that debug mode is on
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> bool:
        try:
            await asyncio.sleep(0)  # end the block's last step, so that a slow one is logged while we listen
        finally:
            self.__exit__(*exc)
        return False

    def summary(self) -> str:
        """What the block's debug mode saw: one line per slow step, sorted by task name (``.steps`` keeps the order)."""
        if not self.steps:
            return f"debug mode: no step held the loop for {self.threshold:g} s or more"
        n = len(self.steps)
        lines = [f"debug mode: {n} step{'s' if n > 1 else ''} held the loop for {self.threshold:g} s or more"]
        ordered = sorted(self.steps, key=lambda s: (s.task or "", s.coroutines, s.where))
        lines += [f"  {step}" for step in ordered]
        if not self.sees_tasks:
            lines.append(
                f"  (this event loop has no `loop.{_CURRENT_HANDLE}`, the private attribute that leads to the task: "
                "each step shows only what the log record says, the task's outermost coroutine)"
            )
        return "\n".join(lines)
