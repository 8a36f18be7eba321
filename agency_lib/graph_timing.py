"""A LangChain callback handler that records every LangGraph node run into a Recorder.

LangGraph tags each node run with ``graph:step:N`` and names it after the node; the
handler keeps those runs and ignores the runnables inside them. Several runs of one
node in one step (parallel `Send` tasks) get lanes ``node [1]``, ``node [2]``, ….
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

if TYPE_CHECKING:
    from .timing import Recorder

__all__ = ["NodeTimer"]


class NodeTimer(BaseCallbackHandler):
    """Records node runs: name = node, group = node, outcome from how the run ended."""

    run_inline = True  # called on the node's own thread, so the times are exact

    def __init__(self, recorder: Recorder, lane: Callable[[str, Any], str] | None = None) -> None:
        self.recorder = recorder
        self.lane = lane
        self._open: dict[UUID, tuple[str, str, float]] = {}
        self._per_step: dict[tuple[UUID | None, str, str], int] = {}
        self._lock = threading.Lock()

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        start = time.perf_counter()
        node = (metadata or {}).get("langgraph_node")
        if not node or kwargs.get("name") != node or not any(t.startswith("graph:step:") for t in tags or ()):
            return
        if node.startswith("__"):  # LangGraph's own __start__ node (it runs when START has conditional edges)
            return
        if self.lane is not None:
            lane = str(self.lane(node, inputs))
        else:
            # Counted per graph run (the parent run), so a callback reused for a second run starts again at 1.
            key = (kwargs.get("parent_run_id"), node, str((metadata or {}).get("langgraph_step", "")))
            with self._lock:
                k = self._per_step.get(key, 0) + 1
                self._per_step[key] = k
            lane = node if k == 1 else f"{node} [{k}]"
        with self._lock:
            self._open[run_id] = (node, lane, start)

    def _close(self, run_id: UUID, error: BaseException | None) -> None:
        end = time.perf_counter()
        with self._lock:
            opened = self._open.pop(run_id, None)
        if opened is None:
            return
        node, lane, start = opened
        if error is None:
            outcome, text = "ok", ""
        elif type(error).__name__ == "CancelledError" or (type(error).__name__ == "GraphInterrupt" and not str(error)):
            # LangGraph cancels a failed step's siblings with a message (a sentinel object), so
            # a CancelledError counts as cancelled whatever its text.
            outcome, text = "cancelled", type(error).__name__
        else:
            outcome, text = "error", f"{type(error).__name__}: {error}"
        self.recorder.add(
            node if lane == node else lane,
            start,
            end,
            group=node,
            lane=lane,
            outcome=outcome,
            error=text,
            key=run_id,  # the tools' spans inside this run name it as their parent
        )

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id, error)
