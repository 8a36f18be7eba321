"""Gantt charts: one bar per span, one lane per task, failures marked, clear errors on bad input."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from agency_lib import Recorder, compare, gantt


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def recording(name: str = "concurrent", failed: bool = False) -> Recorder:
    """Three tool calls on three lanes, made with Recorder.add so the times are exact."""
    rec = Recorder(name)
    rec.add("web: q", 10.0, 10.25, group="web")
    rec.add("kb: q", 10.0, 10.18, group="kb")
    rec.add("api: q", 10.0, 10.30, group="api", outcome="error" if failed else "ok", error="boom" if failed else "")
    return rec


def bars(ax) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def lanes(ax) -> list[str]:
    return [t.get_text() for t in ax.get_yticklabels()]


def test_the_backend_is_agg():
    assert matplotlib.get_backend().lower() == "agg"


def test_gantt_returns_a_figure_with_one_bar_per_span_and_one_lane_per_task():
    fig = gantt(recording())
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(bars(ax)) == 3
    assert lanes(ax) == ["api: q", "kb: q", "web: q"]  # top to bottom in start order, ties by name


def test_gantt_puts_spans_with_the_same_lane_on_one_row():
    rec = Recorder()
    rec.add("first call", 0.0, 0.1, lane="worker 1")
    rec.add("second call", 0.1, 0.2, lane="worker 1")
    rec.add("third call", 0.0, 0.2, lane="worker 2")
    (ax,) = gantt(rec).axes
    assert len(bars(ax)) == 3
    assert lanes(ax) == ["worker 1", "worker 2"]


def test_gantt_title_names_the_run_and_its_measured_wall_time_and_speedup():
    (ax,) = gantt(recording()).axes
    assert ax.get_title() == "concurrent: wall 0.30 s, speed-up 2.4x"  # (0.25 + 0.18 + 0.30) / 0.30


def test_gantt_takes_a_title_and_a_plain_list_of_spans():
    (ax,) = gantt(recording().spans, title="my run").axes
    assert ax.get_title().startswith("my run: wall 0.30 s")


def test_gantt_hatches_failed_spans():
    (ax,) = gantt(recording(failed=True)).axes
    hatched = [b for b in bars(ax) if b.get_hatch()]
    assert len(hatched) == 1
    assert hatched[0].get_width() == pytest.approx(0.30)  # the api call, the one that failed


def test_gantt_draws_cancelled_spans_pale():
    rec = recording()
    rec.add("web: cancelled", 10.0, 10.1, group="web", outcome="cancelled")
    (ax,) = gantt(rec).axes
    assert sorted(b.get_alpha() or 1.0 for b in bars(ax)) == [0.35, 1.0, 1.0, 1.0]


def test_gantt_of_an_empty_recording_says_it_is_empty():
    with pytest.raises(ValueError, match="recording 'idle' is empty: nothing to draw"):
        gantt(Recorder("idle"))
    with pytest.raises(ValueError, match="the span list is empty"):
        gantt([])


@pytest.mark.parametrize("wrong", [None, 42, "spans", [1, 2]])
def test_gantt_of_something_else_is_a_type_error(wrong):
    with pytest.raises(TypeError, match="recording must be a Recorder or a list of Span"):
        gantt(wrong)


def test_compare_draws_both_runs_on_one_shared_time_axis():
    serial = Recorder("serial")
    serial.add("web: q", 0.0, 0.25, group="web")
    serial.add("kb: q", 0.25, 0.43, group="kb")
    fig = compare(serial, recording())
    top, bottom = fig.axes
    assert (len(bars(top)), len(bars(bottom))) == (2, 3)
    assert len(lanes(top)) == 2 and len(lanes(bottom)) == 3
    assert top.get_shared_x_axes().joined(top, bottom)
    assert top.get_title() == "serial: wall 0.43 s, speed-up 1.0x"
    assert bottom.get_title().startswith("concurrent: wall 0.30 s")


def test_compare_takes_titles():
    fig = compare(recording("a"), recording("b"), titles=("before", "after"))
    assert [ax.get_title().split(":")[0] for ax in fig.axes] == ["before", "after"]


@pytest.mark.parametrize("titles", [("only one",), ["a", "b"], ("a", 2), "ab"])
def test_compare_titles_must_be_a_pair_of_strings(titles):
    with pytest.raises(ValueError, match="titles must be a pair of strings"):
        compare(recording(), recording(), titles=titles)


def test_compare_says_which_recording_is_empty_or_wrong():
    with pytest.raises(ValueError, match="second 'idle' is empty"):
        compare(recording(), Recorder("idle"))
    with pytest.raises(TypeError, match="first must be a Recorder or a list of Span"):
        compare({"not": "spans"}, recording())
