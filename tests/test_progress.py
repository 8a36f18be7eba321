"""agency_lib.progress: phase lines from a stream, timing tables, the critical path of a recording."""

from __future__ import annotations

import pytest
from langgraph.types import RetryPolicy

from agency_lib import Recorder
from agency_lib.progress import PhaseProgress, critical_path, timing_table


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


def test_updates_without_an_event_are_reported_as_restored_from_the_checkpoint():
    events = [("updates", {"researcher": {"findings": [1]}}) for _ in range(3)]
    events.append(("custom", {"phase": "researcher", "status": "ok"}))
    events.append(("updates", {"researcher": {"findings": [2]}}))
    assert feed_all(PhaseProgress(print_fn=lambda line: None), events) == [
        "researcher 4 tasks: 1 ok, 3 from the checkpoint"
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
        progress.feed("messages", ("token", {}))
    with pytest.raises(ValueError, match="'phase'"):
        progress.feed("custom", {"status": "ok"})
    with pytest.raises(TypeError, match="print_fn"):
        PhaseProgress(print_fn="print")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="width"):
        PhaseProgress(width=0)


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
    with pytest.raises(TypeError, match="Recorder or a list of Span"):
        critical_path("spans", capacity=4)  # type: ignore[arg-type]
