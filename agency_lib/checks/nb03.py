"""Self-checks for notebook 03 (parallel graphs): the super-steps, a `Send` fan-out and the reducers a step needs.

* `await check_writer_runs(prediction, app)`: runs the learner's graph and compares how
  many times its ``writer`` node ran with the learner's prediction, step by step.
* `check_fanout(fn)`: calls the learner's routing function on sample states (queries
  in ``state["queries"]``, sources in ``state["sources"]``) and says what is wrong with
  the `Send` list (count, node name, payload keys, missing pairs).
* `await check_report_state(State)`: builds three parallel branches on the learner's
  state class, runs them, and explains the error or the wrong merge it gets.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections import Counter
from collections.abc import Callable
from typing import Any

from . import Feedback, failed, passed

__all__ = ["check_writer_runs", "check_fanout", "check_report_state", "SAMPLE_STATES", "FANOUT_NODE"]

_SOURCES = ("web", "kb", "api")
#: The states the fan-out check calls the function with, and the node every Send must go to.
SAMPLE_STATES = (
    {"topic": "async python", "queries": ["async python", "async python pitfalls"], "sources": list(_SOURCES)},
    {"topic": "async python", "queries": ["async python benchmarks"], "sources": ["web", "api"]},
)
FANOUT_NODE = "search_one"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _steps(numbers: list[int]) -> str:
    """[3, 4, 5] -> 'super-steps 3, 4 and 5'."""
    words = [str(n) for n in numbers]
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return ("super-step " if len(words) == 1 else "super-steps ") + listed


async def check_writer_runs(prediction: Any, app: Any, inputs: dict[str, Any] | None = None) -> Feedback:
    """Run ``app`` (a compiled graph with a ``writer`` node) and compare its Writer runs with ``prediction``.

    The prediction is checked before anything runs, so a missing one gives away nothing.
    """
    if prediction is None:
        return failed(
            "no prediction yet: my_prediction is None.",
            "write how many times you think the Writer runs (a whole number) in my_prediction, "
            "then run this cell again: it runs the graph and compares.",
        )
    if isinstance(prediction, bool) or not isinstance(prediction, int):
        return failed(
            f"my_prediction is {type(prediction).__name__} {prediction!r:.40}, not a whole number.",
            "a count of runs: my_prediction = 1, 2, 3, …",
        )
    if not (hasattr(app, "astream") and hasattr(app, "nodes")):
        raise TypeError(f"check_writer_runs expects the compiled graph (graph.compile()), not {app!r:.60}.")
    if "writer" not in app.nodes:
        raise ValueError(f"the graph has no node named 'writer' (its nodes: {sorted(app.nodes)}).")
    ran: dict[str, list[int]] = {}  # node -> the super-steps it ran in
    async for event in app.astream(inputs or {"topic": "async python"}, stream_mode="debug"):
        if event["type"] == "task":
            ran.setdefault(event["payload"]["name"], []).append(event["step"])
    writer_steps = ran.get("writer", [])
    n = len(writer_steps)
    builder = getattr(app, "builder", None)
    before = sorted({a for a, b in getattr(builder, "edges", ()) if b == "writer" and a in ran})
    joins = [list(starts) for starts, end in getattr(builder, "waiting_edges", ()) if end == "writer"]
    why = [f"{node} ran in {_steps(ran[node])}" for node in sorted(before, key=lambda x: ran[x])]
    why += [f"a join waits for all of {', '.join(starts)}" for starts in joins]
    where = "; ".join(why) or "nothing leads into it"
    runs = _plural(n, "time", "times")
    if prediction == n:
        rule = (
            "once in the step after each step in which one of its plain-edge predecessors ran"
            if before and not joins
            else "in the step after its predecessors ran"
        )
        return passed(f"the Writer ran {runs}, in {_steps(writer_steps)}: {rule} ({where}).")
    return failed(
        f"you predicted {prediction}; the Writer ran {runs}, in {_steps(writer_steps)}.",
        f"a plain edge a → writer starts the Writer in the step after a ran ({where}); "
        "a super-step runs every node triggered by the one before, so each branch end that "
        "lands in a different step triggers the Writer again.",
    )


def _inspect_sends(result: Any, queries: list[str], sources: list[str]) -> Feedback | None:
    """None when `result` is the right list of Sends for `queries` × `sources`, else what is wrong."""
    from langgraph.types import Send

    want = Counter((s, q) for q in queries for s in sources)
    n_want = sum(want.values())
    sample = f"state['queries'] = {queries!r} and state['sources'] = {sources!r}"
    pairs = f"{_plural(len(queries), 'query', 'queries')} × {_plural(len(sources), 'source', 'sources')}"
    if inspect.iscoroutine(result):
        result.close()
        return failed(
            "fan_out returned a coroutine: it is an `async def`.",
            "a fan-out only builds Send objects, it awaits nothing: write it with plain `def`.",
        )
    if isinstance(result, Send):
        return failed(
            "fan_out returned one Send, not a list of them.",
            "return a list: [Send(...) for query in ... for source in ...].",
        )
    if not isinstance(result, (list, tuple)):
        return failed(
            f"fan_out returned {type(result).__name__} {result!r:.60}, not a list of Send.",
            "return a list with one Send(node, payload) per (query, source) pair.",
        )
    if not result:
        return failed(
            f"fan_out returned an empty list for {sample}: no task would run.",
            f"expected {n_want} Sends: {pairs}.",
        )
    for i, item in enumerate(result):
        if not isinstance(item, Send):
            return failed(
                f"item {i} is {type(item).__name__} {item!r:.60}, not a Send.",
                f"wrap each task: Send({FANOUT_NODE!r}, {{'source': source, 'query': query}}) "
                "(from langgraph.types import Send).",
            )
    wrong_node = sorted({s.node for s in result if s.node != FANOUT_NODE})
    if wrong_node:
        return failed(
            f"Sends go to node {wrong_node[0]!r}; the graph's task node is {FANOUT_NODE!r}.",
            f"the first argument of Send is the node's name: Send({FANOUT_NODE!r}, payload).",
        )
    for i, s in enumerate(result):
        if not isinstance(s.arg, dict):
            return failed(
                f"Send {i} carries {type(s.arg).__name__} {s.arg!r:.60}, not a dict payload.",
                "the payload is the task's whole input: a dict like {'source': 'web', 'query': 'async python'}.",
            )
        missing = [k for k in ("source", "query") if k not in s.arg]
        if missing:
            return failed(
                f"Send {i}'s payload {s.arg!r:.80} has no {' and no '.join(map(repr, missing))} key.",
                "search_one reads task['source'] and task['query']: put both in every payload.",
            )
    got = Counter((s.arg["source"], s.arg["query"]) for s in result)
    if len(result) != n_want:
        return failed(
            f"fan_out returned {len(result)} Sends for {sample}; expected {n_want} ({pairs}).",
            "loop over both, from the state: for query in state['queries'] for source in state['sources'].",
        )
    if got != want:
        missing_pairs = sorted((want - got).elements())
        extra = sorted((got - want).elements())
        what = f"missing {missing_pairs[:3]}" if missing_pairs else ""
        what += ("; " if what and extra else "") + (f"unexpected {extra[:3]}" if extra else "")
        return failed(
            f"the (source, query) pairs are not one per query × source: {what}.",
            "pair each source in state['sources'] with each query in state['queries'], exactly once.",
        )
    return None


def check_fanout(fn: Callable[[dict[str, Any]], Any]) -> Feedback:
    """Check a fan-out: one ``Send("search_one", {"source", "query"})`` per query × source of the state."""
    if not callable(fn):
        raise TypeError(f"check_fanout expects your fan-out function itself, e.g. check_fanout(fan_out), not {fn!r}.")
    for sample in SAMPLE_STATES:
        state = {k: list(v) if isinstance(v, list) else v for k, v in sample.items()}  # a fresh copy each time
        try:
            result = fn(state)
        except Exception as exc:  # the learner's code failed: say how
            return failed(
                f"fan_out raised {type(exc).__name__}: {exc}",
                "it receives the graph state (a dict): read state['queries'] and state['sources'].",
            )
        problem = _inspect_sends(result, sample["queries"], sample["sources"])
        if problem is not None:
            return problem
    return passed(
        f"fan_out returns one Send({FANOUT_NODE!r}, {{source, query}}) per query × source: "
        "6 tasks for 2 queries × 3 sources, 2 for 1 query × 2 sources."
    )


def _branch(source: str) -> Callable[[dict[str, Any]], Any]:
    async def node(state: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        found = [{"source": source, "title": f"{source} finding {i}"} for i in (1, 2)]
        return {"findings": found, "counts": {source: len(found)}}

    return node


async def check_report_state(state_cls: type) -> Feedback:
    """Run three branches that each write `findings` (a list) and `counts` (a dict) on ``state_cls``."""
    from langgraph.errors import InvalidUpdateError
    from langgraph.graph import END, START, StateGraph

    if not isinstance(state_cls, type):
        raise TypeError(
            f"check_report_state expects your state class itself, e.g. await check_report_state(ReportState), "
            f"not {state_cls!r:.60}."
        )
    try:
        hints = typing.get_type_hints(state_cls, include_extras=True)
    except Exception as exc:
        raise TypeError(f"could not read the annotations of {state_cls.__name__}: {exc}") from exc
    missing = [k for k in ("findings", "counts") if k not in hints]
    if missing:
        return failed(
            f"{state_cls.__name__} has no {' and no '.join(map(repr, missing))} key.",
            "keep the keys of the exercise: findings (a list) and counts (a dict), each with a reducer.",
        )
    try:
        graph = StateGraph(state_cls)
        for source in _SOURCES:
            graph.add_node(source, _branch(source))
            graph.add_edge(START, source)
            graph.add_edge(source, END)
        out = await graph.compile().ainvoke({"topic": "async python"})
    except InvalidUpdateError as exc:
        first = str(exc).splitlines()[0]
        key = first.split("'")[1] if first.startswith("At key '") else "?"
        return failed(
            f"the three branches wrote {key!r} in one step: InvalidUpdateError: {first}",
            f"give {key!r} a reducer: {key}: Annotated[<its type>, <function that merges two values>].",
        )
    except TypeError as exc:
        if "dict" in str(exc):
            return failed(
                f"a reducer failed on the dicts of `counts`: TypeError: {exc}",
                "operator.add cannot add two dicts; merge them with operator.or_ (dict | dict) or your own function.",
            )
        return failed(f"the graph raised TypeError: {exc}", "a reducer is called as reducer(current, update).")
    except Exception as exc:
        return failed(
            f"the graph raised {type(exc).__name__}: {exc}", "a reducer is called as reducer(current, update)."
        )
    findings = out.get("findings")
    if not isinstance(findings, list) or len(findings) != 6:
        n = len(findings) if isinstance(findings, list) else findings
        return failed(
            f"findings ended as {n!r:.60} item(s); expected 6 (2 from each of the 3 branches).",
            "the reducer for findings must keep every branch's list: operator.add concatenates them.",
        )
    counts = out.get("counts")
    if counts != {s: 2 for s in _SOURCES}:
        return failed(
            f"counts ended as {counts!r:.80}; expected {{'web': 2, 'kb': 2, 'api': 2}}.",
            "the reducer for counts must keep every branch's keys: operator.or_ merges two dicts.",
        )
    return passed(
        f"3 branches wrote findings and counts in one step: {len(findings)} findings, "
        f"counts {dict(sorted(counts.items()))}."
    )
