"""Self-checks of notebook 10: the right answer passes, each wrong one says what is wrong.

`check_stream_then_cancel` is run for real (a served agency) by notebook 10's solution cell;
here only its answers that need no server.
"""

from __future__ import annotations

import asyncio

import pytest

from agency_lib.checks import nb10

BURST = {"users": 12, "run_seconds": 0.2, "budget_seconds": 0.65}


def test_rounds_is_the_ceiling_of_users_over_slots():
    assert [nb10.rounds(12, k) for k in (1, 3, 4, 5, 12, 20)] == [12, 4, 3, 3, 1, 1]


def test_the_smallest_number_of_slots_passes():
    fb = nb10.check_jobs_per_worker(4, **BURST)
    assert fb, fb
    assert "3 rounds" in str(fb) and "3 would need 4 rounds" in str(fb)


@pytest.mark.parametrize(
    ("jobs", "says"),
    [
        (None, "should be a whole number of job slots"),
        (2.5, "should be a whole number"),
        (True, "should be a whole number"),
        (0, "at least one job slot"),
        (3, "go in 4 rounds of 0.2 s: the last one ends 0.80 s after the first starts, over the budget"),
        (1, "go in 12 rounds"),
        (6, "6 slots meet the budget, but so do 4"),
        (12, "but so do 4"),
    ],
)
def test_a_wrong_number_of_slots_says_what_is_wrong(jobs, says):
    fb = nb10.check_jobs_per_worker(jobs, **BURST)
    assert not fb and says in str(fb), str(fb)


def test_stream_then_cancel_must_be_an_async_function():
    def plain(client, thread_id):
        return None

    fb = asyncio.run(nb10.check_stream_then_cancel(plain, service=None))
    assert not fb and "should be an async def" in str(fb), str(fb)


def test_a_stub_that_does_not_use_the_client_is_told_so_without_starting_a_server():
    async def stub(client, thread_id): ...

    fb = asyncio.run(nb10.check_stream_then_cancel(stub, service=None))
    assert not fb and "did not use the client" in str(fb), str(fb)
