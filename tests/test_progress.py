"""agency_lib.progress: phase lines from a stream, timing tables, the critical path of a recording."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from langgraph.types import RetryPolicy

from agency_lib import Recorder
from agency_lib.progress import (
    PhaseProgress,
    critical_path,
    lower_bound,
    outline,
    recorded_sleep,
    slot_lanes,
    timing_table,
)


def feed_all(progress: PhaseProgress, items: list[tuple[str, object]]) -> list[str]:
    for mode, chunk in items:
        progress.feed(mode, chunk)
    progress.close()
    return [line.split("] ", 1)[1] for line in progress.lines]  # drop the time stamp


# -- PhaseProgress ---------------------------------------------------------------------------------
def test_one_line_per_phase_whatever_order_the_tasks_finish_in():
    events = [
        ("updates", {"planner": {"queries": ["a", "b"]}}),
        ("custom", {"phase": "researcher", "status": "retried"}),
        ("custom", {"phase": "researcher", "status": "ok"}),
        ("updates", {"researcher": {"findings": [1]}}),
        ("custom", {"phase": "researcher", "status": "failed"}),
        ("updates", {"researcher": {"errors": ["x"]}}),
        ("custom", {"phase": "writer", "text": "draft 1: 3 lines"}),
        ("updates", {"writer": {"draft": "..."}}),
    ]
    shuffled = [events[0], events[4], events[5], events[1], events[2], events[3], *events[6:]]
    expected = [
        "planner    queries 2",
        "researcher 2 tasks: 1 ok, 1 failed, 1 retried",
        "writer     draft 1: 3 lines",
    ]
    assert feed_all(PhaseProgress(print_fn=lambda line: None), events) == expected
    assert feed_all(PhaseProgress(print_fn=lambda line: None), shuffled) == expected


def test_writes_replayed_on_resume_are_read_from_the_cached_marker():
    # What LangGraph streams on resume: the saved writes, marked cached, then the tasks that run now.
    events = [("updates", {"researcher": {"findings": [1]}, "__metadata__": {"cached": True}}) for _ in range(3)]
    events.append(("custom", {"phase": "researcher", "status": "ok"}))
    events.append(("updates", {"researcher": {"findings": [2]}}))
    assert feed_all(PhaseProgress(print_fn=lambda line: None), events) == [
        "researcher 4 tasks: 1 ok, 3 from the checkpoint"
    ]


def test_an_update_without_an_event_is_not_guessed_to_come_from_the_checkpoint():
    events = [("updates", {"researcher": {"findings": [1]}}), ("updates", {"researcher": {"findings": [2]}})]
    events.append(("custom", {"phase": "researcher", "status": "ok"}))
    assert feed_all(PhaseProgress(print_fn=lambda line: None), events) == ["researcher 2 tasks: 1 ok"]


def test_every_prints_lines_while_a_long_phase_runs():
    printed: list[str] = []
    progress = PhaseProgress(print_fn=printed.append, every=2)
    progress.feed("updates", {"planner": {"queries": ["a"]}})
    for _ in range(5):
        progress.feed("custom", {"phase": "researcher", "status": "ok"})
        progress.feed("updates", {"researcher": {"findings": [1]}})
    progress.feed("updates", {"researcher": {"findings": [1]}, "__metadata__": {"cached": True}})
    progress.close()
    assert [line.split("] ", 1)[1] for line in printed] == [
        "planner    queries 1",
        "researcher … 2 tasks done",
        "researcher … 4 tasks done",
        "researcher 6 tasks: 5 ok, 1 from the checkpoint",
    ]


def test_lines_are_printed_as_phases_end_and_stamped_with_seconds():
    printed: list[str] = []
    with PhaseProgress(print_fn=printed.append) as progress:
        progress.feed("custom", {"phase": "planner", "text": "3 queries"})
        assert printed == []  # the phase may still get events
        progress.feed("custom", {"phase": "writer", "text": "draft 1"})
        assert len(printed) == 1
    assert len(printed) == 2 and printed[0].startswith("[") and " s] planner" in printed[0]
    progress.close()  # twice is fine
    assert len(printed) == 2


def test_progress_rejects_what_it_cannot_read():
    progress = PhaseProgress(print_fn=lambda line: None)
    with pytest.raises(ValueError, match="stream_mode=\\['updates', 'custom'\\]"):
        progress.feed("values", {"topic": "x"})
    with pytest.raises(ValueError, match="langgraph_node"):
        progress.feed("messages", ("token", {}))
    with pytest.raises(ValueError, match="pair"):
        progress.feed("messages", "token")
    with pytest.raises(ValueError, match="'phase'"):
        progress.feed("custom", {"status": "ok"})
    with pytest.raises(TypeError, match="print_fn"):
        PhaseProgress(print_fn="print")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="width"):
        PhaseProgress(width=0)


def test_tokens_of_the_messages_stream_are_counted_per_node_and_kept():
    @dataclass
    class Chunk:
        content: str

    progress = PhaseProgress(print_fn=lambda line: None)
    progress.feed("updates", {"planner": {"queries": ["q"]}})
    for token in ["# Title", "\n", "- web"]:
        progress.feed("messages", (Chunk(token), {"langgraph_node": "writer"}))
    progress.feed("messages", (Chunk(""), {"langgraph_node": "writer"}))  # the usage chunk at the end: no text
    progress.feed("updates", {"writer": {"draft": "# Title\n- web"}})
    progress.feed("messages", (Chunk("approved"), {"langgraph_node": "editor"}))
    progress.feed("updates", {"editor": {"approved": True}})
    progress.close()
    assert [line.split("] ", 1)[1] for line in progress.lines] == [
        "planner    queries 1",
        "writer     draft 1, 3 tokens streamed",
        "editor     approved 1, 1 token streamed",
    ]
    assert "".join(progress.tokens["writer"]) == "# Title\n- web"


# -- timing_table ----------------------------------------------------------------------------------
def test_timing_table_sums_per_group_in_the_given_order():
    rec = Recorder()
    rec.add("api: q", 0.0, 0.3, group="api", outcome="error")
    rec.add("api: q", 0.35, 0.65, group="api")
    rec.add("web: q", 0.0, 0.25, group="web")
    lines = timing_table(rec, ["web", "api"], title="source").splitlines()
    assert lines[0].split() == ["source", "runs", "failed", "total", "mean", "max"]
    assert lines[1].split() == ["web", "1", "0", "0.25", "s", "0.25", "s", "0.25", "s"]
    assert lines[2].split() == ["api", "2", "1", "0.60", "s", "0.30", "s", "0.30", "s"]


def test_timing_table_explains_bad_arguments():
    rec = Recorder()
    rec.add("web: q", 0.0, 0.25, group="web")
    with pytest.raises(ValueError, match="no span of the groups"):
        timing_table(rec, ["kb"])
    with pytest.raises(TypeError, match="list of names"):
        timing_table(rec, "web")
    with pytest.raises(ValueError, match="'group' or 'lane'"):
        timing_table(rec, ["web"], by="node")  # type: ignore[arg-type]


# -- critical_path ---------------------------------------------------------------------------------
def test_a_retry_chain_counts_its_attempts_and_back_off():
    rec = Recorder()
    rec.add("api: q", 0.0, 0.3, group="api", outcome="error")
    rec.add("api: q", 0.36, 0.66, group="api")  # retried after a 0.05 s back-off (+ overhead)
    rec.add("web: q", 0.0, 0.25, group="web")
    cp = critical_path(rec, capacity=None, retry=RetryPolicy(initial_interval=0.05, jitter=False))
    assert [s.name for s in cp.spans] == ["api: q", "api: q"]
    assert cp.backoff == pytest.approx(0.05)
    assert cp.length == pytest.approx(0.65)  # 0.3 + 0.05 + 0.3: the 0.01 s of overhead is not a wait


def test_a_retry_chain_counts_the_back_off_it_slept_when_the_recording_has_it():
    rec = Recorder()
    rec.add("api: q", 0.0, 0.3, group="api", outcome="error")
    rec.add("api: q", 0.3, 0.5, group="back-off")  # recorded_sleep
    rec.add("api: q", 0.7, 1.0, group="api")  # then queued 0.2 s for a slot: not a wait of the chain
    cp = critical_path(rec, capacity=None)
    assert cp.backoff == pytest.approx(0.2)
    assert cp.length == pytest.approx(0.8)


def test_outline_draws_a_box_round_each_bar_of_the_path():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agency_lib import gantt

    rec = Recorder()
    rec.add("web: a", 0.0, 0.25, group="web")
    rec.add("web: b", 0.25, 0.5, group="web")
    lanes = slot_lanes(rec)
    fig = gantt(lanes)
    assert outline(fig.axes[0], critical_path(rec, capacity=1).spans, lanes) == 2
    plt.close(fig)
    with pytest.raises(TypeError, match="axes"):
        outline(fig, [], lanes)


def test_a_request_waiting_for_a_full_service_is_chained_after_the_one_that_freed_its_slot():
    rec = Recorder()
    rec.add("web: a", 0.0, 0.25, group="web")
    rec.add("api: a", 0.0, 0.30, group="api")
    rec.add("web: b", 0.26, 0.51, group="web")  # took web: a's slot
    rec.add("kb: a", 0.0, 0.18, group="kb")  # the kb does not use the service
    full = critical_path(rec, capacity=2)
    assert [s.name for s in full.spans] == ["web: a", "web: b"]
    assert full.length == pytest.approx(0.50)
    # With room to spare (capacity 3) web: b did not have to wait: the longest chain is one request.
    roomy = critical_path(rec, capacity=3)
    assert roomy.length == pytest.approx(0.30)
    assert "critical path" in str(full) and "web: a" in str(full)


def test_a_slot_handed_over_late_while_another_freed_is_still_a_wait():
    rec = Recorder()
    rec.add("web: a", 0.0, 0.25, group="web")
    rec.add("web: c", 0.0, 0.24, group="web")  # ended just before a: its slot went to d
    rec.add("web: d", 0.255, 0.5, group="web")
    rec.add("web: b", 0.26, 0.51, group="web")  # took a's slot, 10 ms late (a busy loop)
    assert [s.name for s in critical_path(rec, capacity=2).spans] == ["web: a", "web: b"]
    assert critical_path(rec, capacity=2, slack=0.001).length == pytest.approx(0.25)  # no slack: no wait seen


def test_the_critical_path_is_never_longer_than_the_run():
    rec = Recorder()
    for i in range(6):
        rec.add(f"web: {i}", 0.1 * i, 0.1 * i + 0.25, group="web")
    cp = critical_path(rec, capacity=1)
    wall = max(s.end for s in rec.spans) - min(s.start for s in rec.spans)
    assert cp.length <= wall + 1e-9


def test_critical_path_explains_bad_arguments():
    rec = Recorder()
    rec.add("planner", 0.0, 0.1, group="planner")
    with pytest.raises(ValueError, match="no tool span"):
        critical_path(rec, capacity=4)
    rec.add("web: a", 0.0, 0.25, group="web")
    with pytest.raises(ValueError, match="capacity"):
        critical_path(rec, capacity=0)
    with pytest.raises(TypeError, match="RetryPolicy"):
        critical_path(rec, capacity=4, retry=3)
    with pytest.raises(ValueError, match="slack"):
        critical_path(rec, capacity=4, slack=-1)
    with pytest.raises(TypeError, match="Recorder or a list of Span"):
        critical_path("spans", capacity=4)  # type: ignore[arg-type]


# -- lower_bound, recorded_sleep, slot_lanes ------------------------------------------------------
def test_the_lower_bound_is_the_service_time_over_capacity_when_the_service_is_the_bottleneck():
    rec = Recorder()
    for i in range(8):  # 8 requests of 0.25 s through 2 slots: at least 1 s
        rec.add(f"web: q{i}", 0.25 * (i // 2), 0.25 * (i // 2) + 0.25, group="web")
    rec.add("kb: q0", 0.0, 0.18, group="kb")  # the kb does not use the service
    bound = lower_bound(rec, capacity=2)
    assert bound.service == pytest.approx(1.0)
    assert bound.chain == pytest.approx(0.25)
    assert bound.length == pytest.approx(1.0)
    assert "Σ service time ÷ 2 slots 1.00 s" in str(bound)


def test_the_lower_bound_is_the_retry_chain_with_its_back_offs_when_it_is_longer():
    rec = Recorder()
    rec.add("api: q", 0.0, 0.3, group="api", outcome="error")
    rec.add("api: q", 0.5, 0.8, group="back-off")  # slept before the retry
    rec.add("api: q", 0.8, 1.1, group="api")
    rec.add("web: q", 0.0, 0.25, group="web")
    bound = lower_bound(rec, capacity=4)
    assert bound.chain_name == "api: q"
    assert bound.chain == pytest.approx(0.9)  # 0.3 + 0.3 back-off + 0.3: the 0.2 s spent queueing is not counted
    assert bound.length == pytest.approx(0.9)


def test_recorded_sleep_records_a_back_off_span_only_inside_a_recorder():
    async def main():
        await recorded_sleep(0.0, "web: q")  # no recorder: just a sleep
        rec = Recorder()
        with rec:
            await recorded_sleep(0.01, "web: q")
        return rec

    rec = asyncio.run(main())
    assert [(s.name, s.group) for s in rec.spans] == [("web: q", "back-off")]
    with pytest.raises(ValueError, match="seconds"):
        asyncio.run(recorded_sleep(-1, "web: q"))


def test_slot_lanes_put_each_request_in_the_lowest_free_slot():
    rec = Recorder()
    rec.add("web: a", 0.0, 0.3, group="web")
    rec.add("api: a", 0.0, 0.2, group="api")
    rec.add("web: b", 0.2, 0.4, group="web")  # takes api: a's slot
    rec.add("kb: a", 0.0, 0.2, group="kb")  # not a request to the service
    lanes = slot_lanes(rec, group=lambda s: "topic A")
    assert [(s.name, s.lane, s.group) for s in lanes] == [
        ("api: a", "slot 1", "topic A"),
        ("web: a", "slot 2", "topic A"),
        ("web: b", "slot 1", "topic A"),
    ]
    with pytest.raises(TypeError, match="group"):
        slot_lanes(rec, group="topic")  # type: ignore[arg-type]


def test_lower_bound_explains_bad_arguments():
    rec = Recorder()
    rec.add("planner", 0.0, 0.1, group="planner")
    with pytest.raises(ValueError, match="no tool span"):
        lower_bound(rec, capacity=2)
    with pytest.raises(ValueError, match="capacity"):
        lower_bound(rec, capacity=0)
    with pytest.raises(ValueError, match="every"):
        PhaseProgress(every=0)
