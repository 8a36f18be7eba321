"""Gantt charts of recorded spans: one run, or two runs on one time axis.

Each lane is a task. Colour says its group: a source (web, kb, api) or a node; the
lanes of a `Send` fan-out named after a source (``"web: async python"``) take that
source's colour. A span too short to see as a bar (a Planner that takes ~0 s) is drawn
as a diamond. Failed spans are hatched with a red edge, cancelled ones are pale with a
dashed edge. The dashed red line is the wall time: where the last span ends.

The title gives the wall time and the *overlap*, busy ÷ wall: how many spans were in
flight on average. Overlap is not a speed-up: a speed-up divides the wall time of a
serial run by the wall time of a concurrent run of the same work, both measured.
Both come from the recording, never from configured delays.

``marks={"step 2 ends": t}`` draws a named vertical line at time ``t`` (seconds on the
chart's axis), e.g. where a super-step ends on a branch chart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from .timing import Recorder, Span, _leaves
from .tools import SOURCES

__all__ = ["gantt", "compare"]

# Fixed colours for the course's groups, so "web" is the same blue in every notebook.
GROUP_COLOURS = {
    "web": "#4C72B0",
    "kb": "#55A868",
    "api": "#DD8452",
    "planner": "#8172B3",
    "researcher": "#937860",
    "writer": "#DA8BC3",
    "editor": "#8C8C8C",
}
_PALETTE = ["#CCB974", "#64B5CD", "#C44E52", "#4C72B0", "#55A868", "#DD8452", "#8172B3", "#937860"]
WALL_COLOUR = "#C0392B"
MARK_COLOUR = "#2C3E50"
EMPTY_COLOUR = "#9A9A9A"
DPI = 100  # at a 9-inch width: 900 px, sharp enough, PNGs of a few tens of kB
# A span shorter than this share of the time axis is drawn as a diamond (a bar would be under ~2 px).
_INSTANT = 0.004

Marks = Mapping[str, float]


def _spans_of(recording: Recorder | Sequence[Span], arg: str = "recording") -> list[Span]:
    if isinstance(recording, Recorder):
        spans = recording.spans
        label = repr(recording.name)
    elif isinstance(recording, Sequence) and all(isinstance(s, Span) for s in recording):
        spans = list(recording)
        label = "the span list"
    else:
        raise TypeError(f"{arg} must be a Recorder or a list of Span, not {type(recording).__name__}.")
    if not spans:
        raise ValueError(
            f"{arg} {label} is empty: nothing to draw. Run the work inside the recorder "
            "(rec.span, @rec.track or rec.callback()) before plotting."
        )
    return spans


def _check_marks(marks: object, arg: str = "marks") -> dict[str, float]:
    if marks is None:
        return {}
    example = f'e.g. {arg}={{"step 2 ends": 0.31}}'
    if not isinstance(marks, Mapping):
        raise TypeError(f"{arg} must be a dict of name -> time in seconds, {example}, not {type(marks).__name__}.")
    checked: dict[str, float] = {}
    for name, t in marks.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"every name in {arg} must be a non-empty string, {example}; got {name!r}.")
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
            raise ValueError(
                f"{arg}[{name!r}] must be a time in seconds on the chart's axis (a finite number, "
                f"such as a span's .end), not {t!r}."
            )
        checked[name] = float(t)
    return checked


def _key(span: Span) -> tuple[str, str]:
    """(legend label, colour name) of a span.

    A `Send` task is a node run whose lane names its source (``"web: async python"``, from a
    ``lane=`` function of ``rec.callback``): it takes the source's colour, so a fan-out over
    queries × sources reads by source. A node run with tools inside it (a container) keeps
    its node's colour: it is drawn under its requests, and the tools carry the source colours.
    """
    source = span.lane.split(":", 1)[0].strip() if ":" in span.lane else ""
    if span.leaf and source in SOURCES and source != span.group:
        return f"{span.group}: {source}", source
    return span.group, span.group


def _colour(key: tuple[str, str], seen: dict[str, str]) -> str:
    label, base = key
    if label not in seen:
        # an unknown group takes a palette colour no group on the chart uses yet (not web's blue)
        free = [c for c in _PALETTE if c not in seen.values() and c not in GROUP_COLOURS.values()]
        seen[label] = GROUP_COLOURS.get(base) or (free[0] if free else _PALETTE[len(seen) % len(_PALETTE)])
    return seen[label]


def _lanes(spans: list[Span]) -> list[str]:
    """Lanes top to bottom, in the order their first span starts (the spans are in start order)."""
    return list(dict.fromkeys(s.lane for s in spans))


def _merge(first: list[str], second: list[str]) -> list[str]:
    """One lane order for two panels: the first panel's lanes, each lane only in the second
    placed right after the lane it follows there."""
    merged = list(first)
    after: str | None = None
    for lane in second:
        if lane not in merged:
            merged.insert(merged.index(after) + 1 if after is not None else 0, lane)
        after = lane
    return merged


def _title(title: str, spans: list[Span]) -> str:
    wall = max(s.end for s in spans) - min(s.start for s in spans)
    if wall <= 0:
        return f"{title}: wall {wall:.2f} s"
    overlap = sum(s.duration for s in _leaves(spans)) / wall
    text = f"wall {wall:.2f} s, overlap {overlap:.1f}×: on average {overlap:.1f} tasks in flight"
    return f"{title}:\n{text}" if len(title) + len(text) > 85 else f"{title}: {text}"


def _draw(
    ax: plt.Axes,
    spans: list[Span],
    title: str,
    colours: dict[str, str],
    lanes: list[str],
    axis_length: float,
    marks: dict[str, float],
) -> None:
    row = {lane: i for i, lane in enumerate(lanes)}
    instant = _INSTANT * axis_length
    for s in spans:
        y = row[s.lane]
        colour = _colour(_key(s), colours)
        style: dict[str, object] = {"color": colour, "edgecolor": "black", "linewidth": 0.6}
        if s.outcome == "error":
            style.update(hatch="///", edgecolor="#C0392B", linewidth=1.6)
        elif s.outcome == "cancelled":
            style.update(alpha=0.35, linestyle="--", edgecolor="#7F7F7F", linewidth=1.2)
        ax.barh(y, max(s.duration, 1e-4), left=s.start, height=0.6, **style)
        if s.duration < instant:  # too short for a bar: a diamond where it ran
            edge = "#C0392B" if s.outcome == "error" else "black"
            ax.plot(s.start, y, "D", color=colour, markeredgecolor=edge, markersize=6, zorder=3, clip_on=False)
        if s.outcome != "ok":
            ax.text(s.end, y, " ✗" if s.outcome == "error" else " ⊘", va="center", fontsize=9, color="#C0392B")
    present = {s.lane for s in spans}
    by_axes = blended_transform_factory(ax.transAxes, ax.transData)
    for lane in lanes:
        if lane not in present:  # a lane of the other panel: nothing of it ran here
            ax.text(0.01, row[lane], "none in this run", transform=by_axes, va="center", fontsize=7.5,
                    color=EMPTY_COLOUR, style="italic")  # fmt: skip
    end = max(s.end for s in spans)
    ax.axvline(end, color=WALL_COLOUR, linestyle="--", linewidth=1.4, zorder=4)
    by_data = blended_transform_factory(ax.transData, ax.transAxes)
    level, last = 0, None  # marks close together get their labels one under the other
    for name, t in sorted(marks.items(), key=lambda m: m[1]):
        ax.axvline(t, color=MARK_COLOUR, linestyle="-.", linewidth=1.2, zorder=4)
        level = (level + 1) % 3 if last is not None and t - last < 0.2 * axis_length else 0
        last = t
        side = "right" if t > 0.8 * axis_length else "left"  # near the end: the label goes left of its line
        ax.text(t, 0.98 - 0.09 * level, f" {name} ", transform=by_data, va="top", ha=side, fontsize=7.5,
                color=MARK_COLOUR, zorder=5, bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})  # fmt: skip
    ax.set_yticks(range(len(lanes)), lanes, fontsize=8)
    for label in ax.get_yticklabels():
        if label.get_text() not in present:
            label.set_color(EMPTY_COLOUR)
    ax.set_ylim(len(lanes) - 0.5, -0.5)  # the first lane on top
    ax.set_xlabel("time since first start (s)")
    ax.set_title(_title(title, spans), fontsize=9.5)
    ax.grid(axis="x", alpha=0.3)


def _legend(fig: Figure, colours: dict[str, str], spans: list[Span], axis_length: float) -> None:
    handles: list[Patch | Line2D] = [Patch(facecolor=c, edgecolor="black", label=g) for g, c in colours.items()]
    if any(s.duration < _INSTANT * axis_length for s in spans):
        handles.append(
            Line2D([], [], marker="D", linestyle="", color="white", markeredgecolor="black", label="≈ 0 s (no bar)")
        )
    if any(s.outcome == "error" for s in spans):
        handles.append(Patch(facecolor="white", edgecolor="#C0392B", hatch="///", label="failed"))
    if any(s.outcome == "cancelled" for s in spans):
        handles.append(Patch(facecolor="white", edgecolor="#7F7F7F", linestyle="--", label="cancelled"))
    handles.append(Line2D([], [], color=WALL_COLOUR, linestyle="--", linewidth=1.4, label="wall time"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)


def _height(n_lanes: int) -> float:
    return min(8.0, 1.2 + 0.28 * n_lanes)


def _length(spans: list[Span], marks: dict[str, float]) -> float:
    """How long the time axis is: from 0 (or the first start) to the last end or mark."""
    times = [s.end for s in spans] + list(marks.values())
    return max(times) - min(0.0, *(s.start for s in spans), *marks.values())


def gantt(
    recording: Recorder | Sequence[Span],
    title: str | None = None,
    width: float = 9.0,
    marks: Marks | None = None,
) -> Figure:
    """Draw one recording as a Gantt chart and return the Figure.

    ``marks={"step 2 ends": t}`` draws a named vertical line at each time ``t`` (seconds on
    the chart's axis, e.g. ``max(s.end for s in rec.spans if s.group in ("web", "kb", "api"))``).
    In a notebook, end the cell with ``plt.show()`` (or assign the figure) so no object repr
    is printed.
    """
    spans = _spans_of(recording)
    checked = _check_marks(marks)
    if title is None:
        title = recording.name if isinstance(recording, Recorder) else "run"
    lanes = _lanes(spans)
    length = _length(spans, checked)
    fig, ax = plt.subplots(figsize=(width, _height(len(lanes))), dpi=DPI, layout="constrained")
    colours: dict[str, str] = {}
    _draw(ax, spans, title, colours, lanes, length, checked)
    _legend(fig, colours, spans, length)
    return fig


def compare(
    first: Recorder | Sequence[Span],
    second: Recorder | Sequence[Span],
    titles: tuple[str, str] | None = None,
    width: float = 9.0,
    marks: Marks | tuple[Marks | None, Marks | None] | None = None,
) -> Figure:
    """Draw two recordings one above the other on one shared time axis (e.g. serial vs concurrent).

    Both panels list the same lanes in the same order; a lane that ran in one run only is
    present, empty and greyed, in the other. ``marks`` is one dict for both panels, or a
    pair ``(marks_of_first, marks_of_second)``; see `gantt`.
    """
    a = _spans_of(first, "first")
    b = _spans_of(second, "second")
    if titles is None:
        titles = tuple(
            r.name if isinstance(r, Recorder) else name for r, name in ((first, "first"), (second, "second"))
        )  # type: ignore[assignment]
    if not (isinstance(titles, tuple) and len(titles) == 2 and all(isinstance(t, str) for t in titles)):
        raise ValueError("titles must be a pair of strings, e.g. ('serial', 'concurrent').")
    if isinstance(marks, tuple):
        if len(marks) != 2:
            raise ValueError("marks must be one dict for both panels, or a pair (marks of first, marks of second).")
        marks_a, marks_b = _check_marks(marks[0], "marks[0]"), _check_marks(marks[1], "marks[1]")
    else:
        marks_a = marks_b = _check_marks(marks)
    lanes = _merge(_lanes(a), _lanes(b))
    length = max(_length(a, marks_a), _length(b, marks_b))
    fig, (ax1, ax2) = plt.subplots(
        2,
        1,
        sharex=True,
        figsize=(width, 2 * _height(len(lanes)) - 0.6),
        dpi=DPI,
        layout="constrained",
    )
    colours: dict[str, str] = {}
    _draw(ax1, a, titles[0], colours, lanes, length, marks_a)
    _draw(ax2, b, titles[1], colours, lanes, length, marks_b)
    ax1.set_xlabel("")
    _legend(fig, colours, a + b, length)
    return fig
