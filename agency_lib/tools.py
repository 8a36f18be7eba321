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
replaced by a new one), and ``await close_clients()`` closes it at any time: that plumbing,
and `make_client`, live in `agency_lib.clients`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from .clients import DEFAULT_TIMEOUT, NO_TLS, close_clients, make_client, shared_client
from .kb import _check_limit, _match_expr, query_kb, query_kb_blocking
from .service import current_service
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


# -- blocking twins: for the "blocking call inside async def" lessons ------------------
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


# -- inside the tools: checks, the HTTP call, recording --------------------------------------
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


async def _http(source: str, query: str, client: httpx.AsyncClient | None) -> list[Finding]:
    query = _check_query(query)

    async def work() -> list[Finding]:
        c = client or await shared_client("search")
        response = await c.get(f"/search/{source}", params={"q": query})
        _raise_for(source, query, response)
        return _findings(source, query, response.json()["results"])

    return await _recorded(source, query, work)


def _http_blocking(source: str, query: str) -> list[Finding]:
    query = _check_query(query)

    def work() -> list[Finding]:
        with httpx.Client(base_url=current_service().url, timeout=DEFAULT_TIMEOUT, verify=NO_TLS) as c:
            response = c.get(f"/search/{source}", params={"q": query})
        _raise_for(source, query, response)
        return _findings(source, query, response.json()["results"])

    return _recorded_blocking(source, query, work)


def _raise_for(source: str, query: str, response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise ServiceError(source, query, response)


def _findings(source: str, query: str, payload: list[dict[str, Any]]) -> list[Finding]:
    out = []
    for item in payload:
        title = item.get("title") or f"{item.get('field')}: {item.get('value')}"
        out.append({"source": source, "query": query, "title": str(title), **item})
    return out


async def _recorded(source: str, query: str, work: Callable[[], Awaitable[list[Finding]]]) -> list[Finding]:
    rec = active_recorder()
    if rec is None:
        return await work()
    async with rec.span(f"{source}: {query}", group=source):
        return await work()


def _recorded_blocking(source: str, query: str, work: Callable[[], list[Finding]]) -> list[Finding]:
    rec = active_recorder()
    if rec is None:
        return work()
    with rec.span_sync(f"{source}: {query}", group=source):
        return work()
