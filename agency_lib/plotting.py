"""Gantt charts of recorded spans: one run, or two runs on one time axis.

Each lane is a task; colour says its group (a source or a node); failed spans are
hatched with a red edge, cancelled ones are pale with a dashed edge. Wall time and
speed-up come from the recording, never from configured delays.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .timing import Recorder, Span, _leaves

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


def _colour(group: str, seen: dict[str, str]) -> str:
    if group not in seen:
        # an unknown group takes a palette colour no group on the chart uses yet (not web's blue)
        free = [c for c in _PALETTE if c not in seen.values() and c not in GROUP_COLOURS.values()]
        seen[group] = GROUP_COLOURS.get(group) or (free[0] if free else _PALETTE[len(seen) % len(_PALETTE)])
    return seen[group]


def _draw(ax: plt.Axes, spans: list[Span], title: str, colours: dict[str, str]) -> None:
    lanes: list[str] = []
    for s in spans:
        if s.lane not in lanes:
            lanes.append(s.lane)
    for s in spans:
        y = lanes.index(s.lane)
        style: dict[str, object] = {"color": _colour(s.group, colours), "edgecolor": "black", "linewidth": 0.6}
        if s.outcome == "error":
            style.update(hatch="///", edgecolor="#C0392B", linewidth=1.6)
        elif s.outcome == "cancelled":
            style.update(alpha=0.35, linestyle="--", edgecolor="#7F7F7F", linewidth=1.2)
        ax.barh(y, max(s.duration, 1e-4), left=s.start, height=0.6, **style)
        if s.outcome != "ok":
            ax.text(s.end, y, " ✗" if s.outcome == "error" else " ⊘", va="center", fontsize=9, color="#C0392B")
    start = min(s.start for s in spans)
    end = max(s.end for s in spans)
    busy = sum(s.duration for s in _leaves(spans))
    wall = end - start
    ax.axvline(end, color="#C0392B", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(lanes)), lanes, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("time since first start (s)")
    speed = f", speed-up {busy / wall:.1f}x" if wall > 0 else ""
    ax.set_title(f"{title}: wall {wall:.2f} s{speed}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)


def _legend(fig: Figure, colours: dict[str, str], spans: list[Span]) -> None:
    handles = [Patch(facecolor=c, edgecolor="black", label=g) for g, c in colours.items()]
    if any(s.outcome == "error" for s in spans):
        handles.append(Patch(facecolor="white", edgecolor="#C0392B", hatch="///", label="failed"))
    if any(s.outcome == "cancelled" for s in spans):
        handles.append(Patch(facecolor="white", edgecolor="#7F7F7F", linestyle="--", label="cancelled"))
    if len(handles) > 1:
        fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)


def _height(n_lanes: int) -> float:
    return min(8.0, 1.2 + 0.28 * n_lanes)


def gantt(recording: Recorder | Sequence[Span], title: str | None = None, width: float = 9.0) -> Figure:
    """Draw one recording as a Gantt chart and return the Figure.

    In a notebook, end the cell with ``plt.show()`` (or assign the figure) so no
    object repr is printed.
    """
    spans = _spans_of(recording)
    if title is None:
        title = recording.name if isinstance(recording, Recorder) else "run"
    lanes = len({s.lane for s in spans})
    fig, ax = plt.subplots(figsize=(width, _height(lanes)), dpi=80, layout="constrained")
    colours: dict[str, str] = {}
    _draw(ax, spans, title, colours)
    _legend(fig, colours, spans)
    return fig


def compare(
    first: Recorder | Sequence[Span],
    second: Recorder | Sequence[Span],
    titles: tuple[str, str] | None = None,
    width: float = 9.0,
) -> Figure:
    """Draw two recordings one above the other on one shared time axis (e.g. serial vs concurrent)."""
    a = _spans_of(first, "first")
    b = _spans_of(second, "second")
    if titles is None:
        titles = tuple(
            r.name if isinstance(r, Recorder) else name for r, name in ((first, "first"), (second, "second"))
        )  # type: ignore[assignment]
    if not (isinstance(titles, tuple) and len(titles) == 2 and all(isinstance(t, str) for t in titles)):
        raise ValueError("titles must be a pair of strings, e.g. ('serial', 'concurrent').")
    la, lb = len({s.lane for s in a}), len({s.lane for s in b})
    fig, (ax1, ax2) = plt.subplots(
        2,
        1,
        sharex=True,
        figsize=(width, _height(la) + _height(lb) - 0.6),
        dpi=80,
        layout="constrained",
        gridspec_kw={"height_ratios": [max(la, 1), max(lb, 1)]},
    )
    colours: dict[str, str] = {}
    _draw(ax1, a, titles[0], colours)
    _draw(ax2, b, titles[1], colours)
    ax1.set_xlabel("")
    _legend(fig, colours, a + b)
    return fig
