"""Small graphs for notebook 10's experiments on LangGraph's Agent Server (``langgraph.json`` names them).

* ``nap``: one async node that sleeps ``seconds`` (default 0.2): the run whose queueing the
  lesson measures. It returns the wall-clock times (``time.time()``) its node started and
  ended, so a client on the same machine can draw when each run really ran.
* ``blocking``: the same with ``time.sleep``, the blocking call of notebook 04, which the
  server's blocking-call detector catches.
* ``busy``: the same as a CPU-bound loop, which the detector does not catch: it stalls the
  server's event loop, and every other run and the health check with it.

This module imports only LangGraph (not `agency_lib`, whose chat-model client takes a second
to import), so a server that serves only these graphs starts in about half the time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

__all__ = ["nap", "blocking", "busy"]


class NapState(TypedDict, total=False):
    seconds: float
    started: float  # wall-clock time (time.time()) the node started and ended: the run's running span
    ended: float


async def _nap(state: NapState) -> dict[str, Any]:
    started = time.time()
    await asyncio.sleep(state.get("seconds", 0.2))
    return {"started": started, "ended": time.time()}


async def _blocking_nap(state: NapState) -> dict[str, Any]:
    started = time.time()
    time.sleep(state.get("seconds", 0.2))  # noqa: ASYNC251 - notebook 04's pitfall: it blocks the server's loop
    return {"started": started, "ended": time.time()}


async def _busy_nap(state: NapState) -> dict[str, Any]:
    started = time.time()
    while time.time() - started < state.get("seconds", 0.2):  # CPU work: no system call to catch
        pass
    return {"started": started, "ended": time.time()}


def _one_node(name: str, fn) -> Any:
    g = StateGraph(NapState)
    g.add_node(name, fn)
    g.add_edge(START, name)
    g.add_edge(name, END)
    return g.compile()


nap = _one_node("nap", _nap)
blocking = _one_node("nap", _blocking_nap)
busy = _one_node("nap", _busy_nap)
