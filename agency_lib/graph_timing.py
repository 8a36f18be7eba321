"""A LangChain callback handler that records every LangGraph node run into a Recorder.

LangGraph tags each node run with ``graph:step:N`` and names it after the node; the
handler records those runs. The runs inside a node (a chain, a tool, a model call, a
subgraph) are not drawn, but the recorder learns that they belong to the node, so the
tools' spans inside them make the node a container, not counted twice as busy time.
Several runs of one node in one step (parallel `Send` tasks) get lanes ``node``,
``node [2]``, ``node [3]``, ….
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any, Protocol
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from .nesting import _enclosing

__all__ = ["NodeTimer"]


class Recording(Protocol):
    """What NodeTimer needs of a recorder (`timing.Recorder` is one)."""

    def add(self, name: str, start: float, end: float, **kwargs: Any) -> None: ...

    def _nest(self, run: Hashable, parent: Hashable) -> None: ...


class NodeTimer(BaseCallbackHandler):
    """Records node runs: name = node, group = node, outcome from how the run ended."""

    run_inline = True  # called on the node's own thread, so the times are exact

    def __init__(self, recorder: Recording, lane: Callable[[str, Any], str] | None = None) -> None:
        self.recorder = recorder
        self.lane = lane
        self._open: dict[UUID, tuple[str, str, float, UUID | None]] = {}  # node run -> (node, lane, start, parent)
        # Runs of each (node, step) so far, per graph run; a graph run's counts go when it ends.
        self._per_run: dict[UUID | None, Counter[tuple[str, str]]] = {}
        self._lock = threading.Lock()

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        start = time.perf_counter()
        node = (metadata or {}).get("langgraph_node")
        is_node_run = node and kwargs.get("name") == node and any(t.startswith("graph:step:") for t in tags or ())
        # LangGraph's own __start__ node runs when START has conditional edges: not drawn.
        if not is_node_run or node.startswith("__"):
            self._inner(run_id, parent_run_id)
            return
        if self.lane is not None:
            lane = str(self.lane(node, inputs))
        else:
            # Counted per graph run (the parent run), so a callback reused for a second run starts again at 1.
            step = str((metadata or {}).get("langgraph_step", ""))
            with self._lock:
                counts = self._per_run.setdefault(parent_run_id, Counter())
                counts[node, step] += 1
                k = counts[node, step]
            lane = node if k == 1 else f"{node} [{k}]"
        with self._lock:
            self._open[run_id] = (node, lane, start, parent_run_id)

    def _inner(self, run_id: UUID, parent_run_id: UUID | None) -> None:
        """A run that is not a node run: tell the recorder which run (or span) it is inside."""
        # Called in the context the run starts from: a span open there may sit between the run and its parent.
        outer = _enclosing()
        if outer is None:
            outer = parent_run_id
        if outer is not None:
            self.recorder._nest(run_id, outer)

    # The other kinds of run a node may make: a span opened inside one is inside the node.
    def on_tool_start(
        self, serialized: Any, input_str: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._inner(run_id, parent_run_id)

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._inner(run_id, parent_run_id)

    def on_llm_start(
        self, serialized: Any, prompts: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._inner(run_id, parent_run_id)

    def on_retriever_start(
        self, serialized: Any, query: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._inner(run_id, parent_run_id)

    def _close(self, run_id: UUID, error: BaseException | None) -> None:
        end = time.perf_counter()
        with self._lock:
            self._per_run.pop(run_id, None)  # when a graph run ends, its lane counts are done with
            opened = self._open.pop(run_id, None)
        if opened is None:
            return
        node, lane, start, parent = opened
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
            parent=parent,  # a node of a subgraph is inside the subgraph's node
        )

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id, error)
