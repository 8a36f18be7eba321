"""Record when each task really started and ended, across concurrent tasks and threads.

A `Recorder` collects `Span`s. Feed it three ways:

* ``async with rec.span("web: async io", group="web"): ...`` around any awaited work;
* ``@rec.track(group="web")`` on an async or plain function;
* ``config={"callbacks": [rec.callback()]}`` on a LangGraph run: every node run is
  recorded without touching node code.

While a recorder is *active* (``with rec:``), the course's tools record their own
I/O into it too. Times are ``time.perf_counter()`` seconds relative to the recorder's
first span, so charts start at 0.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .nesting import _OPEN, _current_run, _enclosing

if TYPE_CHECKING:
    from .graph_timing import NodeTimer

__all__ = ["Span", "Summary", "Recorder", "active_recorder"]

Outcome = Literal["ok", "error", "cancelled"]
F = TypeVar("F", bound=Callable[..., Any])

_ACTIVE: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar("agency_active_recorder", default=None)
_TOKENS: contextvars.ContextVar[tuple[contextvars.Token[Recorder | None], ...]] = contextvars.ContextVar(
    "agency_active_recorder_tokens", default=()
)
_span_ids = itertools.count(1)


def active_recorder() -> Recorder | None:
    """The recorder made active with ``with rec:`` in this context, or None."""
    return _ACTIVE.get()


@dataclass(frozen=True)
class Span:
    """One task's run: when it started and ended (seconds), and how it ended."""

    name: str
    lane: str
    group: str
    start: float
    end: float
    outcome: Outcome = "ok"
    error: str = ""
    #: False when another span ran inside this one (a node waiting on its tools): not counted as busy twice.
    leaf: bool = field(default=True, repr=False, compare=False)

    @property
    def duration(self) -> float:
        """end - start, in seconds."""
        return self.end - self.start


@dataclass(frozen=True)
class Summary:
    """Wall time, busy time (sum of span durations) and what follows from them.

    ``overlap`` is busy / wall: how many spans were in flight on average. It is not a
    speed-up: a speed-up divides a serial run's wall time by a concurrent run's wall time,
    for the same work, both measured.
    """

    spans: int
    wall: float
    busy: float  # the sum of the innermost spans' durations (containers are not counted twice)
    longest: float
    peak_concurrency: int
    errors: int
    cancelled: int

    @property
    def overlap(self) -> float:
        """busy / wall: how many spans were in flight on average (1.0 when nothing overlapped)."""
        return self.busy / self.wall if self.wall > 0 else 1.0

    @property
    def speedup(self) -> float:
        """The old name of `overlap`, kept so older code runs: busy / wall is not a speed-up."""
        return self.overlap

    def __str__(self) -> str:
        text = (
            f"{self.spans} spans, wall {self.wall:.2f} s, busy {self.busy:.2f} s, "
            f"overlap {self.overlap:.1f}× (busy ÷ wall), peak concurrency {self.peak_concurrency}"
        )
        if self.errors or self.cancelled:
            text += f", {self.errors} failed, {self.cancelled} cancelled"
        return text


def _outcome_of(exc: BaseException | None) -> tuple[Outcome, str]:
    if exc is None:
        return "ok", ""
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled", "CancelledError"
    return "error", f"{type(exc).__name__}: {exc}"


def _leaves(spans: list[Span]) -> list[Span]:
    """The spans that contain no other span: a node waiting on its tools is not counted twice.

    Nesting is recorded (a span opened inside another span, or inside a node run), not guessed
    from times: concurrent siblings often lie inside one another's time (a 0.18 s kb call
    started with a 0.25 s web call) and still both count.
    """
    return [s for s in spans if s.leaf]


class Recorder:
    """Collects spans from any task or thread. Cheap: a few microseconds a span.

    >>> rec = Recorder()
    >>> with rec.span_sync("step", group="demo"):
    ...     pass
    >>> len(rec.spans)
    1
    """

    def __init__(self, name: str = "run") -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("Recorder(name=...) must be a non-empty string, e.g. Recorder('serial').")
        self.name = name
        self._lock = threading.Lock()
        self._raw: list[tuple[str, str, str, float, float, Outcome, str, Hashable | None, Hashable | None]] = []
        self._t0: float | None = None
        # A LangChain run (a chain, tool or model call) -> the run it counts as inside: filled by NodeTimer.
        self._inside: dict[Hashable, Hashable] = {}

    # -- feeding -----------------------------------------------------------------
    def add(
        self,
        name: str,
        start: float,
        end: float,
        *,
        group: str = "",
        lane: str | None = None,
        outcome: Outcome = "ok",
        error: str = "",
        key: Hashable | None = None,
        parent: Hashable | None = None,
    ) -> None:
        """Add a span measured elsewhere; start and end are ``time.perf_counter()`` values.

        ``key`` names this span and ``parent`` the span it ran inside (optional): a span that
        is some span's parent is a container, not counted in the busy time.
        """
        if not isinstance(name, str) or not name:
            raise ValueError("span name must be a non-empty string, e.g. 'web: async io'.")
        if end < start:
            raise ValueError(f"span {name!r} ends ({end}) before it starts ({start}).")
        if outcome not in ("ok", "error", "cancelled"):
            raise ValueError(f"outcome must be 'ok', 'error' or 'cancelled', not {outcome!r}.")
        with self._lock:
            if self._t0 is None or start < self._t0:
                self._t0 = start
            parent = self._inside.get(parent, parent)  # a span inside a chain inside a node is inside the node
            self._raw.append((name, lane or name, group or name, start, end, outcome, error, key, parent))

    def _nest(self, run: Hashable, parent: Hashable) -> None:
        """Note that LangChain `run` ran inside `parent` (a node run, or a run inside one): a span
        opened inside `run` then counts as inside the node run. Called by `NodeTimer`."""
        with self._lock:
            self._inside[run] = self._inside.get(parent, parent)

    @asynccontextmanager
    async def span(self, name: str, *, group: str = "", lane: str | None = None) -> AsyncIterator[None]:
        """Record the awaited body as one span; a failure or cancellation is recorded, then re-raised."""
        self._check_name(name)
        key, parent = next(_span_ids), _enclosing()
        token = _OPEN.set((key, _current_run()))
        start = time.perf_counter()
        exc: BaseException | None = None
        try:
            yield
        except BaseException as e:
            exc = e
            raise
        finally:
            end = time.perf_counter()
            _OPEN.reset(token)
            outcome, error = _outcome_of(exc)
            self.add(name, start, end, group=group, lane=lane, outcome=outcome, error=error, key=key, parent=parent)

    @contextmanager
    def span_sync(self, name: str, *, group: str = "", lane: str | None = None) -> Iterator[None]:
        """The same as `span`, for plain (blocking) code."""
        self._check_name(name)
        key, parent = next(_span_ids), _enclosing()
        token = _OPEN.set((key, _current_run()))
        start = time.perf_counter()
        exc: BaseException | None = None
        try:
            yield
        except BaseException as e:
            exc = e
            raise
        finally:
            end = time.perf_counter()
            _OPEN.reset(token)
            outcome, error = _outcome_of(exc)
            self.add(name, start, end, group=group, lane=lane, outcome=outcome, error=error, key=key, parent=parent)

    def track(self, name: str | None = None, *, group: str = "") -> Callable[[F], F]:
        """Decorator: record every call of an async or plain function as a span."""

        def decorate(fn: F) -> F:
            label = name or fn.__name__
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    async with self.span(label, group=group):
                        return await fn(*args, **kwargs)

                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self.span_sync(label, group=group):
                    return fn(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        if callable(name):  # used bare: @rec.track
            fn, name = name, None
            return decorate(fn)  # type: ignore[return-value]
        return decorate

    def callback(self, lane: Callable[[str, Any], str] | None = None) -> NodeTimer:
        """A LangChain callback handler that records every LangGraph node run.

        Pass it as ``config={"callbacks": [rec.callback()]}``. ``lane(node, inputs)``
        may name each run's lane (for example from a `Send` payload).
        """
        if lane is not None and not callable(lane):
            raise TypeError(
                f"lane must be a function lane(node, inputs) -> str, e.g. "
                f"lambda node, task: f\"{{node}} {{task['query']}}\", not {lane!r}."
            )
        from .graph_timing import NodeTimer

        return NodeTimer(self, lane=lane)

    # -- making it active --------------------------------------------------------
    def __enter__(self) -> Recorder:
        # The tokens live in the context, not on the recorder: concurrent tasks that each
        # run `with rec:` must each reset their own token.
        _TOKENS.set((*_TOKENS.get(), _ACTIVE.set(self)))
        return self

    def __exit__(self, *exc: object) -> None:
        *rest, token = _TOKENS.get()
        _TOKENS.set(tuple(rest))
        _ACTIVE.reset(token)

    # -- reading -----------------------------------------------------------------
    @property
    def spans(self) -> list[Span]:
        """The spans so far, in start order, with times relative to the first start."""
        with self._lock:
            raw = list(self._raw)
            t0 = self._t0 or 0.0
        raw.sort(key=lambda r: (r[3], r[0]))
        parents = {r[8] for r in raw if r[8] is not None}
        return [
            Span(n, ln, g, s - t0, e - t0, o, err, leaf=k is None or k not in parents)
            for n, ln, g, s, e, o, err, k, _ in raw
        ]

    def __len__(self) -> int:
        return len(self._raw)

    def clear(self) -> None:
        """Forget every span."""
        with self._lock:
            self._raw.clear()
            self._inside.clear()
            self._t0 = None

    def summary(self) -> Summary:
        """Wall time, busy time, overlap (busy / wall: spans in flight on average) and peak concurrency."""
        spans = self.spans
        if not spans:
            raise ValueError(
                f"recorder {self.name!r} is empty: run something inside "
                "`async with rec.span(...)`, a @rec.track function or a graph with rec.callback() first."
            )
        leaves = _leaves(spans)
        events = sorted([(s.start, 1) for s in leaves] + [(s.end, -1) for s in leaves])
        peak = running = 0
        for _, step in events:
            running += step
            peak = max(peak, running)
        return Summary(
            spans=len(spans),
            wall=max(s.end for s in spans) - min(s.start for s in spans),
            busy=sum(s.duration for s in leaves),
            longest=max(s.duration for s in leaves),
            peak_concurrency=peak,
            errors=sum(s.outcome == "error" for s in spans),
            cancelled=sum(s.outcome == "cancelled" for s in spans),
        )

    def __repr__(self) -> str:
        return f"<Recorder {self.name!r}: {len(self)} spans>"

    @staticmethod
    def _check_name(name: object) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("span name must be a non-empty string, e.g. 'web: async io'.")
