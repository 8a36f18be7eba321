"""The HTTP clients that talk to the local service: made with explicit limits, shared, and closed.

* `make_client` makes an ``httpx.AsyncClient`` for the current service, with connection limits
  and timeouts you choose: ``async with make_client(max_connections=10) as client:``.
* Without ``client=``, the tools (and the agency's Writer and Editor) share one client per event
  loop and per use (``"search"``, ``"chat"``), made on first use so its connections are reused.
  When its service stops (or a new one becomes current) it is closed; ``await close_clients()``
  closes this loop's clients at any time.

The service knows nothing of its clients: this module asks it, with `service.on_stop`, to be
told when a service stops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import httpx

from .service import SearchService, current_service, on_stop

__all__ = ["make_client", "shared_client", "close_clients", "DEFAULT_LIMITS", "DEFAULT_TIMEOUT"]

DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
DEFAULT_TIMEOUT = httpx.Timeout(5.0)
# The service speaks plain HTTP on loopback: no TLS, so clients skip loading the CA
# bundle (which costs ~20 ms a client and would show up on the Gantt charts).
NO_TLS = False
PURPOSES = ("search", "chat")


def _check_seconds(value: object, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 30:
        raise ValueError(f"{name} must be a number of seconds from 0 to 30, not {value!r}.")
    return float(value)


def make_client(
    max_connections: int = 100, timeout: float = 5.0, pool_timeout: float | None = None
) -> httpx.AsyncClient:
    """An async client for the current service, with explicit connection limits and timeouts.

    Use it as ``async with make_client(max_connections=10) as client:`` and pass
    ``client=client`` to `web_search` / `api_lookup`.
    """
    if not isinstance(max_connections, int) or isinstance(max_connections, bool) or max_connections < 1:
        raise ValueError(f"max_connections must be an int ≥ 1, not {max_connections!r}.")
    _check_seconds(timeout, "timeout")
    if pool_timeout is not None:
        _check_seconds(pool_timeout, "pool_timeout")
    return httpx.AsyncClient(
        base_url=current_service().url,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=min(20, max_connections)),
        timeout=httpx.Timeout(timeout, pool=timeout if pool_timeout is None else pool_timeout),
        verify=NO_TLS,
    )


# The shared clients: one per (event loop, purpose), each with the service it talks to. The lock
# is for SearchService.stop(), which may run on another thread than the loops'.
_clients: dict[tuple[asyncio.AbstractEventLoop, str], tuple[SearchService, httpx.AsyncClient]] = {}
_clients_lock = threading.RLock()  # reentrant: a closing that is already done runs _forget_closing at once
# Closings that a service's stop() scheduled, each with its client's loop, kept until done.
_closing: dict[concurrent.futures.Future[None], asyncio.AbstractEventLoop] = {}


async def shared_client(purpose: str = "search") -> httpx.AsyncClient:
    """This loop's shared client for `purpose` ('search' or 'chat'), talking to the current service."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}, not {purpose!r}.")
    service = current_service()
    loop = asyncio.get_running_loop()
    with _clients_lock:
        for ended in [key for key in _clients if key[0].is_closed()]:
            del _clients[ended]  # nothing runs on a closed loop any more: let its client go
        owner, client = _clients.get((loop, purpose), (None, None))
        if client is not None and owner is service and not client.is_closed:
            return client
        fresh = httpx.AsyncClient(base_url=service.url, limits=DEFAULT_LIMITS, timeout=DEFAULT_TIMEOUT, verify=NO_TLS)
        _clients[loop, purpose] = (service, fresh)  # in place before the await below: concurrent calls all get `fresh`
    if client is not None:
        await client.aclose()  # it talked to a service that was replaced
    return fresh


async def close_clients() -> None:
    """Close the shared HTTP clients on this event loop (the next call makes new ones).

    Stopping the service closes them too, on the loop's next turn. In a script, await this
    before ``async def main()`` returns, so the closing is done before ``asyncio.run`` ends.
    """
    loop = asyncio.get_running_loop()
    with _clients_lock:
        clients = [_clients.pop(key)[1] for key in list(_clients) if key[0] is loop]
        scheduled = [f for f, lp in _closing.items() if lp is loop]
    for client in clients:
        await client.aclose()
    # and the closings that a stopped service scheduled on this loop: finish them now
    await asyncio.gather(*(asyncio.wrap_future(f) for f in scheduled))


@on_stop
def _close_clients_of(service: SearchService) -> None:
    """Close the shared clients of a service that stopped (its `on_stop` hook).

    stop() is plain code and cannot await, so each client is closed by a task on its own
    running loop (in a notebook: right after the cell). A client whose loop no longer runs
    is only dropped: no code runs on that loop to close it.
    """
    with _clients_lock:
        for key, (owner, client) in list(_clients.items()):
            if owner is not service:
                continue
            del _clients[key]
            loop = key[0]
            if loop.is_running():
                closing = asyncio.run_coroutine_threadsafe(client.aclose(), loop)  # any thread may stop a service
                _closing[closing] = loop
                closing.add_done_callback(_forget_closing)


def _forget_closing(closing: concurrent.futures.Future[None]) -> None:
    with _clients_lock:
        _closing.pop(closing, None)
