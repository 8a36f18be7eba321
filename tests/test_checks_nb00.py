"""The self-check of notebook 00: counting the knowledge base's hits after a first `await`."""

from __future__ import annotations

import asyncio
import warnings

import pytest

from agency_lib import Recorder, kb_search
from agency_lib.checks import nb00


def hits(query: str) -> int:
    return len(asyncio.run(kb_search(query, limit=nb00.LIMIT)))


def test_the_right_count_passes():
    n = hits("event loop")
    assert n > 3  # so that the default limit (3) would give a wrong count
    fb = asyncio.run(nb00.check_hits("event loop", n))
    assert fb.ok, fb
    assert f"{n} hits" in fb.message


def test_zero_hits_can_be_right():
    fb = asyncio.run(nb00.check_hits("zebra", 0))
    assert fb.ok and "0 hits" in fb.message


def test_a_wrong_count_names_the_right_one_and_the_limit():
    fb = asyncio.run(nb00.check_hits("event loop", 3))
    assert not fb.ok
    assert f"has {hits('event loop')} hits" in fb.message
    assert any("limit=10" in h for h in fb.hints)


def test_a_coroutine_means_a_missing_await_and_is_closed():
    async def run():
        return await nb00.check_hits("event loop", kb_search("event loop"))

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "never awaited" warning would fail the test
        fb = asyncio.run(run())
    assert not fb.ok
    assert "coroutine" in fb.message
    assert any("await" in h for h in fb.hints)


@pytest.mark.parametrize(("n_hits", "says"), [(None, "not done"), (..., "not done"), ([1, 2], "len("), ("7", "len(")])
def test_other_wrong_answers_get_hints(n_hits, says):
    fb = asyncio.run(nb00.check_hits("event loop", n_hits))
    assert not fb.ok
    assert says in fb.message + " ".join(fb.hints)


@pytest.mark.parametrize("query", ["", "   ", None, 3])
def test_a_bad_query_raises(query):
    with pytest.raises(ValueError, match="query"):
        asyncio.run(nb00.check_hits(query, 0))


def record(*searches) -> Recorder:
    """Record the given async searches (zero-argument functions), one after another."""

    async def run(rec: Recorder) -> None:
        with rec:
            for search in searches:
                await search()

    rec = Recorder("my searches")
    asyncio.run(run(rec))
    return rec


def in_a_row() -> Recorder:
    rec = Recorder("my searches")
    rec.add("web: retries", 0.0, 0.25, group="web")
    rec.add("api: retries", 0.25, 0.55, group="api")
    return rec


def test_a_web_search_and_an_api_lookup_in_a_row_with_the_right_prediction_pass():
    fb = nb00.check_recording(in_a_row(), 0.55)
    assert fb.ok, fb
    assert "one after another" in fb.message and "api, web" in fb.message and "as you predicted" in fb.message


@pytest.mark.parametrize("predicted", [None, ...])
def test_a_right_recording_without_a_prediction_asks_for_one(predicted):
    fb = nb00.check_recording(in_a_row(), predicted)
    assert not fb.ok
    assert "the recording is right" in fb.message and "before you run it" in fb.message


@pytest.mark.parametrize(("predicted", "says"), [(0.3, "longest wait"), (2.0, "how long in all")])
def test_a_wrong_prediction_gets_the_measured_wall_time_and_a_hint(predicted, says):
    fb = nb00.check_recording(in_a_row(), predicted)
    assert not fb.ok
    assert "took 0.55 s" in fb.message
    assert any(says in h for h in fb.hints)


@pytest.mark.parametrize("predicted", ["0.5", True])
def test_a_prediction_that_is_not_a_number(predicted):
    fb = nb00.check_recording(in_a_row(), predicted)
    assert not fb.ok and "number of seconds" in fb.message


def test_overlapping_searches_pass_too():
    rec = Recorder("my searches")
    rec.add("web: retries", 0.0, 0.25, group="web")
    rec.add("api: retries", 0.0, 0.30, group="api")
    fb = nb00.check_recording(rec, 0.3)
    assert fb.ok and "overlapped" in fb.message


def test_a_missing_source_is_named():
    rec = record(lambda: kb_search("retries"))
    fb = nb00.check_recording(rec)
    assert not fb.ok
    assert "no web and no api" in fb.message


@pytest.mark.parametrize(("rec", "says"), [(None, "not done"), (..., "not done"), ([], "Recorder, not list")])
def test_no_recorder_gets_the_recipe(rec, says):
    fb = nb00.check_recording(rec)
    assert not fb.ok and says in fb.message
    assert any("with" in h and "Recorder" in h for h in fb.hints)


def test_an_empty_recorder_means_searches_outside_the_with_block():
    fb = nb00.check_recording(Recorder("my searches"))
    assert not fb.ok
    assert "empty" in fb.message and any("indent" in h for h in fb.hints)
