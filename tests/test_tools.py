"""The Researcher's tools: real HTTP to the local service, the SQLite knowledge base, the
blocking twins, short ServiceErrors that LangGraph's retry policy understands, and spans."""

from __future__ import annotations

import asyncio
import gc
import operator
from typing import Annotated, TypedDict

import httpx
import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy, default_retry_on

from agency_lib import (
    SOURCES,
    Recorder,
    SearchService,
    ServiceError,
    api_lookup,
    api_lookup_blocking,
    close_clients,
    kb_search,
    kb_search_blocking,
    make_client,
    search,
    search_blocking,
    simulated_search,
    simulated_search_blocking,
    start_service,
    web_search,
    web_search_blocking,
)
from agency_lib import clients as clients_module


@pytest.fixture(scope="module")
def shared():
    with SearchService(latency=0.0, seed=0) as svc:
        yield svc


@pytest.fixture
def service(shared):
    """The module's service with quick, reliable defaults and zeroed counters."""
    shared.configure(latency=0.0, failure_rate=0.0, capacity=None, seed=0)
    shared.reset_stats()
    return shared


def run(coro):
    """asyncio.run, then close the tools' shared client made on that loop (tests leave nothing open)."""

    async def main():
        try:
            return await coro
        finally:
            await close_clients()

    return asyncio.run(main())


def shared_client() -> httpx.AsyncClient | None:
    """The tools' shared client on the running loop, if there is one."""
    _, client = clients_module._clients.get((asyncio.get_running_loop(), "search"), (None, None))
    return client


async def until_closed(client: httpx.AsyncClient) -> bool:
    """Let the loop run until `client` is closed (at most about a second)."""
    for _ in range(100):
        if client.is_closed:
            return True
        await asyncio.sleep(0.01)
    return client.is_closed


def assert_findings(findings: list[dict], source: str, query: str) -> None:
    assert findings, f"no findings from {source}"
    for f in findings:
        assert (f["source"], f["query"]) == (source, query)
        assert isinstance(f["title"], str) and f["title"]


# -- each tool returns findings ----------------------------------------------------------------
@pytest.mark.parametrize("tool", [web_search, api_lookup])
def test_http_tools_return_findings_with_source_query_and_title(service, tool):
    source = "web" if tool is web_search else "api"
    assert_findings(run(tool("event loop")), source, "event loop")
    assert service.stats().by_source == {source: 1}  # one real request


def test_kb_search_returns_ranked_findings_from_the_knowledge_base():
    findings = run(kb_search("event loop", latency=0.0, limit=4))
    assert_findings(findings, "kb", "event loop")
    assert len(findings) == 4
    scores = [f["score"] for f in findings]
    assert scores == sorted(scores)  # best (lowest bm25) first


def test_search_dispatches_to_the_tool_of_each_source(service):
    for source in SOURCES:
        assert_findings(run(search(source, "connection pool")), source, "connection pool")


@pytest.mark.parametrize(("blocking", "tool"), [(web_search_blocking, web_search), (api_lookup_blocking, api_lookup)])
def test_blocking_http_twins_return_the_same_findings(service, blocking, tool):
    assert blocking("event loop") == run(tool("event loop"))


def test_blocking_kb_twin_returns_the_same_findings():
    assert kb_search_blocking("event loop", latency=0.0) == run(kb_search("event loop", latency=0.0))


def test_search_blocking_dispatches_too(service):
    assert_findings(search_blocking("api", "retries"), "api", "retries")


def test_simulated_search_only_sleeps_and_answers_one_finding():
    assert run(simulated_search("web", "q", delay=0.0)) == [
        {"source": "web", "query": "q", "title": "web result for q"}
    ]
    assert simulated_search_blocking("kb", "q", delay=0.0)[0]["source"] == "kb"


def test_tools_strip_the_query():
    assert run(simulated_search("api", "  padded  ", delay=0.0))[0]["query"] == "padded"


# -- concurrency: the async tools overlap --------------------------------------------------------
def test_async_tools_overlap_when_gathered(service):
    service.configure(latency=0.1)
    rec = Recorder()

    async def main():
        with rec:
            await asyncio.gather(web_search("a"), api_lookup("b"), kb_search("c", latency=0.1))

    run(main())
    summary = rec.summary()
    assert summary.peak_concurrency == 3
    assert summary.speedup > 1.6  # three 0.1 s waits in about the time of one (3x), with a generous margin


# -- errors: short ServiceErrors, that LangGraph's default retry_on understands -----------------
def test_429_raises_a_short_service_error(service):
    service.configure(latency=0.2, capacity=1)

    async def main():
        async with make_client() as client:
            return await asyncio.gather(
                web_search("first", client=client), web_search("second", client=client), return_exceptions=True
            )

    results = run(main())
    (error,) = [r for r in results if isinstance(r, Exception)]
    assert isinstance(error, ServiceError)
    assert isinstance(error, httpx.HTTPStatusError)
    assert error.status_code == 429
    assert str(error) in {
        f"web search for {q!r} rejected: the service is over its capacity or rate limit (HTTP 429)"
        for q in ("first", "second")
    }
    assert "http://" not in str(error)


def test_503_raises_a_service_error_that_suggests_a_retry(service):
    service.configure(failure_rate=1.0)
    with pytest.raises(ServiceError) as info:
        run(api_lookup("flaky"))
    assert (
        str(info.value) == "api search for 'flaky' failed: the service is unavailable; a retry may succeed (HTTP 503)"
    )
    with pytest.raises(ServiceError, match=r"\(HTTP 500\)"):  # the retry of the same query draws a 500
        api_lookup_blocking("flaky")


def test_langgraph_default_retry_on_retries_5xx_but_not_429(service):
    service.configure(failure_rate=1.0)
    with pytest.raises(ServiceError) as failed:
        run(web_search("flaky"))
    service.configure(failure_rate=0.0, capacity=1, latency=0.1)

    async def two_at_once():
        async with make_client() as client:
            return await asyncio.gather(
                web_search("a", client=client), web_search("b", client=client), return_exceptions=True
            )

    (rejected,) = [r for r in run(two_at_once()) if isinstance(r, Exception)]
    assert default_retry_on(failed.value) is True
    assert default_retry_on(rejected) is False


class State(TypedDict, total=False):
    findings: Annotated[list, operator.add]


def test_a_node_with_a_retry_policy_retries_a_failing_service(service):
    service.configure(failure_rate=1.0)
    calls = []

    async def researcher(state):
        calls.append(1)
        return {"findings": await web_search("always failing")}

    g = StateGraph(State)
    g.add_node("researcher", researcher, retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False))
    g.add_edge(START, "researcher")
    g.add_edge("researcher", END)
    with pytest.raises(ServiceError):
        run(g.compile().ainvoke({}))
    assert len(calls) == 3
    assert service.stats().failed == 3


def test_a_node_with_a_retry_policy_does_not_retry_a_429(service):
    service.configure(capacity=1, latency=0.3)
    calls = []

    async def researcher(state):
        calls.append(1)
        return {"findings": await web_search("over capacity")}

    g = StateGraph(State)
    g.add_node("researcher", researcher, retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False))
    g.add_edge(START, "researcher")
    g.add_edge("researcher", END)

    async def main():
        async with make_client() as client:
            blocker = asyncio.create_task(web_search("holds the only slot", client=client))
            await asyncio.sleep(0.1)  # the blocker is in flight: the node's request is one too many
            try:
                await g.compile().ainvoke({})
            finally:
                await blocker

    with pytest.raises(ServiceError, match=r"\(HTTP 429\)"):
        run(main())
    assert len(calls) == 1  # 4xx: not retried


# -- bad arguments are named ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: search("news", "q"), "unknown source 'news'"),
        (lambda: web_search(""), "query must be a non-empty string"),
        (lambda: api_lookup("   "), "query must be a non-empty string"),
        (lambda: kb_search("q", latency=-1), "latency must be a number of seconds"),
        (lambda: kb_search("q", limit=0), "limit must be an int from 1 to 50"),
        (lambda: kb_search("?!"), "has no searchable words"),
        (lambda: simulated_search("web", "q", delay=-0.5), "delay must be a number of seconds"),
        (lambda: simulated_search("news", "q"), "unknown source 'news'"),
    ],
)
def test_async_tools_reject_bad_arguments_by_name(call, message):
    with pytest.raises(ValueError, match=message):
        run(call())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: search_blocking("news", "q"), "unknown source 'news'"),
        (lambda: web_search_blocking(""), "query must be a non-empty string"),
        (lambda: kb_search_blocking("q", latency=-1), "latency must be a number of seconds"),
        (lambda: kb_search_blocking("q", limit=51), "limit must be an int from 1 to 50"),
        (lambda: simulated_search_blocking("web", "q", delay=-1), "delay must be a number of seconds"),
    ],
)
def test_blocking_tools_reject_bad_arguments_by_name(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_kb_search_rejects_a_bad_limit_before_its_latency_and_records_nothing():
    rec = Recorder()

    async def main():
        with rec:
            await asyncio.wait_for(kb_search("event loop", latency=30, limit=0), timeout=1)

    with pytest.raises(ValueError, match="limit must be an int from 1 to 50"):
        run(main())  # not a TimeoutError: the limit is checked before the 30 s wait
    assert len(rec) == 0


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"max_connections": 0}, "max_connections must be an int ≥ 1"),
        ({"max_connections": True}, "max_connections must be an int ≥ 1"),
        ({"timeout": -1}, "timeout must be a number of seconds"),
        ({"pool_timeout": "soon"}, "pool_timeout must be a number of seconds"),
    ],
)
def test_make_client_checks_its_limits(service, knobs, message):
    with pytest.raises(ValueError, match=message):
        make_client(**knobs)


# -- spans ------------------------------------------------------------------------------------------
def test_tools_record_their_spans_into_the_active_recorder(service):
    rec = Recorder()

    async def main():
        with rec:
            await asyncio.gather(web_search("q"), kb_search("q", latency=0.0), api_lookup("q"))
        await web_search("after")  # no longer active: not recorded

    run(main())
    assert sorted((s.name, s.group) for s in rec.spans) == [("api: q", "api"), ("kb: q", "kb"), ("web: q", "web")]


def test_blocking_tools_record_too(service):
    rec = Recorder()
    with rec:
        web_search_blocking("q")
    assert [s.name for s in rec.spans] == ["web: q"]


def test_a_failing_tool_call_is_recorded_as_error(service):
    service.configure(failure_rate=1.0)
    rec = Recorder()
    with rec, pytest.raises(ServiceError):
        run(web_search("q"))
    assert rec.spans[0].outcome == "error"


# -- the shared client: one per loop, closed with its service -----------------------------------
def test_tool_calls_on_one_loop_share_one_client(service):
    async def main():
        await web_search("first")
        first = shared_client()
        await api_lookup("second")
        return first, shared_client()

    first, second = run(main())
    assert first is second and first.is_closed  # run() closed it at the end


def test_stopping_the_service_closes_its_shared_client_on_the_running_loop():
    async def main():
        svc = start_service(latency=0.0)
        try:
            await web_search("q")
            client = shared_client()
        finally:
            svc.stop()  # plain code, as in a notebook cell: the closing runs on the loop right after
        return client, await until_closed(client), shared_client()

    client, closed, after = run(main())
    assert closed and after is None


def test_a_service_stopped_from_another_thread_closes_its_client_on_the_loop_too():
    async def main():
        svc = start_service(latency=0.0)
        await web_search("q")
        client = shared_client()
        await asyncio.to_thread(svc.stop)  # e.g. an instructor's script, or atexit
        return await until_closed(client)

    assert run(main())


def test_close_clients_closes_the_shared_client_and_the_next_call_makes_a_new_one(service):
    async def main():
        await web_search("q")
        old = shared_client()
        await close_clients()
        assert old.is_closed and shared_client() is None
        assert_findings(await web_search("again"), "web", "again")
        return old, shared_client()

    old, new = run(main())
    assert new is not old


def test_a_new_service_gets_a_new_client_and_the_old_one_is_closed_whatever_the_port():
    async def main():
        with start_service(latency=0.0):
            await web_search("before")
            old = shared_client()
            with SearchService(latency=0.0):  # the old service still runs; the new one is current
                assert_findings(await web_search("after"), "web", "after")
                new = shared_client()
                assert old.is_closed and not new.is_closed
        return old, new

    old, new = run(main())
    assert new is not old


def test_concurrent_calls_after_a_service_change_make_one_new_client(monkeypatch):
    made: list[httpx.AsyncClient] = []

    class CountedClient(httpx.AsyncClient):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(httpx, "AsyncClient", CountedClient)

    async def main():
        with start_service(latency=0.0):
            await web_search("warm up")
            with SearchService(latency=0.0):
                await asyncio.gather(*(web_search(f"q{i}") for i in range(5)))
                return shared_client()

    current = run(main())
    assert len(made) == 2  # one per service, not one per concurrent call
    assert made[1] is current and made[0].is_closed


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # the sockets left open on purpose, reclaimed below
def test_no_client_is_kept_for_an_event_loop_that_has_ended(service):
    async def leave_it_open():
        await web_search("q")  # no close_clients(): the loop ends with the client open

    for _ in range(3):
        asyncio.run(leave_it_open())

    async def main():
        await web_search("q")
        return list(clients_module._clients) == [(asyncio.get_running_loop(), "search")]

    assert run(main())  # the three ended loops' clients were let go...
    gc.collect()  # ...so the garbage collector reclaims them (and their sockets) now, in this test
