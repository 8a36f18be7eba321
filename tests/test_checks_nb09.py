"""The self-checks of notebook 07: right answers pass, wrong ones fail with a hint that points at the fix."""

from __future__ import annotations

import asyncio

import pytest
from langgraph.errors import NodeTimeoutError
from langgraph.graph import END

from agency_lib import Recorder
from agency_lib.checks import nb09
from agency_lib.service import ServiceStats


# -- the route of the revision loop --------------------------------------------------------------
def route(state):
    if state.get("approved"):
        return END
    if state.get("revisions", 0) < 2:
        return "writer"
    return END


def route_without_a_limit(state):
    return END if state["approved"] else "writer"


def route_off_by_one(state):
    if state["approved"]:
        return END
    return "writer" if state["revisions"] <= 2 else END


def route_forgets_approval(state):
    return "writer" if state["revisions"] < 2 else END


def route_stub(state): ...


def route_to_editor(state):
    return END if state["approved"] else "editor"


def route_with_a_key_error(state):
    return END if state["done"] else "writer"


async def route_async(state):
    return END


def test_a_right_route_passes():
    feedback = nb09.check_route(route, max_revisions=2)
    assert feedback.ok and str(feedback).startswith("✅")


def test_a_route_with_a_larger_limit_passes_with_that_limit_only():
    def route3(state):
        return END if state["approved"] or state["revisions"] >= 3 else "writer"

    assert nb09.check_route(route3, max_revisions=3)
    assert not nb09.check_route(route3, max_revisions=2)


@pytest.mark.parametrize(
    ("fn", "hint"),
    [
        (route_without_a_limit, "the loop must stop"),
        (route_off_by_one, "compare with `<`"),
        (route_forgets_approval, "check `approved` first"),
        (route_stub, "needs a `return`"),
        (route_to_editor, "back to the writer"),
        (route_with_a_key_error, "state.get('approved')"),
        (route_async, "plain `def`"),
    ],
)
def test_a_wrong_route_fails_with_a_hint(fn, hint):
    feedback = nb09.check_route(fn, max_revisions=2)
    assert not feedback.ok
    assert str(feedback).startswith("❌")
    assert hint in str(feedback)


def test_check_route_explains_bad_arguments():
    with pytest.raises(TypeError, match="route function"):
        nb09.check_route("route")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_revisions"):
        nb09.check_route(route, max_revisions=1)


# -- the bounds -------------------------------------------------------------------------------------
def recording(tools: list[tuple[str, float, float]], research_end: float) -> Recorder:
    """A recorded run: research node runs from 0 to research_end, and the given tool spans."""
    rec = Recorder()
    for name, start, end in tools:
        rec.add(name, start, end, group=name.split(":")[0])
    rec.add("researcher", 0.0, research_end, group="researcher")
    return rec


# Capacity 2: web: b waits for the slot web: a frees, so the critical path is 0.25 + 0.25 s.
FULL = [("web: a", 0.0, 0.25), ("api: a", 0.0, 0.30), ("web: b", 0.25, 0.50), ("kb: a", 0.0, 0.18)]
# One request at a time although the service holds 2: waits that were not needed.
SERIAL = [("web: a", 0.0, 0.25), ("api: a", 0.25, 0.55), ("web: b", 0.55, 0.80), ("kb: a", 0.0, 0.18)]


def fake_run(tools, research_end, rejected=0):
    async def run(http_slots, max_concurrency):
        stats = ServiceStats(requests=3 + rejected, ok=3, rejected=rejected, peak_in_flight=2 + (rejected > 0))
        return recording(tools, research_end), stats

    return run


def check(run, http_slots=2, max_concurrency=4, **kw):
    kw = {"capacity": 2, "tasks": 4, **kw}
    return asyncio.run(nb09.check_bounds(run, http_slots=http_slots, max_concurrency=max_concurrency, **kw))


def test_bounds_that_use_the_whole_service_and_no_more_pass():
    feedback = check(fake_run(FULL, 0.52))
    assert feedback.ok, str(feedback)
    assert "no 429s" in str(feedback)


def test_the_stub_fails_before_running_anything():
    ran = []

    async def run(http_slots, max_concurrency):
        ran.append(1)

    feedback = check(run, http_slots=...)
    assert not feedback.ok and "http_slots is Ellipsis" in str(feedback)
    assert not check(run, max_concurrency=0).ok
    assert ran == []


def test_429s_fail_with_a_hint_to_lower_the_semaphore():
    feedback = check(fake_run(FULL, 0.52, rejected=2), http_slots=3)
    assert not feedback.ok
    assert "2 request(s) rejected with 429" in str(feedback)
    assert "http_slots = 3" in str(feedback)


def test_idle_slots_fail_with_a_hint_to_use_them():
    feedback = check(fake_run(SERIAL, 0.82), http_slots=1)
    assert not feedback.ok
    assert "leaves 1 of the service's 2 slots idle" in str(feedback)


def test_a_small_max_concurrency_fails_with_a_hint_about_the_kb():
    feedback = check(fake_run(SERIAL, 0.82), max_concurrency=2)
    assert not feedback.ok
    assert "max_concurrency = 2 holds back tasks" in str(feedback)


def test_a_run_that_times_out_fails_with_a_hint_about_the_queue():
    async def run(http_slots, max_concurrency):
        raise NodeTimeoutError("researcher", 1.0, kind="run", run_timeout=1.0)

    feedback = check(run, http_slots=1)
    assert not feedback.ok
    assert "NodeTimeoutError" in str(feedback) and "waits for an HTTP slot" in str(feedback)


def test_check_bounds_explains_bad_arguments():
    with pytest.raises(TypeError, match="run must be"):
        check("run")
    with pytest.raises(ValueError, match="capacity"):
        check(fake_run(FULL, 0.52), capacity=0)
    with pytest.raises(ValueError, match="limit"):
        check(fake_run(FULL, 0.52), limit=0.5)

    async def returns_nothing(http_slots, max_concurrency):
        return None, None

    with pytest.raises(TypeError, match="Recorder, ServiceStats"):
        check(returns_nothing)


def test_research_ratio_needs_the_node_runs():
    rec = Recorder()
    rec.add("web: a", 0.0, 0.25, group="web")
    with pytest.raises(ValueError, match="rec.callback"):
        nb09.research_ratio(rec, capacity=2)
    wall, cp = nb09.research_ratio(recording(FULL, 0.52), capacity=2)
    assert wall == pytest.approx(0.52) and cp == pytest.approx(0.50)
