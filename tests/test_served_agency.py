"""`agency_lib.served_agency`: the agency the Agent Server serves, and its one limiter per process.

These run in this process, against an in-process search service, with no server: the server's
own cases are in test_server.py (slow). Notebook 10, section 5, measures the limiter served.
"""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from agency_lib import SearchService, ServiceError, served_agency
from agency_lib.server import _search_service
from agency_lib.service import start_service


@pytest.fixture
def service():
    with SearchService(latency={"web": 0.02, "api": 0.02}, seed=0, capacity=4) as svc:
        yield svc


@pytest.fixture(autouse=True)
def fresh_limiter(monkeypatch):
    """Each test starts with no limiter made yet, and the default capacity."""
    monkeypatch.setattr(served_agency, "_slots", None)
    monkeypatch.setattr(served_agency, "_slots_loop", None)
    monkeypatch.delenv(served_agency.CAPACITY_ENV, raising=False)


def test_the_capacity_comes_from_the_environment_with_a_default_and_a_clear_error(monkeypatch):
    assert served_agency.search_capacity() == served_agency.DEFAULT_CAPACITY == 4
    monkeypatch.setenv(served_agency.CAPACITY_ENV, "7")
    assert served_agency.search_capacity() == 7
    for bad in ("0", "-1", "four", "2.5"):
        monkeypatch.setenv(served_agency.CAPACITY_ENV, bad)
        with pytest.raises(RuntimeError, match=r"AGENCY_SEARCH_CAPACITY is the search service's capacity, an int ≥ 1"):
            served_agency.search_capacity()


async def _searches(service: SearchService, n: int, shared_limiter: bool = True) -> list:
    async with httpx.AsyncClient(base_url=service.url) as client:
        return await asyncio.gather(
            *(served_agency.limited_search("web", f"q{i}", client, shared_limiter) for i in range(n)),
            return_exceptions=True,
        )


def test_many_searches_at_once_stay_within_the_capacity_with_no_429(service):
    results = asyncio.run(_searches(service, 40))
    stats = service.stats()
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert (stats.requests, stats.ok, stats.rejected) == (40, 40, 0), stats
    assert stats.peak_in_flight == 4, stats


def test_without_the_limiter_the_same_searches_get_429s_that_are_not_retried(service):
    results = asyncio.run(_searches(service, 40, shared_limiter=False))
    errors = [r for r in results if isinstance(r, ServiceError)]
    assert errors and all(e.status_code == 429 for e in errors)
    assert service.stats().requests == 40, "no retries: one request per search"


def test_a_429_the_limiter_did_not_prevent_is_retried(service, monkeypatch):
    monkeypatch.setenv(served_agency.CAPACITY_ENV, "8")  # the limiter lets 8 go at a service that holds 4
    results = asyncio.run(_searches(service, 24))
    stats = service.stats()
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert stats.rejected > 0 and stats.ok == 24, f"every 429 retried until answered: {stats}"


def test_a_second_event_loop_is_refused_while_the_first_one_is_open():
    holding, release = threading.Event(), threading.Event()

    async def first_loop() -> None:
        served_agency.service_slots()
        holding.set()
        await asyncio.to_thread(release.wait, 5)

    other = threading.Thread(target=asyncio.run, args=(first_loop(),))
    other.start()
    try:
        assert holding.wait(5)

        async def second_loop() -> None:
            served_agency.service_slots()

        with pytest.raises(RuntimeError, match=r"BG_JOB_ISOLATED_LOOPS=true"):
            asyncio.run(second_loop())
    finally:
        release.set()
        other.join(5)
    assert not other.is_alive()

    async def after() -> asyncio.Semaphore:  # the first loop is closed: a new limiter, no error
        return served_agency.service_slots()

    assert isinstance(asyncio.run(after()), asyncio.Semaphore)


def test_the_served_agency_runs_in_process_with_and_without_a_context(monkeypatch):
    service = start_service(latency={"web": 0.02, "api": 0.02}, seed=0, capacity=4)
    try:
        monkeypatch.setenv(served_agency.SEARCH_URL_ENV, service.url)
        for context in (None, {"shared_limiter": True}):
            service.reset_stats()
            out = asyncio.run(served_agency.agency.ainvoke({"topic": "async python"}, context=context))
            stats = service.stats()
            assert out["approved"] and out["article"], out
            assert (stats.ok, stats.rejected) == (6, 0) and stats.peak_in_flight <= 4, stats
    finally:
        service.stop()


def test_the_server_passes_the_current_services_capacity_but_not_a_given_urls():
    service = start_service(latency=0.0, capacity=3)
    try:
        assert _search_service(None) == (service.url, 3)
        assert _search_service(service.url + "/") == (service.url, None)
    finally:
        service.stop()


@pytest.mark.parametrize(
    ("headers", "low", "high"),
    [
        ({"retry-after-ms": "1500", "Retry-After": "2"}, 1.5, 1.5),  # the precise one first
        ({"Retry-After": "2"}, 2.0, 2.0),  # a standard service's header, in seconds
        ({}, 0.0, 0.1),  # over capacity: no header, a jittered back-off (attempt 2: up to 0.1 s)
        ({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, 0.0, 0.1),  # a date: not read, back-off
    ],
)
def test_the_retry_waits_what_the_service_says_else_backs_off(headers, low, high):
    response = httpx.Response(429, headers=headers, request=httpx.Request("GET", "http://127.0.0.1/search/web"))
    delay = served_agency._retry_delay(2, ServiceError("web", "q", response))
    assert low <= delay <= high, delay
