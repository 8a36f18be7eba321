"""The local search service: a real HTTP server on 127.0.0.1 for the web and API sources, and a chat model.

It runs Starlette on uvicorn in a thread of its own, with its own event loop, so a
notebook that blocks its own loop does not stall the service. Knobs:

* ``latency`` per source in seconds and ``jitter`` (a fraction: 0.2 = ±20 %);
* ``failure_rate``: the share of requests answered 503 (or 500), drawn from ``seed``;
* ``capacity``: requests in flight above it are answered 429 at once;
* ``rate_limit``: requests per second above it are answered 429, with a ``Retry-After``
  header (whole seconds, as HTTP says) and ``retry-after-ms`` (what the openai SDK reads).

The same server answers ``POST /v1/chat/completions`` like an OpenAI-compatible chat model
(`agency_lib.chat`), with knobs of its own named ``chat_...`` (``chat_ttft``, ``chat_capacity``, …)
and counters of its own (`SearchService.chat_stats`): ``ChatOpenAI(base_url=service.chat_url, ...)``.

`SearchService.scenario(...)` sets every knob at once (those not named go back to the
values the service started with) and zeroes the counters, so a notebook cell that starts
with it gives the same result however often, and in whatever order, it is run.

Latency and failures are a function of (seed, source, query, attempt), so a run is
reproducible whatever order concurrent requests arrive in, and a retry gets a fresh draw.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import math
import socket
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .chat import CHAT_DEFAULTS, ChatEndpoint, ChatStats
from .corpus import fake_results

__all__ = [
    "SearchService",
    "ServiceStats",
    "ChatStats",
    "Scenario",
    "start_service",
    "current_service",
    "on_stop",
    "HTTP_SOURCES",
]

HTTP_SOURCES = ("web", "api")
DEFAULT_LATENCY = {"web": 0.25, "api": 0.30}

_current: SearchService | None = None
_running: weakref.WeakSet[SearchService] = weakref.WeakSet()
_stop_hooks: list[Callable[[SearchService], None]] = []
CHAT_KNOBS = tuple(f"chat_{name}" for name in CHAT_DEFAULTS)


def on_stop(hook: Callable[[SearchService], None]) -> Callable[[SearchService], None]:
    """Call ``hook(service)`` whenever a service stops: the shared clients close their connections so.

    The service knows nothing of its clients; they register here.
    """
    if not callable(hook):
        raise TypeError(f"on_stop takes a function hook(service), not {hook!r}.")
    if hook not in _stop_hooks:
        _stop_hooks.append(hook)
    return hook


def current_service() -> SearchService:
    """The most recently started service that is still running; a clear error if none is."""
    if _current is None or not _current.running:
        raise RuntimeError(
            "No local search service is running. Start one first:\n"
            "    service = start_service()\n"
            "and stop it at the end with service.stop()."
        )
    return _current


@dataclass
class ServiceStats:
    """What the service saw since it started (or since `reset_stats`)."""

    requests: int = 0
    ok: int = 0
    rejected: int = 0  # 429: over capacity or over the rate limit
    failed: int = 0  # 500/503 injected failures
    peak_in_flight: int = 0
    by_source: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"requests {self.requests}: ok {self.ok}, rejected (429) {self.rejected}, "
            f"failed (5xx) {self.failed}; peak in flight {self.peak_in_flight}"
        )


def _unit(*parts: object) -> float:
    """A number in [0, 1) that depends only on the parts: reproducible randomness."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class _Server(uvicorn.Server):
    """uvicorn's server, woken by `wake_to_exit` at once instead of at its next 0.1 s tick."""

    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        while not self.should_exit:  # (no Date header to refresh: date_header=False)
            await self._wake.wait()

    def wake_to_exit(self) -> None:
        """Ask the server to stop, from any thread."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop closed in between: it has stopped anyway
                pass


class SearchService:
    """A running (or stoppable) local search service. Use `start_service()` to make one."""

    def __init__(
        self,
        *,
        latency: dict[str, float] | float | None = None,
        jitter: float = 0.0,
        seed: int = 0,
        failure_rate: float = 0.0,
        capacity: int | None = None,
        rate_limit: float | None = None,
        chat_ttft: float = CHAT_DEFAULTS["ttft"],
        chat_time_per_token: float = CHAT_DEFAULTS["time_per_token"],
        chat_capacity: int | None = None,
        chat_rate_limit: float | None = None,
        chat_tokens_per_minute: int | None = None,
        chat_failure_rate: float = 0.0,
        chat_retry_after: float = CHAT_DEFAULTS["retry_after"],
        host: str = "127.0.0.1",
        allow_remote: bool = False,
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1") and not allow_remote:
            raise ValueError(
                f"host={host!r} would expose the service beyond this machine. The course binds to "
                "127.0.0.1; pass allow_remote=True only if you really mean it (e.g. an instructor's demo)."
            )
        self.host = host
        self.port: int | None = None
        self._lock = threading.Lock()
        self._stats = ServiceStats()
        self._by_source: Counter[str] = Counter()
        self._attempts: Counter[tuple[str, str]] = Counter()
        self._in_flight = 0
        self._window: list[float] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.latency: dict[str, float] = dict(DEFAULT_LATENCY)
        self.jitter = 0.0
        self.seed = 0
        self.failure_rate = 0.0
        self.capacity: int | None = None
        self.rate_limit: float | None = None
        self.chat = ChatEndpoint()  # the chat model's knobs, counters and routes
        self.configure(
            latency=latency,
            jitter=jitter,
            seed=seed,
            failure_rate=failure_rate,
            capacity=capacity,
            rate_limit=rate_limit,
            chat_ttft=chat_ttft,
            chat_time_per_token=chat_time_per_token,
            chat_capacity=chat_capacity,
            chat_rate_limit=chat_rate_limit,
            chat_tokens_per_minute=chat_tokens_per_minute,
            chat_failure_rate=chat_failure_rate,
            chat_retry_after=chat_retry_after,
        )
        self._initial = self._knobs()  # what `scenario()` goes back to

    # -- knobs -------------------------------------------------------------------
    def configure(self, **knobs: Any) -> SearchService:
        """Change knobs on a running service: latency, jitter, seed, failure_rate, capacity, rate_limit,
        and the chat model's chat_ttft, chat_time_per_token, chat_capacity, chat_rate_limit,
        chat_tokens_per_minute, chat_failure_rate, chat_retry_after (see `agency_lib.chat`)."""
        known = {"latency", "jitter", "seed", "failure_rate", "capacity", "rate_limit", *CHAT_KNOBS}
        unknown = set(knobs) - known
        if unknown:
            raise TypeError(f"unknown knob(s) {sorted(unknown)}; the knobs are {sorted(known)}.")
        chat = {name.removeprefix("chat_"): v for name, v in knobs.items() if name in CHAT_KNOBS}
        ChatEndpoint().configure(**chat)  # checked first: a bad chat knob changes nothing
        if "latency" in knobs and knobs["latency"] is not None:
            lat = knobs["latency"]
            if isinstance(lat, (int, float)):
                lat = {s: float(lat) for s in HTTP_SOURCES}
            if not isinstance(lat, dict):
                raise TypeError("latency must be seconds (a number) or a dict like {'web': 0.25, 'api': 0.3}.")
            for src, sec in lat.items():
                if src not in HTTP_SOURCES:
                    raise ValueError(f"unknown source {src!r} in latency; the service's sources are {HTTP_SOURCES}.")
                if not isinstance(sec, (int, float)) or not 0 <= sec <= 30:
                    raise ValueError(f"latency[{src!r}] must be between 0 and 30 seconds, not {sec!r}.")
            self.latency = {**self.latency, **{k: float(v) for k, v in lat.items()}}
        if "jitter" in knobs:
            j = knobs["jitter"]
            if not isinstance(j, (int, float)) or not 0 <= j < 1:
                raise ValueError(f"jitter is a fraction of the latency in [0, 1) (0.2 means ±20 %), not {j!r}.")
            self.jitter = float(j)
        if "seed" in knobs:
            if not isinstance(knobs["seed"], int):
                raise TypeError(f"seed must be an int, not {knobs['seed']!r}.")
            self.seed = knobs["seed"]
        if "failure_rate" in knobs:
            f = knobs["failure_rate"]
            if not isinstance(f, (int, float)) or not 0 <= f <= 1:
                raise ValueError(f"failure_rate is a share of requests in [0, 1], not {f!r}.")
            self.failure_rate = float(f)
        if "capacity" in knobs:
            c = knobs["capacity"]
            if c is not None and (not isinstance(c, int) or isinstance(c, bool) or c < 1):
                raise ValueError(
                    f"capacity is the most requests in flight (an int ≥ 1) or None for no limit, not {c!r}."
                )
            self.capacity = c
        if "rate_limit" in knobs:
            r = knobs["rate_limit"]
            if r is not None and (not isinstance(r, (int, float)) or r <= 0):
                raise ValueError(f"rate_limit is requests per second (> 0) or None for no limit, not {r!r}.")
            self.rate_limit = None if r is None else float(r)
        self.chat.configure(**chat, seed=self.seed)
        return self

    def _knobs(self) -> dict[str, Any]:
        return {
            "latency": dict(self.latency),
            "jitter": self.jitter,
            "seed": self.seed,
            "failure_rate": self.failure_rate,
            "capacity": self.capacity,
            "rate_limit": self.rate_limit,
            **{f"chat_{name}": v for name, v in self.chat.knobs().items()},
        }

    def scenario(self, **knobs: Any) -> Scenario:
        """Set the whole scenario now: the knobs named, the others as the service started; counters zeroed.

        Use it at the top of an experiment, so re-running the cell gives the same result::

            service.scenario(capacity=10)             # from here on: capacity 10, nothing else changed

        or as a block, which puts the previous knobs back when it ends, also on an error::

            with service.scenario(failure_rate=0.5):
                ...
        """
        return Scenario(self, knobs)

    # -- life cycle --------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the server thread serves."""
        return self._thread is not None and self._thread.is_alive() and self.port is not None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8123``; an error if the service is not running."""
        if not self.running:
            raise RuntimeError("the service is not running: call start() (or use start_service()).")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def chat_url(self) -> str:
        """The chat model's base URL, for ``ChatOpenAI(base_url=service.chat_url, api_key="local", ...)``."""
        return f"{self.url}/v1"

    def start(self, timeout: float = 10.0) -> SearchService:
        """Start serving on an ephemeral port in a background thread; returns self."""
        global _current
        if self.running:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets whose proto is
        # IPPROTO_TCP, and accepted sockets inherit it. With proto 0, Nagle + delayed ACK add
        # ~40 ms to every request on a reused keep-alive connection.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, 0))
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app(),
            log_level="warning",
            access_log=False,
            lifespan="off",
            backlog=2048,
            timeout_graceful_shutdown=1,
            # Loopback only: no proxy in front, no Server/Date headers to build (~10 % less CPU a request).
            proxy_headers=False,
            server_header=False,
            date_header=False,
        )
        self._server = _Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"search-service:{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()  # the server closes it when it served; it never did
                raise RuntimeError("the local search service did not start; run `python -m agency_lib doctor`.")
            time.sleep(0.005)
        _current = self
        _running.add(self)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (open chat streams end at once), wait for the thread to end, then tell the
        `on_stop` hooks (the shared clients close their connections to this service).

        Safe to call twice.
        """
        global _current
        self.chat.shutdown()
        if self._server is not None:
            self._server.wake_to_exit()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"the search service thread did not stop within {timeout} s.")
        self._thread = None
        self._server = None
        _running.discard(self)
        if _current is self:  # another service still running (e.g. the notebook's, after the doctor's) stays current
            _current = next((s for s in list(_running) if s.running), None)
        for hook in list(_stop_hooks):
            hook(self)  # e.g. the shared clients: their connections went with the server

    def __enter__(self) -> SearchService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self.running else "stopped"
        return f"<SearchService {where} latency={self.latency} capacity={self.capacity}>"

    # -- counters ----------------------------------------------------------------
    def stats(self) -> ServiceStats:
        """A snapshot of the search counters (the chat model's are `chat_stats`)."""
        with self._lock:
            s = ServiceStats(**{**self._stats.__dict__, "by_source": dict(self._by_source)})
        return s

    def reset_stats(self) -> None:
        """Zero the counters (search and chat) and the retry attempt memory (so a rerun draws the same failures)."""
        with self._lock:
            self._stats = ServiceStats()
            self._by_source.clear()
            self._attempts.clear()
            self._window.clear()
        self.chat.reset_stats()

    def chat_stats(self) -> ChatStats:
        """A snapshot of the chat model's counters: requests, tokens, 429s, first-token times, ..."""
        return self.chat.stats()

    # -- the HTTP app ------------------------------------------------------------
    def _admit(self, source: str, query: str) -> tuple[int, float]:
        """Count the request and decide: (status, latency); for a rate-limit 429, the wait is the retry delay."""
        now = time.monotonic()
        with self._lock:
            st = self._stats
            st.requests += 1
            self._by_source[source] += 1
            if self.rate_limit is not None:
                self._window = [t for t in self._window if now - t < 1.0]
                if len(self._window) >= self.rate_limit:
                    st.rejected += 1
                    # The oldest request in the window leaves it first: then one more fits.
                    return 429, max(0.001, 1.0 - (now - self._window[0]))
                self._window.append(now)
            if self.capacity is not None and self._in_flight >= self.capacity:
                st.rejected += 1
                return 429, 0.0
            self._in_flight += 1
            st.peak_in_flight = max(st.peak_in_flight, self._in_flight)
            self._attempts[(source, query)] += 1
            attempt = self._attempts[(source, query)]
        base = self.latency[source]
        wait = base * (1 + self.jitter * (2 * _unit(self.seed, "jitter", source, query, attempt) - 1))
        fail = _unit(self.seed, "fail", source, query, attempt) < self.failure_rate
        return (503 if attempt % 2 else 500) if fail else 200, wait

    def _app(self) -> Starlette:
        async def search(request: Request) -> JSONResponse:
            source = request.path_params["source"]
            if source not in HTTP_SOURCES:
                return JSONResponse({"error": f"unknown source {source!r}; use one of {list(HTTP_SOURCES)}"}, 404)
            query = request.query_params.get("q", "").strip()
            if not query:
                return JSONResponse({"error": "missing query: add ?q=..."}, 400)
            limit_text = request.query_params.get("limit", "3")
            if not limit_text.isdigit():
                return JSONResponse({"error": "limit must be a whole number"}, 400)
            limit = int(limit_text)
            status, wait = self._admit(source, query)
            if status == 429 and wait:  # over the rate limit: say when a request will fit again
                headers = {"Retry-After": str(math.ceil(wait)), "retry-after-ms": str(math.ceil(wait * 1000))}
                return JSONResponse({"error": "too many requests: over the rate limit"}, 429, headers=headers)
            if status == 429:
                return JSONResponse({"error": "too many requests: over capacity"}, 429)
            try:
                await asyncio.sleep(wait)
                with self._lock:
                    if status == 200:
                        self._stats.ok += 1
                    else:
                        self._stats.failed += 1
            finally:
                with self._lock:
                    self._in_flight -= 1
            if status != 200:
                return JSONResponse({"error": "injected failure: try again"}, status)
            return JSONResponse({"source": source, "query": query, "results": fake_results(source, query, limit)})

        async def health(request: Request) -> JSONResponse:
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/search/{source}", search), Route("/health", health), *self.chat.routes()])


class Scenario:
    """The knobs of one experiment, set when made; as a ``with`` block, the previous knobs come back after it."""

    def __init__(self, service: SearchService, knobs: dict[str, Any]) -> None:
        self.service = service
        self._before = service._knobs()
        wanted = {**service._initial, **knobs}
        if isinstance(knobs.get("latency"), dict):  # {"api": 0.6}: the other sources as the service started
            wanted["latency"] = {**service._initial["latency"], **knobs["latency"]}
        SearchService().configure(
            **wanted
        )  # check every knob first, on a service never started: a bad one changes nothing
        service.configure(**wanted)
        service.reset_stats()

    def __enter__(self) -> SearchService:
        return self.service

    def __exit__(self, *exc: object) -> None:
        self.service.configure(**self._before)

    def __repr__(self) -> str:
        return f"<Scenario of {self.service!r}>"


_started: SearchService | None = None  # the last one start_service() made


def start_service(**knobs: Any) -> SearchService:
    """Start a local search service (see `SearchService` for the knobs) and make it current.

    Run twice (a setup cell run again), it stops the service it started before, so one
    kernel never holds more than one of them. For two at once, use ``SearchService(...).start()``.

    >>> service = start_service(latency={"web": 0.25, "api": 0.3}, seed=7)  # doctest: +SKIP
    >>> service.stop()                                                        # doctest: +SKIP
    """
    global _started
    service = SearchService(**knobs)  # bad knobs raise here, before the old service is stopped
    if _started is not None and _started.running:
        _started.stop()
    _started = service.start()
    return service


@atexit.register
def _stop_all() -> None:
    for svc in list(_running):
        try:
            svc.stop(timeout=1)
        except Exception:
            pass
