"""The Researcher's tools: web search, knowledge base, external API, async and blocking.

* ``web_search`` and ``api_lookup`` are real HTTP calls to the local search service
  (start it with ``start_service()``), through ``httpx.AsyncClient``; their blocking
  twins use ``httpx.Client``.
* ``kb_search`` queries the SQLite knowledge base through aiosqlite, after a
  ``latency`` that stands for the network hop to a database server.
* ``simulated_search`` only sleeps: the first-contact tool of notebook 01.

Every tool returns a list of findings (dicts with ``source``, ``query``, ``title``) and,
while a `Recorder` is active (``with rec:``), records its own span in it.

Without ``client=``, the HTTP tools share one ``httpx.AsyncClient`` per event loop, made on
first use, so its connections are reused. It is closed when its service stops (or is
replaced by a new one), and ``await close_clients()`` closes it at any time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from .kb import _check_limit, _match_expr, query_kb, query_kb_blocking
from .service import SearchService, current_service
from .timing import active_recorder

__all__ = [
    "SOURCES",
    "SOURCE_LATENCY",
    "ServiceError",
    "web_search",
    "api_lookup",
    "kb_search",
    "search",
    "web_search_blocking",
    "api_lookup_blocking",
    "kb_search_blocking",
    "search_blocking",
    "simulated_search",
    "simulated_search_blocking",
    "make_client",
    "close_clients",
]

SOURCES = ("web", "kb", "api")
#: The seed scenario's relative delays 2.5 : 1.8 : 3.0, in tenths of a second.
SOURCE_LATENCY = {"web": 0.25, "kb": 0.18, "api": 0.30}
Finding = dict[str, Any]

DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
DEFAULT_TIMEOUT = httpx.Timeout(5.0)
# The service speaks plain HTTP on loopback: no TLS, so clients skip loading the CA
# bundle (which costs ~20 ms a client and would show up on the Gantt charts).
_NO_TLS = False


class ServiceError(httpx.HTTPStatusError):
    """The search service answered with an error status (429, 5xx). Short message, no URL."""

    def __init__(self, source: str, query: str, response: httpx.Response) -> None:
        reason = {
            429: "rejected: the service is over its capacity or rate limit",
            500: "failed: an injected server error; a retry may succeed",
            503: "failed: the service is unavailable; a retry may succeed",
        }.get(response.status_code, "failed")
        super().__init__(
            f"{source} search for {query!r} {reason} (HTTP {response.status_code})",
            request=response.request,
            response=response,
        )
        self.status_code = response.status_code


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; the sources are {SOURCES}.")


def _check_query(query: object) -> str:
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"query must be a non-empty string, e.g. 'async python', not {query!r}.")
    return query.strip()


def _check_delay(delay: object, name: str = "latency") -> float:
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 <= delay <= 30:
        raise ValueError(f"{name} must be a number of seconds from 0 to 30, not {delay!r}.")
    return float(delay)


def make_client(
    max_connections: int = 100, timeout: float = 5.0, pool_timeout: float | None = None
) -> httpx.AsyncClient:
    """An async client for the current service, with explicit connection limits and timeouts.

    Use it as ``async with make_client(max_connections=10) as client:`` and pass
    ``client=client`` to `web_search` / `api_lookup`.
    """
    if not isinstance(max_connections, int) or isinstance(max_connections, bool) or max_connections < 1:
        raise ValueError(f"max_connections must be an int ≥ 1, not {max_connections!r}.")
    _check_delay(timeout, "timeout")
    if pool_timeout is not None:
        _check_delay(pool_timeout, "pool_timeout")
    return httpx.AsyncClient(
        base_url=current_service().url,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=min(20, max_connections)),
        timeout=httpx.Timeout(timeout, pool=timeout if pool_timeout is None else pool_timeout),
        verify=_NO_TLS,
    )


# The shared clients: one per event loop, each with the service it talks to. The lock is for
# SearchService.stop(), which may run on another thread than the loops'.
_clients: dict[asyncio.AbstractEventLoop, tuple[SearchService, httpx.AsyncClient]] = {}
_clients_lock = threading.RLock()  # reentrant: a closing that is already done runs _forget_closing at once
# Closings that a service's stop() scheduled, each with its client's loop, kept until done.
_closing: dict[concurrent.futures.Future[None], asyncio.AbstractEventLoop] = {}


async def _shared_client() -> httpx.AsyncClient:
    service = current_service()
    loop = asyncio.get_running_loop()
    with _clients_lock:
        for ended in [lp for lp in _clients if lp.is_closed()]:
            del _clients[ended]  # nothing runs on a closed loop any more: let its client go
        owner, client = _clients.get(loop, (None, None))
        if client is not None and owner is service and not client.is_closed:
            return client
        fresh = httpx.AsyncClient(base_url=service.url, limits=DEFAULT_LIMITS, timeout=DEFAULT_TIMEOUT, verify=_NO_TLS)
        _clients[loop] = (service, fresh)  # in place before the await below: concurrent calls all get `fresh`
    if client is not None:
        await client.aclose()  # it talked to a service that was replaced
    return fresh


async def close_clients() -> None:
    """Close the tools' shared HTTP client on this event loop (the next call makes a new one).

    Stopping the service closes it too, on the loop's next turn. In a script, await this
    before ``async def main()`` returns, so the closing is done before ``asyncio.run`` ends.
    """
    loop = asyncio.get_running_loop()
    with _clients_lock:
        _, client = _clients.pop(loop, (None, None))
        scheduled = [f for f, lp in _closing.items() if lp is loop]
    if client is not None:
        await client.aclose()
    # and the closings that a stopped service scheduled on this loop: finish them now
    await asyncio.gather(*(asyncio.wrap_future(f) for f in scheduled))


def _close_clients_of(service: SearchService) -> None:
    """Close the shared clients of a service that stopped; `SearchService.stop` calls this.

    stop() is plain code and cannot await, so each client is closed by a task on its own
    running loop (in a notebook: right after the cell). A client whose loop no longer runs
    is only dropped: no code runs on that loop to close it.
    """
    with _clients_lock:
        for loop, (owner, client) in list(_clients.items()):
            if owner is not service:
                continue
            del _clients[loop]
            if loop.is_running():
                closing = asyncio.run_coroutine_threadsafe(client.aclose(), loop)  # any thread may stop a service
                _closing[closing] = loop
                closing.add_done_callback(_forget_closing)


def _forget_closing(closing: concurrent.futures.Future[None]) -> None:
    with _clients_lock:
        _closing.pop(closing, None)


async def _recorded(source: str, query: str, work: Callable[[], Awaitable[list[Finding]]]) -> list[Finding]:
    rec = active_recorder()
    if rec is None:
        return await work()
    async with rec.span(f"{source}: {query}", group=source):
        return await work()


def _findings(source: str, query: str, payload: list[dict[str, Any]]) -> list[Finding]:
    out = []
    for item in payload:
        title = item.get("title") or f"{item.get('field')}: {item.get('value')}"
        out.append({"source": source, "query": query, "title": str(title), **item})
    return out


def _raise_for(source: str, query: str, response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise ServiceError(source, query, response)


async def _http(source: str, query: str, client: httpx.AsyncClient | None) -> list[Finding]:
    query = _check_query(query)

    async def work() -> list[Finding]:
        c = client or await _shared_client()
        response = await c.get(f"/search/{source}", params={"q": query})
        _raise_for(source, query, response)
        return _findings(source, query, response.json()["results"])

    return await _recorded(source, query, work)


async def web_search(query: str, *, client: httpx.AsyncClient | None = None) -> list[Finding]:
    """Search the (local) web: one real HTTP request to the search service."""
    return await _http("web", query, client)


async def api_lookup(query: str, *, client: httpx.AsyncClient | None = None) -> list[Finding]:
    """Ask the (local) external API about a topic: one real HTTP request."""
    return await _http("api", query, client)


async def kb_search(query: str, *, latency: float = SOURCE_LATENCY["kb"], limit: int = 3) -> list[Finding]:
    """Search the knowledge base: `latency` seconds of network hop, then a real FTS5 query."""
    query = _check_query(query)
    latency = _check_delay(latency)
    _match_expr(query)  # checked here, not after the latency: a bad query fails at once
    _check_limit(limit)

    async def work() -> list[Finding]:
        await asyncio.sleep(latency)
        hits = await query_kb(query, limit=limit)
        return [{"source": "kb", "query": query, **hit.__dict__} for hit in hits]

    return await _recorded("kb", query, work)


async def search(source: str, query: str, *, client: httpx.AsyncClient | None = None) -> list[Finding]:
    """Dispatch to the tool for `source` ('web', 'kb' or 'api')."""
    _check_source(source)
    if source == "kb":
        return await kb_search(query)
    return await _http(source, query, client)


# -- blocking twins: for the "blocking call inside async def" lessons ------------------
def _recorded_blocking(source: str, query: str, work: Callable[[], list[Finding]]) -> list[Finding]:
    rec = active_recorder()
    if rec is None:
        return work()
    with rec.span_sync(f"{source}: {query}", group=source):
        return work()


def _http_blocking(source: str, query: str) -> list[Finding]:
    query = _check_query(query)

    def work() -> list[Finding]:
        with httpx.Client(base_url=current_service().url, timeout=DEFAULT_TIMEOUT, verify=_NO_TLS) as c:
            response = c.get(f"/search/{source}", params={"q": query})
        _raise_for(source, query, response)
        return _findings(source, query, response.json()["results"])

    return _recorded_blocking(source, query, work)


def web_search_blocking(query: str) -> list[Finding]:
    """`web_search` with a blocking `httpx.Client`: the calling thread waits."""
    return _http_blocking("web", query)


def api_lookup_blocking(query: str) -> list[Finding]:
    """`api_lookup` with a blocking `httpx.Client`: the calling thread waits."""
    return _http_blocking("api", query)


def kb_search_blocking(query: str, *, latency: float = SOURCE_LATENCY["kb"], limit: int = 3) -> list[Finding]:
    """`kb_search` with `time.sleep` and plain sqlite3: the calling thread waits."""
    query = _check_query(query)
    latency = _check_delay(latency)
    _match_expr(query)
    _check_limit(limit)

    def work() -> list[Finding]:
        time.sleep(latency)
        return [{"source": "kb", "query": query, **hit.__dict__} for hit in query_kb_blocking(query, limit=limit)]

    return _recorded_blocking("kb", query, work)


def search_blocking(source: str, query: str) -> list[Finding]:
    """Dispatch to the blocking tool for `source`."""
    _check_source(source)
    return kb_search_blocking(query) if source == "kb" else _http_blocking(source, query)


# -- simulated: sleep only --------------------------------------------------------------
async def simulated_search(source: str, query: str, delay: float | None = None) -> list[Finding]:
    """Pretend to search: ``await asyncio.sleep(delay)`` (default: the source's latency)."""
    _check_source(source)
    query = _check_query(query)
    wait = SOURCE_LATENCY[source] if delay is None else _check_delay(delay, "delay")

    async def work() -> list[Finding]:
        await asyncio.sleep(wait)
        return [{"source": source, "query": query, "title": f"{source} result for {query}"}]

    return await _recorded(source, query, work)


def simulated_search_blocking(source: str, query: str, delay: float | None = None) -> list[Finding]:
    """Pretend to search with ``time.sleep(delay)``: blocks the calling thread."""
    _check_source(source)
    query = _check_query(query)
    wait = SOURCE_LATENCY[source] if delay is None else _check_delay(delay, "delay")

    def work() -> list[Finding]:
        time.sleep(wait)
        return [{"source": source, "query": query, "title": f"{source} result for {query}"}]

    return _recorded_blocking(source, query, work)
