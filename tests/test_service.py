"""The local search service: real HTTP on 127.0.0.1 with latency, capacity, seeded failures
and counters; it stops cleanly, and its knobs are checked at the door."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest

from agency_lib import SearchService, current_service, make_client, start_service

LATENCY = 0.05


def service_threads(port: int) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"search-service:{port}"]


async def statuses(client: httpx.AsyncClient, queries: list[str], source: str = "web") -> dict[str, int]:
    responses = await asyncio.gather(*(client.get(f"/search/{source}", params={"q": q}) for q in queries))
    return {q: r.status_code for q, r in zip(queries, responses, strict=True)}


# -- requests, answered by one service shared by this class -----------------------------------
@pytest.fixture(scope="class")
def shared():
    with SearchService(latency=0.0) as svc:
        yield svc


@pytest.fixture
def service(shared: SearchService):
    """The shared service with default knobs and zeroed counters, for one test."""
    shared.configure(latency=0.0, jitter=0.0, seed=0, failure_rate=0.0, capacity=None, rate_limit=None)
    shared.reset_stats()
    return shared


QUERIES = [f"topic {i}" for i in range(30)]


class TestRequests:
    @pytest.mark.slow  # about 3.5 s of CPU: client and service in this process
    def test_serves_a_thousand_concurrent_requests_when_capacity_allows(self, service):
        service.configure(latency=LATENCY)

        async def main() -> list[int]:
            async with make_client(max_connections=1000, timeout=30) as client:
                return list((await statuses(client, [f"query {i}" for i in range(1000)])).values())

        assert asyncio.run(main()) == [200] * 1000
        stats = service.stats()
        assert (stats.requests, stats.ok, stats.rejected, stats.failed) == (1000, 1000, 0, 0)
        # Many overlapped at the service; not all 1000, since the client needs ~1 ms of CPU to send each one.
        assert stats.peak_in_flight > 10

    def test_answers_429_above_capacity_and_counts_the_rejections(self, service):
        service.configure(latency=0.2, capacity=5)

        async def main() -> dict[str, int]:
            async with make_client(max_connections=50) as client:
                return await statuses(client, [f"q{i}" for i in range(20)])

        codes = asyncio.run(main())
        stats = service.stats()
        rejected = sum(c == 429 for c in codes.values())
        assert set(codes.values()) == {200, 429}
        assert stats.rejected == rejected
        assert stats.ok == 20 - rejected
        assert stats.peak_in_flight <= 5

    def test_a_rate_limit_answers_429_beyond_the_requests_per_second(self, service):
        service.configure(rate_limit=3)
        with httpx.Client(base_url=service.url) as client:
            codes = [client.get("/search/web", params={"q": f"q{i}"}).status_code for i in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        assert service.stats().rejected == 2

    def test_results_are_a_function_of_the_query(self, service):
        with httpx.Client(base_url=service.url) as client:
            first = client.get("/search/web", params={"q": "event loop"}).json()
            again = client.get("/search/web", params={"q": "event loop"}).json()
            api = client.get("/search/api", params={"q": "event loop", "limit": "2"}).json()
        assert first == again
        assert first["source"] == "web" and len(first["results"]) == 3
        assert len(api["results"]) == 2

    def test_latency_is_honoured_and_can_be_changed_while_running(self, service):
        def one_request() -> float:
            with httpx.Client(base_url=service.url) as client:
                client.get("/health")  # connect first: time the search alone
                start = time.perf_counter()
                client.get("/search/api", params={"q": "slow"})
                return time.perf_counter() - start

        service.configure(latency={"web": 0.0, "api": 0.2})
        took = one_request()
        service.configure(latency={"api": 0.0})
        quick = one_request()
        assert 0.2 - 0.002 <= took < 0.2 * 3  # 2 ms: under uvloop (uvicorn's choice) a timer may fire 1 ms early
        assert quick < 0.5 * took

    # -- failure injection is reproducible --------------------------------------------------
    @staticmethod
    def failing(service: SearchService, seed: int, order: list[str]) -> set[str]:
        """The queries answered 5xx, sent all at once in the given order."""
        service.configure(failure_rate=0.3, seed=seed)

        async def main() -> dict[str, int]:
            async with make_client() as client:
                return await statuses(client, order)

        return {q for q, c in asyncio.run(main()).items() if c >= 500}

    def test_the_same_seed_fails_the_same_queries_whatever_the_order_of_arrival(self, service):
        first = self.failing(service, 7, QUERIES)
        service.reset_stats()  # forget the attempts: the next request of a query is attempt 1 again
        assert self.failing(service, 7, list(reversed(QUERIES))) == first
        assert 0 < len(first) < len(QUERIES)

    def test_another_seed_fails_other_queries(self, service):
        first = self.failing(service, 7, QUERIES)
        service.reset_stats()
        assert self.failing(service, 8, QUERIES) != first

    def test_a_retry_gets_a_fresh_draw_until_reset_stats(self, service):
        first = self.failing(service, 7, QUERIES)
        assert self.failing(service, 7, QUERIES) != first  # attempt 2 of every query
        service.reset_stats()
        assert self.failing(service, 7, QUERIES) == first

    def test_failures_are_counted_and_answered_503_first(self, service):
        service.configure(failure_rate=1.0)

        async def main() -> dict[str, int]:
            async with make_client() as client:
                return await statuses(client, ["a", "b", "c"])

        assert set(asyncio.run(main()).values()) == {503}  # first attempts get 503, retries alternate with 500
        assert service.stats().failed == 3
        service.reset_stats()
        assert service.stats().requests == 0

    # -- bad requests -------------------------------------------------------------------------
    def test_unknown_source_is_404_and_missing_query_is_400(self, service):
        with httpx.Client(base_url=service.url) as client:
            unknown = client.get("/search/news", params={"q": "x"})
            missing = client.get("/search/web")
            bad_limit = client.get("/search/web", params={"q": "x", "limit": "many"})
        assert unknown.status_code == 404 and "unknown source 'news'" in unknown.json()["error"]
        assert missing.status_code == 400 and "missing query" in missing.json()["error"]
        assert bad_limit.status_code == 400

    def test_current_service_is_the_running_one(self, service):
        assert current_service() is service


def test_jitter_spreads_latency_reproducibly():
    svc = SearchService(latency=0.1, jitter=0.5, seed=3)  # made, not started: ask it how long it would wait
    waits = [svc._admit("web", f"q{i}")[1] for i in range(20)]
    again = SearchService(latency=0.1, jitter=0.5, seed=3)
    assert [again._admit("web", f"q{i}")[1] for i in range(20)] == waits
    assert 0.05 <= min(waits) < max(waits) <= 0.15


# -- life cycle -------------------------------------------------------------------------------
def test_stops_cleanly_even_when_the_body_fails():
    with pytest.raises(RuntimeError, match="the test body failed"):
        with start_service(latency=0.0) as svc:
            port = svc.port
            assert httpx.get(f"{svc.url}/health").json() == {"ok": True}
            assert len(service_threads(port)) == 1
            raise RuntimeError("the test body failed")
    assert not svc.running
    assert service_threads(port) == []
    with socket.socket() as again:  # nothing listens on the port any more
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()


def test_stop_is_safe_twice_and_a_stopped_service_has_no_url():
    svc = start_service(latency=0.0)
    svc.stop()
    svc.stop()
    with pytest.raises(RuntimeError, match="the service is not running"):
        _ = svc.url


def test_current_service_without_a_service_says_how_to_start_one():
    with pytest.raises(RuntimeError, match=r"(?s)No local search service is running.*service = start_service\(\)"):
        current_service()


def test_refuses_to_listen_beyond_loopback_unless_asked():
    with pytest.raises(ValueError, match="allow_remote=True"):
        SearchService(host="0.0.0.0")
    assert SearchService(host="0.0.0.0", allow_remote=True).host == "0.0.0.0"  # made, not started


# -- knobs ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"latency": -0.1}, r"latency\['web'\] must be between 0 and 30 seconds"),
        ({"latency": {"news": 0.1}}, "unknown source 'news' in latency"),
        ({"jitter": 1.0}, r"jitter is a fraction of the latency in \[0, 1\)"),
        ({"failure_rate": 1.5}, r"failure_rate is a share of requests in \[0, 1\]"),
        ({"capacity": 0}, "capacity is the most requests in flight"),
        ({"rate_limit": 0}, r"rate_limit is requests per second \(> 0\)"),
    ],
)
def test_bad_knob_values_are_rejected_with_what_is_expected(knobs, message):
    with pytest.raises(ValueError, match=message):
        SearchService(**knobs)


def test_an_unknown_knob_is_named_with_the_list_of_knobs():
    with pytest.raises(TypeError, match=r"unknown knob\(s\) \['speed'\]; the knobs are \['capacity'"):
        SearchService().configure(speed=2)
    with pytest.raises(TypeError, match="speed"):
        start_service(speed=2)


# -- scenarios: an experiment sets all it needs, so re-running its cell gives the same result -----
def test_a_scenario_sets_every_knob_named_and_the_rest_back_to_the_start_and_zeroes_the_counters():
    with start_service(latency=0.0, seed=5, capacity=4) as svc:
        svc.configure(jitter=0.3, failure_rate=0.5)  # left over from an earlier experiment
        asyncio.run(_get(svc, "left over"))
        svc.scenario(rate_limit=10)
        assert (svc.jitter, svc.failure_rate, svc.seed, svc.capacity, svc.rate_limit) == (0.0, 0.0, 5, 4, 10.0)
        assert svc.stats().requests == 0


def test_a_scenario_block_puts_the_previous_knobs_back_also_on_an_error():
    with start_service(latency=0.0) as svc:
        svc.configure(failure_rate=0.25)
        with pytest.raises(KeyError), svc.scenario(capacity=1, failure_rate=0.0) as same:
            assert same is svc and svc.capacity == 1
            raise KeyError("the experiment failed")
        assert (svc.capacity, svc.failure_rate) == (None, 0.25)


def test_a_bad_knob_in_a_scenario_changes_nothing():
    with start_service(latency=0.0) as svc:
        svc.configure(failure_rate=0.25)
        with pytest.raises(ValueError, match="capacity is the most requests in flight"):
            svc.scenario(failure_rate=0.0, capacity=0)
        assert (svc.failure_rate, svc.capacity) == (0.25, None)


def test_start_service_run_twice_leaves_one_service_running():
    first = start_service(latency=0.0)
    second = start_service(latency=0.0)
    try:
        assert not first.running and second.running
        assert current_service() is second
        assert service_threads(first.port) == []
    finally:
        second.stop()


def test_start_service_with_a_bad_knob_keeps_the_running_service():
    svc = start_service(latency=0.0)
    try:
        with pytest.raises(ValueError):
            start_service(capacity=0)
        assert svc.running and current_service() is svc
    finally:
        svc.stop()


def test_a_rate_limit_429_says_when_to_retry():
    with start_service(latency=0.0, rate_limit=2) as svc:

        async def main() -> list[httpx.Response]:
            async with make_client() as client:
                return [await client.get("/search/web", params={"q": f"q{i}"}) for i in range(3)]

        ok1, ok2, rejected = asyncio.run(main())
        assert (ok1.status_code, ok2.status_code, rejected.status_code) == (200, 200, 429)
        assert rejected.headers["Retry-After"] == "1"  # whole seconds, as HTTP says
        assert 0 < int(rejected.headers["retry-after-ms"]) <= 1000  # what the openai SDK reads
        assert "rate limit" in rejected.json()["error"]
        assert svc.stats().rejected == 1


def test_a_capacity_429_has_no_retry_delay_to_promise():
    with start_service(latency=0.2, capacity=1):

        async def main() -> list[httpx.Response]:
            async with make_client() as client:
                return await asyncio.gather(*(client.get("/search/web", params={"q": f"q{i}"}) for i in range(2)))

        statuses_ = sorted(r.status_code for r in asyncio.run(main()))
        assert statuses_ == [200, 429]


async def _get(svc: SearchService, query: str) -> int:
    async with make_client() as client:
        return (await client.get("/search/web", params={"q": query})).status_code


def test_a_scenario_latency_for_one_source_leaves_the_others_as_the_service_started():
    with start_service(latency={"web": 0.1, "api": 0.2}) as svc:
        svc.configure(latency={"web": 0.5})  # left over from an earlier experiment
        svc.scenario(latency={"api": 0.6})
        assert svc.latency == {"web": 0.1, "api": 0.6}


# -- the library's layers -----------------------------------------------------------------------
def _local_imports() -> dict[str, set[str]]:
    """agency_lib's modules and the agency_lib modules each imports (anywhere in it, lazily too)."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "agency_lib"
    modules = {p.stem: p for p in package.glob("*.py")}
    imports = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
        imports[name] = found & set(modules)
    return imports


def test_the_service_knows_nothing_of_its_clients_and_no_module_imports_in_a_circle():
    imports = _local_imports()
    assert not imports["service"] & {"tools", "clients", "agency"}, imports["service"]
    assert "timing" not in imports["graph_timing"]

    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(m == goal or (m not in seen and reaches(m, goal, seen | {m})) for m in imports[start])

    circles = sorted(m for m in imports if reaches(m, m))
    assert not circles, f"these modules import themselves through others: {circles}"
