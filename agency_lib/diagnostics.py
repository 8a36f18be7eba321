"""Make asyncio's quiet reports visible in the cell that caused them.

* `report_unawaited()`: print the "coroutine ... was never awaited" warnings of a block
  when the block ends, instead of whenever the garbage collector gets to them (in a
  notebook that can be many cells later, under an innocent cell).
* `report_loop_errors()`: print what the event loop reports during a block (a task's
  exception that nobody retrieved, a pending task destroyed), which a notebook
  otherwise never shows.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from types import TracebackType
from typing import Any

__all__ = ["report_unawaited", "report_loop_errors"]


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
