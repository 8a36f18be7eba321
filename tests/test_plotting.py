"""Gantt charts: one bar per span, one lane per task, failures marked, clear errors on bad input."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
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


def test_gantt_title_names_the_run_its_measured_wall_time_and_the_overlap_not_a_speedup():
    (ax,) = gantt(recording()).axes
    # busy / wall = (0.25 + 0.18 + 0.30) / 0.30: spans in flight on average, not a speed-up
    assert ax.get_title() == "concurrent: wall 0.30 s, overlap 2.4×: on average 2.4 tasks in flight"
    assert "speed" not in ax.get_title()


def test_a_long_title_breaks_before_the_figures():
    (ax,) = gantt(recording("ticker + 3 searches with await asyncio.sleep")).axes
    assert ax.get_title().split("\n") == [
        "ticker + 3 searches with await asyncio.sleep:",
        "wall 0.30 s, overlap 2.4×: on average 2.4 tasks in flight",
    ]


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
    assert lanes(top) == lanes(bottom) == ["api: q", "web: q", "kb: q"]  # the api lane only ran in the second
    assert top.get_shared_x_axes().joined(top, bottom)
    assert top.get_title() == "serial: wall 0.43 s, overlap 1.0×: on average 1.0 tasks in flight"
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


# -- what a learner must be able to see -------------------------------------------------------
def legend_labels(fig) -> list[str]:
    (legend,) = fig.legends
    return [t.get_text() for t in legend.get_texts()]


def diamonds(ax) -> list[Line2D]:
    return [ln for ln in ax.get_lines() if ln.get_marker() == "D"]


def vlines(ax, colour: str) -> list[float]:
    """The x of every vertical line of that colour (axvline: two equal x values)."""
    out = []
    for ln in ax.get_lines():
        xs = list(ln.get_xdata())
        if len(xs) == 2 and xs[0] == xs[1] and matplotlib.colors.same_color(ln.get_color(), colour):
            out.append(float(xs[0]))
    return out


def test_the_charts_are_drawn_at_100_dpi_or_more_at_a_small_size():
    for fig in (gantt(recording()), compare(recording("a"), recording("b"))):
        assert fig.dpi >= 100
        width, height = fig.get_size_inches()
        assert width == 9.0 and height <= 4.5


def test_a_zero_length_span_is_drawn_as_a_diamond_and_named_in_the_legend():
    rec = recording()
    rec.add("planner", 10.0, 10.0004, group="planner")  # ~0 s: a bar would be a fraction of a pixel
    fig = gantt(rec)
    (ax,) = fig.axes
    (diamond,) = diamonds(ax)
    assert list(diamond.get_xdata()) == [0.0] and list(diamond.get_ydata()) == [lanes(ax).index("planner")]
    assert matplotlib.colors.same_color(diamond.get_color(), "#8172B3")  # the planner's colour
    assert "≈ 0 s (no bar)" in legend_labels(fig)
    assert len(bars(ax)) == 4  # the bar is still there, too thin to see


def test_spans_long_enough_to_see_get_no_diamond():
    fig = gantt(recording())
    assert diamonds(fig.axes[0]) == [] and "≈ 0 s (no bar)" not in legend_labels(fig)


def test_the_wall_time_line_is_drawn_where_the_last_span_ends_and_named_in_the_legend():
    fig = gantt(recording())
    assert vlines(fig.axes[0], "#C0392B") == [pytest.approx(0.30)]
    assert legend_labels(fig)[-1] == "wall time"
    serial = Recorder("serial")
    serial.add("web: q", 0.0, 0.25, group="web")
    fig = compare(serial, recording())
    assert [vlines(ax, "#C0392B") for ax in fig.axes] == [[pytest.approx(0.25)], [pytest.approx(0.30)]]
    assert legend_labels(fig).count("wall time") == 1


def test_compare_gives_both_panels_the_same_lanes_in_the_same_order_an_absent_one_greyed():
    ticked = Recorder("await asyncio.sleep")
    for src, end in (("web", 0.25), ("kb", 0.18), ("api", 0.30)):
        ticked.add(f"{src}: q", 0.001, end, group=src)
    for i in range(1, 6):
        ticked.add("tick", 0.05 * i, 0.05 * i + 0.004, group="ticker", lane="ticker")
    blocked = Recorder("time.sleep")  # the ticker never ran, and the searches start in another order
    blocked.add("api: q", 0.0, 0.30, group="api")
    blocked.add("web: q", 0.30, 0.55, group="web")
    blocked.add("kb: q", 0.55, 0.73, group="kb")
    top, bottom = compare(ticked, blocked).axes
    assert lanes(top) == lanes(bottom) == ["api: q", "kb: q", "web: q", "ticker"]
    assert top.get_ylim() == bottom.get_ylim()
    greyed = [t.get_text() for t in bottom.get_yticklabels() if matplotlib.colors.same_color(t.get_color(), "#9A9A9A")]
    assert greyed == ["ticker"]
    assert "none in this run" in [t.get_text() for t in bottom.texts]
    assert "none in this run" not in [t.get_text() for t in top.texts]


def test_compare_puts_a_lane_of_the_second_run_only_after_the_lane_it_follows_there():
    one = Recorder("one")
    one.add("writer", 0.3, 0.35, group="writer")
    one.add("editor", 0.35, 0.4, group="editor")
    two = Recorder("two")
    two.add("writer", 0.3, 0.35, group="writer")
    two.add("writer [2]", 0.5, 0.55, group="writer", lane="writer [2]")
    two.add("editor", 0.6, 0.65, group="editor")
    fig = compare(one, two)
    assert [lanes(ax) for ax in fig.axes] == [["writer", "writer [2]", "editor"]] * 2


def test_send_lanes_named_after_a_source_take_the_source_colour():
    rec = Recorder("Send")
    rec.add("planner", 0.0, 0.001, group="planner")
    for q in ("q1", "q2"):
        for src, took in (("web", 0.2), ("kb", 0.18), ("api", 0.15)):
            rec.add(f"{src}: {q}", 0.002, 0.002 + took, group="search_one", lane=f"{src}: {q}")
    rec.add("writer", 0.21, 0.26, group="writer")
    fig = gantt(rec)
    (ax,) = fig.axes
    colour_of = {lane: None for lane in lanes(ax)}
    for bar in bars(ax):
        colour_of[lanes(ax)[round(bar.get_y() + bar.get_height() / 2)]] = bar.get_facecolor()
    for lane, colour in colour_of.items():
        source = lane.split(":")[0]
        if source in ("web", "kb", "api"):
            assert matplotlib.colors.same_color(colour, {"web": "#4C72B0", "kb": "#55A868", "api": "#DD8452"}[source])
    assert legend_labels(fig)[:5] == ["planner", "search_one: api", "search_one: kb", "search_one: web", "writer"]


def test_a_node_run_with_requests_inside_keeps_its_node_colour():
    """The capstone: a research task's node run (a container) under its own requests, on one lane."""
    from agency_lib.timing import Span

    spans = [
        Span("web: q", "web: q", "researcher", 0.0, 0.5, leaf=False),  # the node run, waiting between tries
        Span("web: q", "web: q", "web", 0.0, 0.2),
        Span("web: q", "web: q", "web", 0.3, 0.5),
    ]
    fig = gantt(spans)
    assert legend_labels(fig)[:2] == ["researcher", "web"]
    assert matplotlib.colors.same_color(bars(fig.axes[0])[0].get_facecolor(), "#937860")


def test_marks_draw_a_named_line_at_each_time():
    fig = gantt(recording(), marks={"step 2 ends": 0.25, "step 3 ends": 0.3})
    (ax,) = fig.axes
    assert vlines(ax, "#2C3E50") == [0.25, 0.3]
    assert [t.get_text().strip() for t in ax.texts] == ["step 2 ends", "step 3 ends"]


def test_marks_close_together_get_their_labels_one_under_the_other():
    fig = gantt(recording(), marks={"lower bound": 0.28, "research ends": 0.3, "step 1": 0.05})
    (ax,) = fig.axes
    heights = {t.get_text().strip(): t.get_position()[1] for t in ax.texts}
    assert heights["lower bound"] > heights["research ends"]  # 0.02 s apart: not on one line
    assert heights["step 1"] == heights["lower bound"]  # far from the others: the top line


def test_compare_marks_both_panels_or_each_its_own():
    both = compare(recording("a"), recording("b"), marks={"step 2 ends": 0.2})
    assert [vlines(ax, "#2C3E50") for ax in both.axes] == [[0.2], [0.2]]
    each = compare(recording("a"), recording("b"), marks=({"step 2 ends": 0.2}, None))
    assert [vlines(ax, "#2C3E50") for ax in each.axes] == [[0.2], []]


def test_a_mark_past_the_last_span_widens_the_axis():
    (ax,) = gantt(recording(), marks={"deadline": 0.5}).axes
    assert ax.get_xlim()[1] >= 0.5


@pytest.mark.parametrize(
    ("marks", "error", "message"),
    [
        ([("step", 0.2)], TypeError, "marks must be a dict of name -> time in seconds"),
        ({"": 0.2}, ValueError, "every name in marks must be a non-empty string"),
        ({"step": "0.2"}, ValueError, r"marks\['step'\] must be a time in seconds"),
        ({"step": float("nan")}, ValueError, r"marks\['step'\] must be a time in seconds"),
        ({"step": True}, ValueError, r"marks\['step'\] must be a time in seconds"),
    ],
)
def test_bad_marks_get_a_clear_error(marks, error, message):
    with pytest.raises(error, match=message):
        gantt(recording(), marks=marks)


def test_compare_marks_must_be_one_dict_or_a_pair():
    with pytest.raises(ValueError, match="marks must be one dict for both panels, or a pair"):
        compare(recording(), recording(), marks=({"a": 0.1},))
    with pytest.raises(ValueError, match=r"marks\[1\]\['b'\] must be a time"):
        compare(recording(), recording(), marks=({"a": 0.1}, {"b": None}))


def test_no_chart_text_calls_busy_over_wall_a_speedup():
    rec = recording(failed=True)
    rec.add("planner", 10.0, 10.0, group="planner")
    for fig in (gantt(rec, marks={"m": 0.1}), compare(rec, recording())):
        texts = [ax.get_title() for ax in fig.axes] + legend_labels(fig)
        texts += [t.get_text() for ax in fig.axes for t in ax.texts]
        assert not [t for t in texts if "speed" in t.lower()]


def test_a_chart_png_stays_small(tmp_path):
    rec = recording()
    for i in range(9):
        rec.add(f"web: q{i}", 10.0, 10.2, group="search_one", lane=f"web: q{i}")
    path = tmp_path / "chart.png"
    compare(rec, recording()).savefig(path)
    assert path.stat().st_size < 80_000  # a notebook carries several charts and must stay well under 1.5 MB
