"""Self-checks for notebook 10, *Serving the agency*.

* `check_jobs_per_worker(jobs, users=..., run_seconds=..., budget_seconds=...)`: the smallest
  ``--n-jobs-per-worker`` that answers a burst of `users` runs within the budget, when each
  run takes `run_seconds` and a worker runs `jobs` of them at a time (in rounds).
* `await check_stream_then_cancel(fn, service)`: the learner's ``stream_then_cancel(client,
  thread_id)`` streams an agency run and cancels it at its first progress event; the check
  serves the agency, calls it, and reads what the run and the search service then say.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from . import Feedback, failed, passed

__all__ = ["rounds", "check_jobs_per_worker", "check_stream_then_cancel"]


def rounds(users: int, jobs: int) -> int:
    """How many rounds a worker with `jobs` slots needs for `users` runs that arrive at once."""
    return math.ceil(users / jobs)


def check_jobs_per_worker(jobs: object, *, users: int, run_seconds: float, budget_seconds: float) -> Feedback:
    """Is `jobs` the smallest number of job slots that runs `users` runs within `budget_seconds`?"""
    if not isinstance(jobs, int) or isinstance(jobs, bool):
        return failed(
            f"jobs_per_worker is {jobs!r}: it should be a whole number of job slots (an int), e.g. 2.",
            "langgraph dev --n-jobs-per-worker takes an int.",
        )
    if jobs < 1:
        return failed(f"jobs_per_worker is {jobs}: a worker needs at least one job slot.")
    need = next(k for k in range(1, users + 1) if rounds(users, k) * run_seconds <= budget_seconds)
    took = rounds(users, jobs) * run_seconds
    if took > budget_seconds:
        return failed(
            f"with {jobs} slot(s), {users} runs go in {rounds(users, jobs)} rounds of {run_seconds:g} s: "
            f"the last one ends {took:.2f} s after the first starts, over the budget of {budget_seconds:g} s.",
            "how many rounds of runs fit in the budget? Then how many runs must each round hold?",
        )
    if jobs > need:
        return failed(
            f"{jobs} slots meet the budget, but so do {need}: {users} runs in {rounds(users, need)} rounds "
            f"take {rounds(users, need) * run_seconds:.2f} s.",
            "the question asks for the smallest number: each slot is one more run the worker holds in memory, "
            "and one more caller of the search service at once.",
        )
    return passed(
        f"{jobs} slots: {users} runs in {rounds(users, jobs)} rounds, {took:.2f} s ≤ {budget_seconds:g} s; "
        f"{jobs - 1} would need {rounds(users, jobs - 1) if jobs > 1 else '-'} rounds."
    )


class _Untouched:
    """A stand-in client: using it at all proves the function does something."""

    touched = False

    def __getattr__(self, name: str) -> Any:
        type(self).touched = True
        raise _Touched(name)


class _Touched(Exception):
    pass


async def check_stream_then_cancel(fn: Callable[..., Any], service: Any, server: Any = None) -> Feedback:
    """Run ``run_id = await fn(client, thread_id)`` on `server` (a running `AgentServer` serving the agency;
    default: one started for the check), and check the run was cancelled early."""
    from langgraph_sdk import get_client

    from ..server import agent_server

    if not callable(fn) or not inspect.iscoroutinefunction(fn):
        return failed(
            f"stream_then_cancel is {fn!r}: it should be an async def (it awaits the client).",
            "async def stream_then_cancel(client, thread_id): ...",
        )
    _Untouched.touched = False
    try:
        await fn(_Untouched(), "no-thread")
    except _Touched:
        pass
    except Exception:
        pass  # it used the client in a way the stand-in cannot follow: try it for real
    if not _Untouched.touched:
        return failed(
            "stream_then_cancel did not use the client: write the body first.",
            "async for part in client.runs.stream(thread_id, 'agency', input=..., stream_mode='custom'): ...",
        )
    if server is not None and not getattr(server, "running", False):
        return failed(f"server is {server!r}: pass the running Agent Server (or none, and the check starts one).")
    # slow web and API answers (0.6 s), so the cancel at the kb's report (0.18 s) comes well before a slot frees
    with service.scenario(latency={"web": 0.6, "api": 0.6}):
        with nullcontext(server) if server is not None else agent_server(["agency"], search_url=service.url) as server:
            client = get_client(url=server.url)
            thread_id = (await client.threads.create())["thread_id"]
            run_id = await asyncio.wait_for(fn(client, thread_id), 30)
            if not isinstance(run_id, str):
                return failed(
                    f"stream_then_cancel returned {run_id!r}, not the run's id.",
                    "the first event of a stream is 'metadata': part.data['run_id'] is the id.",
                )
            await client.runs.join(thread_id, run_id)
            run = await client.runs.get(thread_id, run_id)
            await asyncio.sleep(0.3)  # requests the server sent before the cancel may still be answered
            searches, chats = service.stats().requests, service.chat_stats().requests
    if run["status"] == "success":
        return failed(
            "the run finished (status 'success'): it was not cancelled, or only after it ended.",
            "cancel as soon as the first 'custom' event arrives: await client.runs.cancel(thread_id, run_id).",
        )
    if run["status"] != "interrupted":
        return failed(f"the run ended with status {run['status']!r}, not 'interrupted' (what a cancel gives).")
    if chats:
        return failed(
            f"the run was cancelled, but only after the Writer asked the chat model ({chats} request(s)).",
            "cancel at the first 'custom' event (a Researcher reporting), not at the end of the stream.",
        )
    return passed(
        f"the run is 'interrupted'; the search service still saw {searches} search requests "
        "(those sent before the cancel) and 0 chat requests: the Writer never ran."
    )
