"""What a span or a LangChain run starting here is nested in: shared by `timing` and `graph_timing`.

A `Recorder` span marks itself open in a context variable; a LangGraph node run (and every chain,
tool or model call inside it) is LangChain's current run. Both modules read them from here, so
neither needs the other's internals (`timing` uses `graph_timing`, never the other way round).
"""

from __future__ import annotations

import contextvars
from collections.abc import Hashable

__all__: list[str] = []  # internal to agency_lib

# The innermost span open in this context (tasks made inside a span inherit it), and the
# LangChain run that was current when it opened.
_OPEN: contextvars.ContextVar[tuple[Hashable, Hashable | None] | None] = contextvars.ContextVar(
    "agency_open_span", default=None
)


def _current_run() -> Hashable | None:
    """The id of the innermost LangChain run of this context (a node run, or a chain, tool or
    model call inside one), or None outside any run.

    LangChain keeps the config of the innermost run in a context variable; its callback
    manager names that run as ``parent_run_id``. Outside a run the variable holds nothing,
    or a config whose callbacks are a plain list of handlers: no run then.
    """
    try:
        from langchain_core.runnables.config import var_child_runnable_config
    except ImportError:  # pragma: no cover - langchain-core is a dependency
        return None
    config = var_child_runnable_config.get()
    callbacks = config.get("callbacks") if isinstance(config, dict) else None
    return getattr(callbacks, "parent_run_id", None)  # a callback manager has one; a list or None has not


def _enclosing() -> Hashable | None:
    """What a span (or a LangChain run) starting here is nested in: the innermost open span or run.

    A span opened within the current run is inside that run; a run that is not the one current
    when the span opened started later, inside the span. `NodeTimer` tells the recorder which
    node run (or span) each run inside a node belongs to.
    """
    run = _current_run()
    opened = _OPEN.get()
    if opened is not None and (run is None or run == opened[1]):
        return opened[0]
    return run
