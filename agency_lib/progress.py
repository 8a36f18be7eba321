"""Watch an agency run, then report on it: progress lines, a timing table, the critical path.

* `PhaseProgress` turns ``app.astream(..., stream_mode=["updates", "custom"])`` (and
  ``"messages"``, the chat model's tokens) into one printed line per finished phase
  (planner, research, writer, …). Concurrent tasks of one
  phase are summed up in one line (counts per status, in a fixed order), so the output
  reads the same whatever order the tasks finished in.
* `timing_table` sums recorded spans per node or per source: count, failed, total, mean, max.
* `critical_path` finds, in a recording, the longest chain of waits that had to happen one
  after another: a retry after the attempt that failed (plus its back-off), and a request
  that could only start when a full service freed a slot.
* `lower_bound` is what no schedule of the same requests can beat: the longest retry chain
  (attempts plus the back-offs slept, recorded by `recorded_sleep`) or the service's busy
  time divided by its capacity, whichever is longer.
* `slot_lanes` redraws a recording's requests as the service's slots: one lane per request
  in flight, so a chart shows how full the service was, and any request over its capacity.
* `outline` draws a critical path on a Gantt chart: a thick outline round each of its bars.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from .timing import Recorder, Span, active_recorder

__all__ = [
    "PhaseProgress",
    "timing_table",
    "CriticalPath",
    "critical_path",
    "LowerBound",
    "lower_bound",
    "recorded_sleep",
    "slot_lanes",
    "outline",
    "HTTP_GROUPS",
    "BACKOFF_GROUP",
]

#: The groups (sources) whose requests go to the local search service and share its capacity.
HTTP_GROUPS = ("web", "api")
#: The order of statuses in a phase line; any other status follows, alphabetically.
STATUS_ORDER = ("ok", "gap", "failed", "retried")
#: The group of the back-off waits that `recorded_sleep` records.
BACKOFF_GROUP = "back-off"


class PhaseProgress:
    """Print one line per finished phase of a streamed run, and lines during a long phase.

    Nodes report with the custom stream: ``get_stream_writer()({"phase": "research",
    "status": "ok"})`` (``status`` is any word; ``text`` replaces the summary of a phase
    that ran once). Feed every ``(mode, chunk)`` pair of
    ``astream(..., stream_mode=["updates", "custom"])`` to `feed`, and call `close` at the end
    (or use ``with PhaseProgress() as progress:``). With ``"messages"`` in the stream modes
    too, the chat model's tokens are counted per node (``metadata["langgraph_node"]``) and
    the phase's line ends with ``N tokens streamed``; their text is kept in `tokens`.

    A phase's line is printed when the next phase starts (or at `close`), stamped with the
    time of the phase's last event since the progress began. With ``every=n``, a phase with
    many tasks also prints ``… n tasks done`` after every n finished tasks, while it runs.

    On a resume LangGraph replays the writes saved before the stop on the ``updates`` stream
    and marks them ``{"__metadata__": {"cached": True}}``: they are counted as
    ``from the checkpoint``, not as work done now.
    """

    def __init__(self, print_fn: Callable[[str], None] = print, width: int = 10, every: int | None = None) -> None:
        if not callable(print_fn):
            raise TypeError(f"print_fn must be a function that takes a line, like print, not {print_fn!r}.")
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"width is the column width of the phase names (an int ≥ 1), not {width!r}.")
        if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
            raise ValueError(
                f"every is how many finished tasks make a progress line (an int ≥ 1, or None), not {every!r}."
            )
        self._print = print_fn
        self._width = width
        self._every = every
        self._t0 = time.perf_counter()
        self.lines: list[str] = []
        self._phase: str | None = None
        self._last = 0.0
        self._statuses: Counter[str] = Counter()
        self._texts: list[str] = []
        self._updates: list[dict[str, Any]] = []
        self._cached = 0
        self._streamed = 0
        self.tokens: dict[str, list[str]] = {}  # per node: the text of each streamed token, in order

    # -- feeding -------------------------------------------------------------------------
    def feed(self, mode: str, chunk: Any) -> None:
        """Take one item of ``astream(..., stream_mode=["updates", "custom", "messages"])``."""
        if mode == "messages":
            if not (isinstance(chunk, tuple) and len(chunk) == 2 and isinstance(chunk[1], dict)):
                raise ValueError(f"a 'messages' item is a pair (message chunk, metadata); got {chunk!r}.")
            message, metadata = chunk
            node = metadata.get("langgraph_node")
            if not isinstance(node, str):
                raise ValueError(f"a 'messages' item's metadata names its node in 'langgraph_node'; got {metadata!r}.")
            text = getattr(message, "content", "")
            if isinstance(text, str) and text:
                self._event(node)
                self._streamed += 1
                self.tokens.setdefault(node, []).append(text)
        elif mode == "custom":
            if not isinstance(chunk, dict) or not isinstance(chunk.get("phase"), str):
                raise ValueError(
                    "a progress event is a dict with a 'phase' (the node's name), e.g. "
                    f"{{'phase': 'research', 'status': 'ok'}}; got {chunk!r}."
                )
            self._event(chunk["phase"])
            if "status" in chunk:
                self._statuses[str(chunk["status"])] += 1
            if "text" in chunk:
                self._texts.append(str(chunk["text"]))
        elif mode == "updates":
            if not isinstance(chunk, dict):
                raise ValueError(f"an 'updates' item is a dict {{node: update}}; got {chunk!r}.")
            meta = chunk.get("__metadata__")
            cached = isinstance(meta, dict) and bool(meta.get("cached"))
            for node, update in chunk.items():
                if node.startswith("__"):  # __metadata__, __interrupt__: not a phase
                    continue
                self._event(node)
                if cached:
                    self._cached += 1
                else:
                    self._updates.append(update if isinstance(update, dict) else {})
                    self._tick()
        else:
            raise ValueError(
                f"stream mode {mode!r} is not one PhaseProgress reads; stream with "
                "stream_mode=['updates', 'custom'] (and 'messages') and feed it every (mode, chunk) pair."
            )

    def close(self) -> None:
        """Print the line of the last phase. Safe to call twice."""
        self._flush()

    def __enter__(self) -> PhaseProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inside --------------------------------------------------------------------------
    def _event(self, phase: str) -> None:
        if phase != self._phase:
            self._flush()
            self._phase = phase
        self._last = time.perf_counter() - self._t0

    def _tick(self) -> None:
        done = len(self._updates)
        if self._every is not None and done % self._every == 0:
            self._emit(f"[{self._last:5.2f} s] {self._phase:<{self._width}} … {done} tasks done")

    def _summary(self) -> str:
        text = self._counts()
        if self._streamed:
            text += f", {self._streamed} token{'s' if self._streamed != 1 else ''} streamed"
        return text

    def _counts(self) -> str:
        reported = sum(n for status, n in self._statuses.items() if status != "retried")
        tasks = max(len(self._updates), reported) + self._cached
        if tasks <= 1 and self._texts:
            return "; ".join(self._texts)
        if self._statuses or self._cached:
            order = [s for s in STATUS_ORDER if s in self._statuses]
            order += sorted(set(self._statuses) - set(STATUS_ORDER))
            parts = [f"{self._statuses[s]} {s}" for s in order]
            if self._cached:
                parts.append(f"{self._cached} from the checkpoint")
            return f"{tasks} tasks: " + ", ".join(parts)
        sizes: Counter[str] = Counter()
        for update in self._updates:
            for key, value in update.items():
                sizes[key] += len(value) if isinstance(value, list) else 1
        return ", ".join(f"{key} {n}" for key, n in sorted(sizes.items())) or "done"

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        self._print(line)

    def _flush(self) -> None:
        if self._phase is None:
            return
        self._emit(f"[{self._last:5.2f} s] {self._phase:<{self._width}} {self._summary()}")
        self._phase = None
        self._statuses.clear()
        self._texts.clear()
        self._updates.clear()
        self._cached = 0
        self._streamed = 0


# -- after the run: tables ---------------------------------------------------------------------
def _spans(recording: Recorder | Sequence[Span]) -> list[Span]:
    if isinstance(recording, Recorder):
        return recording.spans
    if isinstance(recording, Sequence) and all(isinstance(s, Span) for s in recording):
        return list(recording)
    raise TypeError(f"expected a Recorder or a list of Span, not {type(recording).__name__}.")


def timing_table(
    recording: Recorder | Sequence[Span],
    groups: Iterable[str],
    by: Literal["group", "lane"] = "group",
    title: str = "group",
) -> str:
    """A text table of the spans of `groups`, one row per group (or per lane), in that order.

    Columns: runs, failed (error or cancelled), total, mean and max seconds.

    >>> rec = Recorder()
    >>> rec.add("web: a", 0.0, 0.25, group="web")
    >>> print(timing_table(rec, ["web"], title="source"))
    source   runs  failed    total     mean      max
    web         1       0   0.25 s   0.25 s   0.25 s
    """
    if by not in ("group", "lane"):
        raise ValueError(f"by must be 'group' or 'lane', not {by!r}.")
    if isinstance(groups, str):
        raise TypeError(f"groups is a list of names, e.g. ['web', 'kb', 'api'], not the string {groups!r}.")
    wanted = list(groups)
    spans = [s for s in _spans(recording) if s.group in wanted]
    if not spans:
        raise ValueError(f"no span of the groups {wanted} in the recording: did the run record them?")
    rows: dict[str, list[Span]] = {}
    for group in wanted:
        for s in spans:
            if s.group == group:
                rows.setdefault(s.group if by == "group" else s.lane, []).append(s)
    width = max(len(title), *(len(k) for k in rows)) + 2
    lines = [f"{title:<{width}}{'runs':>5}{'failed':>8}{'total':>9}{'mean':>9}{'max':>9}"]
    for key, group_spans in rows.items():
        durations = [s.duration for s in group_spans]
        bad = sum(s.outcome != "ok" for s in group_spans)
        total = sum(durations)
        lines.append(
            f"{key:<{width}}{len(durations):>5}{bad:>8}{total:>7.2f} s{total / len(durations):>7.2f} s"
            f"{max(durations):>7.2f} s"
        )
    return "\n".join(lines)


# -- after the run: the critical path -----------------------------------------------------------
@dataclass(frozen=True)
class CriticalPath:
    """The longest chain of unavoidable waits: its spans in order and its length in seconds."""

    spans: tuple[Span, ...]
    backoff: float  # the retry policy's back-off waits counted on the chain
    length: float  # sum of the chain's span durations plus `backoff`

    def __str__(self) -> str:
        steps = " → ".join(
            f"{s.name} ({s.duration:.2f} s{', failed' if s.outcome != 'ok' else ''})" for s in self.spans
        )
        extra = f" + back-off {self.backoff:.2f} s" if self.backoff else ""
        return f"critical path {self.length:.2f} s{extra}: {steps}"


def _backoff(retry: Any, nth: int) -> float:
    """The wait a RetryPolicy-like object makes before its nth retry (1-based); jitter not counted."""
    if retry is None:
        return 0.0
    return min(retry.max_interval, retry.initial_interval * retry.backoff_factor ** (nth - 1))


def critical_path(
    recording: Recorder | Sequence[Span],
    *,
    capacity: int | None,
    groups: Sequence[str] = ("web", "kb", "api"),
    http_groups: Sequence[str] = HTTP_GROUPS,
    retry: Any = None,
    slack: float = 0.05,
) -> CriticalPath:
    """The longest chain of waits among the tool spans of `groups` that no scheduler could shorten.

    A span B is chained after a span A (B could not start before A ended) when:

    * B is the next attempt of the same call (same name) as a failed A: a retry, which
      also waits its back-off: the one it slept, if the recording has it (spans of group
      ``"back-off"`` of that name between A and B, see `recorded_sleep`), else the back-off
      of `retry` (a ``RetryPolicy``; None counts no back-off);
    * B is a request to the service (a group in `http_groups`), A is the request that ended
      last before B started, at most `slack` seconds before, and the service was full across
      that handover (A and the requests in flight between A's end and B's start, those that
      took other slots freed meanwhile included, make `capacity`): B needed A's slot. The
      slack absorbs the event loop's delay in handing a slot over, larger on a busy machine.
      With ``capacity=None`` the service never fills up.

    The length of a chain is the sum of its spans' durations (plus back-offs); any gap
    between them is overhead, not a wait, so the critical path is never longer than the run.
    """
    if capacity is not None and (not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1):
        raise ValueError(
            f"capacity is the service's limit of requests in flight (an int ≥ 1) or None, not {capacity!r}."
        )
    if retry is not None and not all(hasattr(retry, a) for a in ("initial_interval", "backoff_factor", "max_interval")):
        raise TypeError(f"retry must be a langgraph RetryPolicy (or None), not {type(retry).__name__}.")
    spans = sorted((s for s in _spans(recording) if s.group in groups), key=lambda s: (s.start, s.end))
    if not spans:
        raise ValueError(
            f"no tool span of the groups {list(groups)} in the recording: record the run with `with rec:`."
        )
    http = [s for s in spans if s.group in http_groups]
    slept: dict[str, list[Span]] = {}
    for s in _spans(recording):
        if s.group == BACKOFF_GROUP:
            slept.setdefault(s.name, []).append(s)

    if not isinstance(slack, (int, float)) or isinstance(slack, bool) or slack < 0:
        raise ValueError(f"slack is seconds ≥ 0 (a slot's handover delay), not {slack!r}.")

    def took_slot_of(a: Span, b: Span) -> bool:
        if capacity is None or b.start - a.end > slack:
            return False
        return sum(s is not b and s.start <= b.start and s.end >= a.end for s in http) >= capacity

    best: dict[int, float] = {}
    prev: dict[int, tuple[int | None, float]] = {}
    attempts: Counter[str] = Counter()
    last_attempt: dict[str, int] = {}
    for i, b in enumerate(spans):
        options: list[tuple[float, int | None, float]] = [(0.0, None, 0.0)]
        if b.name in last_attempt:  # a retry: after the failed attempt, and its back-off
            a = last_attempt[b.name]
            gap = max(0.0, b.start - spans[a].end)
            recorded = [z.duration for z in slept.get(b.name, []) if spans[a].end <= z.start and z.end <= b.start]
            wait = min(sum(recorded) if recorded else _backoff(retry, attempts[b.name]), gap)
            options.append((best[a] + wait, a, wait))
        if b.group in http_groups:  # waited for a slot of a full service?
            ended = [j for j in range(i) if spans[j].group in http_groups and spans[j].end <= b.start]
            if ended:
                a = max(ended, key=lambda j: spans[j].end)
                if took_slot_of(spans[a], b):
                    options.append((best[a], a, 0.0))
        base, pred, wait = max(options, key=lambda o: o[0])
        best[i] = base + b.duration
        prev[i] = (pred, wait)
        attempts[b.name] += 1
        last_attempt[b.name] = i
    end = max(best, key=lambda i: best[i])
    chain: list[Span] = []
    backoff = 0.0
    node: int | None = end
    while node is not None:
        chain.append(spans[node])
        node, wait = prev[node]
        backoff += wait
    return CriticalPath(tuple(reversed(chain)), backoff, best[end])


# -- after the run: the lower bound --------------------------------------------------------------
async def recorded_sleep(delay: float, name: str) -> None:
    """``await asyncio.sleep(delay)``, recorded as a span of group ``"back-off"`` named `name`.

    Name it like the call it waits to retry (``"web: async python"``), so `lower_bound`
    counts the wait on that call's retry chain and a Gantt chart draws it in the call's lane.
    """
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise ValueError(f"delay is a number of seconds ≥ 0, not {delay!r}.")
    rec = active_recorder()
    if rec is None:
        await asyncio.sleep(delay)
        return
    async with rec.span(name, group=BACKOFF_GROUP):
        await asyncio.sleep(delay)


@dataclass(frozen=True)
class LowerBound:
    """What no schedule of a run's requests could beat, from its recording (seconds)."""

    chain: float  # the longest retry chain: one call's attempts plus the back-offs it slept
    chain_name: str  # the call of that chain
    service: float  # the service's busy time (every request, failed ones too) ÷ its capacity
    capacity: int

    @property
    def length(self) -> float:
        """max(chain, service): the lower bound itself."""
        return max(self.chain, self.service)

    def __str__(self) -> str:
        return (
            f"lower bound {self.length:.2f} s = max(longest retry chain {self.chain:.2f} s "
            f"[{self.chain_name}], Σ service time ÷ {self.capacity} slots {self.service:.2f} s)"
        )


def lower_bound(
    recording: Recorder | Sequence[Span],
    *,
    capacity: int,
    groups: Sequence[str] = ("web", "kb", "api"),
    http_groups: Sequence[str] = HTTP_GROUPS,
) -> LowerBound:
    """The honest lower bound of a research phase: max(longest retry chain, Σ service time ÷ capacity).

    * A call's retry chain is the sum of its attempts (tool spans of one name) and of the
      back-offs it slept (spans of group ``"back-off"`` with that name, see `recorded_sleep`):
      its attempts cannot overlap.
    * The service serves at most `capacity` requests at a time, so its requests (groups in
      `http_groups`, every attempt) need at least their total time ÷ `capacity`.
    """
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
        raise ValueError(f"capacity is the service's limit of requests in flight (an int ≥ 1), not {capacity!r}.")
    spans = _spans(recording)
    tools = [s for s in spans if s.group in groups]
    if not tools:
        raise ValueError(
            f"no tool span of the groups {list(groups)} in the recording: record the run with `with rec:`."
        )
    chains: Counter[str] = Counter()
    for s in tools:
        chains[s.name] += s.duration
    for s in spans:
        if s.group == BACKOFF_GROUP and s.name in chains:
            chains[s.name] += s.duration
    name, chain = max(chains.items(), key=lambda kv: (kv[1], kv[0]))
    busy = sum(s.duration for s in tools if s.group in http_groups)
    return LowerBound(chain=chain, chain_name=name, service=busy / capacity, capacity=capacity)


def slot_lanes(
    recording: Recorder | Sequence[Span],
    *,
    http_groups: Sequence[str] = HTTP_GROUPS,
    group: Callable[[Span], str] | None = None,
) -> list[Span]:
    """The requests of `http_groups`, one lane per slot they held: ``slot 1``, ``slot 2``, ….

    Each request goes into the lowest slot free when it started, so the number of lanes is
    the peak of requests in flight: a lane past the service's capacity shows requests over
    it. ``group(span)`` may recolour the spans (by topic, say); by default they keep theirs.
    """
    if group is not None and not callable(group):
        raise TypeError(f"group must be a function group(span) -> str, or None, not {group!r}.")
    requests = sorted((s for s in _spans(recording) if s.group in http_groups), key=lambda s: (s.start, s.end))
    free_at: list[float] = []  # per slot: when its request ends
    out: list[Span] = []
    for s in requests:
        slot = next((i for i, end in enumerate(free_at) if end <= s.start), len(free_at))
        if slot == len(free_at):
            free_at.append(s.end)
        else:
            free_at[slot] = s.end
        out.append(replace(s, lane=f"slot {slot + 1}", group=group(s) if group else s.group))
    return out


def outline(ax: Any, path: Sequence[Span], drawn: Sequence[Span], *, colour: str = "#111111") -> int:
    """Outline on a Gantt chart's axes `ax` the bars of `path` (e.g. ``critical_path(...).spans``).

    `drawn` is what the chart drew (e.g. `slot_lanes` output): a path span is found there by
    its name, start and end, and outlined in its lane. Returns how many bars were outlined.
    """
    if not hasattr(ax, "get_yticklabels"):
        raise TypeError(f"ax is a chart's axes, e.g. gantt(...).axes[0], not {type(ax).__name__}.")
    from matplotlib.patches import Rectangle

    rows = {label.get_text(): i for i, label in enumerate(ax.get_yticklabels())}
    where = {(s.name, round(s.start, 6), round(s.end, 6)): s.lane for s in drawn}
    done = 0
    for s in path:
        lane = where.get((s.name, round(s.start, 6), round(s.end, 6)))
        if lane is None or lane not in rows:
            continue
        box = Rectangle((s.start, rows[lane] - 0.42), s.duration, 0.84, fill=False, edgecolor=colour, linewidth=2.4)
        ax.add_patch(box)
        box.set_zorder(6)
        done += 1
    return done
