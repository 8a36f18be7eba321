"""The self-checks of notebook 01: wrong answers get ❌ and a hint, right ones ✅, misuse a clear error."""

from __future__ import annotations

import asyncio

import pytest

from agency_lib import SOURCES, search, start_service
from agency_lib.checks import nb01


@pytest.fixture
def service():
    with start_service(seed=0, latency=0.05) as svc:  # short waits: the checks compare ratios, not seconds
        yield svc


# -- research_concurrently: a right answer and the usual wrong ones --------------------------
async def research_with_gather(queries):
    return await asyncio.gather(*(search(s, q) for q in queries for s in SOURCES))


async def research_in_a_loop(queries):
    return [await search(s, q) for q in queries for s in SOURCES]


async def research_as_completed(queries):
    return [await c for c in asyncio.as_completed([search(s, q) for q in queries for s in SOURCES])]


async def research_flattened(queries):
    return [f for batch in await research_with_gather(queries) for f in batch]


async def research_without_await(queries):
    return asyncio.gather(*(search(s, q) for q in queries for s in SOURCES))


def research_plain_def(queries):
    return []


async def research_raising(queries):
    raise RuntimeError("boom")


async def research_without_tools(queries):
    return [[{"source": s, "query": q}] for q in queries for s in SOURCES]


def test_gather_passes(service):
    fb = asyncio.run(nb01.check_research_concurrently(research_with_gather))
    assert fb.ok, fb
    assert "input order" in fb.message


def test_serial_loop_fails_with_the_gather_hint(service):
    fb = asyncio.run(nb01.check_research_concurrently(research_in_a_loop))
    assert not fb.ok
    assert "one after another" in fb.message
    assert "sum of their waits" in fb.message
    assert any("asyncio.gather" in h for h in fb.hints)


def test_completion_order_fails_on_order(service):
    fb = asyncio.run(nb01.check_research_concurrently(research_as_completed))
    assert not fb.ok
    assert "not in input order" in fb.message
    assert any("as_completed" in h for h in fb.hints)


def test_flattened_results_are_explained(service):
    fb = asyncio.run(nb01.check_research_concurrently(research_flattened))
    assert not fb.ok
    assert "expected 6 lists" in fb.message
    assert any("flattened" in h for h in fb.hints)


def test_returning_the_gather_without_awaiting_it(service):
    fb = asyncio.run(nb01.check_research_concurrently(research_without_await))
    assert not fb.ok
    assert "awaitable" in fb.message
    assert any("return await" in h for h in fb.hints)


def test_plain_def_and_exceptions_are_feedback_not_crashes(service):
    fb = asyncio.run(nb01.check_research_concurrently(research_plain_def))
    assert not fb.ok and "plain `def`" in fb.message
    fb = asyncio.run(nb01.check_research_concurrently(research_raising))
    assert not fb.ok and "RuntimeError: boom" in fb.message


def test_results_not_from_the_tools(service):
    fb = asyncio.run(nb01.check_research_concurrently(research_without_tools))
    assert not fb.ok and "no search was recorded" in fb.message


def test_no_service_is_a_hint_not_a_crash():
    fb = asyncio.run(nb01.check_research_concurrently(research_with_gather, ["event loop"]))
    assert not fb.ok
    assert "No local search service is running" in fb.message


def test_misuse_raises_clear_errors():
    with pytest.raises(TypeError, match="pass the function itself"):
        asyncio.run(nb01.check_research_concurrently(research_with_gather(["x"])))
    with pytest.raises(TypeError, match="async function"):
        asyncio.run(nb01.check_research_concurrently(42))
    with pytest.raises(ValueError, match="non-empty list of strings"):
        asyncio.run(nb01.check_research_concurrently(research_with_gather, "event loop"))
    with pytest.raises(ValueError, match="non-empty string"):
        asyncio.run(nb01.check_research_concurrently(research_with_gather, ["ok", ""]))


# -- check_prediction -------------------------------------------------------------------------
DELAYS = (0.05, 0.1, 0.02)


def test_the_longest_wait_passes():
    fb = asyncio.run(nb01.check_prediction(0.1, DELAYS))
    assert fb.ok, fb
    assert "longest" in fb.message and "Σ" in fb.message


@pytest.mark.parametrize(
    ("guess", "says"),
    [(0.17, "sum of the waits"), (0.0567, "average"), (0.02, "shortest"), (1.0, "not it")],
)
def test_wrong_predictions_say_what_they_are(guess, says):
    fb = asyncio.run(nb01.check_prediction(guess, DELAYS))
    assert not fb.ok
    assert says in fb.message
    assert "measured" in fb.message
    assert any("overlap" in h for h in fb.hints)


@pytest.mark.parametrize("guess", [None, ..., "0.3", True])
def test_non_numbers_are_feedback(guess):
    fb = asyncio.run(nb01.check_prediction(guess, DELAYS))
    assert not fb.ok and fb.hints


@pytest.mark.parametrize("delays", [(), "0.3", (0.1, -1), (0.1, 10), (0.1, True)])
def test_bad_delays_raise(delays):
    with pytest.raises(ValueError, match="delay"):
        asyncio.run(nb01.check_prediction(0.3, delays))
