"""Self-checks for notebook 02 (async nodes): the Editor exercise, the streaming exercise and a prediction.

The checks are async, because they run the learner's graph the way it must be run:
``await nb02.check_editor(build_agency_with_editor, run_agency)``,
``await nb02.check_node_order(node_order, agency)`` and
``await nb02.check_prediction(predicted_wall, app, inputs)``.
"""

from __future__ import annotations

import asyncio
import inspect
import operator
from collections.abc import Callable
from numbers import Real
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.pregel import Pregel

from ..timing import Recorder
from . import Feedback, failed, passed

__all__ = ["check_editor", "check_node_order", "check_prediction"]

_SYNC_INVOKE = "No synchronous function provided"


def _short(exc: BaseException) -> str:
    """`Type: message` on one line, cut short."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 110 else text[:107] + "..."


def _graph_of(build: Any) -> Pregel:
    """The compiled graph: `build` itself, or what calling it returns."""
    if isinstance(build, Pregel):
        return build
    if isinstance(build, StateGraph):
        raise TypeError("pass the compiled graph: end your builder with `return graph.compile()`.")
    if not callable(build):
        raise TypeError(
            f"the first argument must be your builder function (build_agency_with_editor, without "
            f"parentheses) or the compiled graph, not {type(build).__name__}."
        )
    app = build()
    if isinstance(app, StateGraph):
        raise TypeError("your builder returned the StateGraph builder: end it with `return graph.compile()`.")
    if not isinstance(app, Pregel):
        raise TypeError(
            f"your builder returned {type(app).__name__}, not a compiled graph: end it with `return graph.compile()`."
        )
    return app


def _edges(app: Pregel) -> set[tuple[str, str]]:
    """The edges as drawn (conditional ones included) and as declared (the drawing hides a
    declared writer → END once writer → editor exists)."""
    drawn = {(e.source, e.target) for e in app.get_graph().edges}
    builder = getattr(app, "builder", None)
    return drawn | set(getattr(builder, "edges", ()))


async def _await_result(run: Callable[..., Any], *args: Any) -> tuple[Any, Feedback | None]:
    """Call the learner's async function; turn the classic mistakes into feedback."""
    name = getattr(run, "__name__", "your function")
    if not inspect.iscoroutinefunction(run):
        return None, failed(
            f"{name} is a plain def: it must be `async def` so that it can await the graph.",
            f"write `async def {name}(...)` and inside it `await app.ainvoke(...)` / `async for ... in app.astream(...)`.",
        )
    try:
        result = await run(*args)
    except TypeError as exc:
        if _SYNC_INVOKE in str(exc):
            return None, failed(
                f"{name} ran the graph with a synchronous method (invoke or stream): {_short(exc)}",
                "the agency's nodes are async def: use `await app.ainvoke(...)` or `async for ... in app.astream(...)`.",
                "`await app.invoke(...)` fails the same way: invoke raises before the await happens.",
            )
        return None, failed(f"{name} raised {_short(exc)}", "read the message, fix, and run the check again.")
    except Exception as exc:
        return None, failed(f"{name} raised {_short(exc)}", "read the message, fix, and run the check again.")
    if inspect.iscoroutine(result):
        result.close()  # it was never awaited: close it so no warning follows the learner around
        return None, failed(
            f"{name} returned a coroutine, not a result: something was called without `await`.",
            "write `return await app.ainvoke(...)`, not `return app.ainvoke(...)`.",
        )
    return result, None


async def check_editor(build: Any, run: Callable[..., Any], topic: str = "async python") -> Feedback:
    """Check the agency with an Editor: node present, Writer → Editor edge, run with ainvoke, article made.

    `build` is the function that returns the compiled graph (or the graph itself);
    `run(app, topic)` is an async function that runs it and returns the final state.
    """
    if not isinstance(topic, str) or not topic.strip():
        raise ValueError(f"topic must be a non-empty string, e.g. 'async python', not {topic!r}.")
    if not callable(run):
        raise TypeError(f"the second argument must be your async run function (run_agency), not {type(run).__name__}.")
    app = _graph_of(build)
    nodes = set(app.nodes) - {START}
    if "editor" not in nodes:
        return failed(
            f"the graph has no 'editor' node (its nodes: {', '.join(sorted(nodes))}).",
            'add it with graph.add_node("editor", editor) (editor comes from agency_lib).',
        )
    edges = _edges(app)
    if ("writer", "editor") not in edges:
        return failed(
            "the editor never runs after the writer: there is no edge writer → editor.",
            'add graph.add_edge("writer", "editor").',
        )
    if ("writer", END) in edges:
        return failed(
            "the writer still has an edge to END: the Editor should be the last step.",
            'replace graph.add_edge("writer", END) with graph.add_edge("writer", "editor") and '
            'graph.add_edge("editor", END).',
        )
    result, problem = await _await_result(run, app, topic)
    if problem is not None:
        return problem
    if not isinstance(result, dict):
        return failed(
            f"run_agency returned {type(result).__name__}, not the final state (a dict).",
            "return what `await app.ainvoke({'topic': topic})` gives you.",
        )
    if not result.get("article"):
        return failed(
            f"the final state has no 'article' (its keys: {', '.join(sorted(result))}).",
            "the Editor writes 'article': return the state that `await app.ainvoke(...)` gives for the graph "
            "passed in as `app` (not another graph).",
        )
    return passed(
        f"the Editor ran after the Writer: an article of {len(result['article'].splitlines())} lines, "
        f"approved={result.get('approved')}, revisions={result.get('revisions')}."
    )


class _ProbeState(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]


def _probe_graph() -> Pregel:
    """A small graph of the check's own, so hardcoded node names show up."""

    async def fetch(state: _ProbeState) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"steps": ["fetch"]}

    def summarise(state: _ProbeState) -> dict[str, Any]:
        return {"steps": ["summarise"]}

    async def publish(state: _ProbeState) -> dict[str, Any]:
        return {"steps": ["publish"]}

    g = StateGraph(_ProbeState)
    for name, fn in (("fetch", fetch), ("summarise", summarise), ("publish", publish)):
        g.add_node(name, fn)
    g.add_edge(START, "fetch")
    g.add_edge("fetch", "summarise")
    g.add_edge("summarise", "publish")
    g.add_edge("publish", END)
    return g.compile()


async def _expected_order(app: Pregel, inputs: dict[str, Any]) -> list[str]:
    return [name async for chunk in app.astream(inputs, stream_mode="updates") for name in chunk]


def _compare(got: Any, want: list[str], state_keys: set[str], label: str) -> Feedback | None:
    if not isinstance(got, list) or not all(isinstance(n, str) for n in got):
        return failed(
            f"node_order returned {type(got).__name__} {got!r:.60}, not a list of node names (str).",
            "start with `names = []`, append each update's node name, and `return names`.",
        )
    if not got:
        return failed(
            f"node_order returned an empty list for {label}.",
            'loop with `async for chunk in app.astream(inputs, stream_mode="updates"):` and collect the '
            "node names: each chunk is a dict {node_name: what_it_wrote}.",
        )
    if got == want:
        return None
    if set(got) & state_keys and not set(got) & set(want):
        return failed(
            f"for {label} you collected state keys {got}, not node names.",
            'use stream_mode="updates": each chunk is {node_name: update}, so the node name is the dict\'s key.',
            'stream_mode="values" yields the whole state each time: its keys are state keys.',
        )
    if sorted(got) == sorted(want):
        return failed(
            f"the right names in the wrong order for {label}: {got}, expected {want}.",
            "keep the order the updates arrive in: do not sort or use a set.",
        )
    return failed(
        f"for {label} you returned {got}, but the updates came from {want}.",
        "append the node name of every update (the key of each chunk), once per update.",
    )


async def check_node_order(fn: Callable[..., Any], app: Pregel, inputs: dict[str, Any] | None = None) -> Feedback:
    """Check `fn(app, inputs)`: an async function that streams the graph and returns the node names in update order.

    It runs `fn` on your graph (inputs default to ``{"topic": "async python"}``) and on a small
    graph of the check's own, and compares both with what ``astream(stream_mode="updates")`` yields.
    """
    if not callable(fn):
        raise TypeError(f"the first argument must be your async function (node_order), not {type(fn).__name__}.")
    if not isinstance(app, Pregel):
        raise TypeError(f"the second argument must be a compiled graph (e.g. agency), not {type(app).__name__}.")
    if inputs is None:
        inputs = {"topic": "async python"}
    if not isinstance(inputs, dict):
        raise TypeError(f"inputs must be a dict such as {{'topic': 'async python'}}, not {type(inputs).__name__}.")
    yours: list[str] = []
    for graph, graph_inputs, label in ((app, inputs, "your graph"), (_probe_graph(), {"steps": []}, "another graph")):
        want = await _expected_order(graph, graph_inputs)
        yours = yours or want
        got, problem = await _await_result(fn, graph, dict(graph_inputs))
        if problem is not None:
            return problem
        if label == "another graph" and got == yours and got != want:
            return failed(
                f"node_order returned {got} for another graph too: the names are hardcoded.",
                "collect the names from the updates the graph streams, not from a fixed list.",
            )
        problem = _compare(got, want, set(graph.channels) | set(graph_inputs), label)
        if problem is not None:
            return problem
    return passed(f"node_order collects the updates in order: {' → '.join(yours)}.")


async def check_prediction(predicted: object, app: Pregel, inputs: dict[str, Any]) -> Feedback:
    """Run ``await app.ainvoke(inputs)`` with a recorder, and compare the measured wall time with `predicted`.

    Accepted within 20 % (at least 0.06 s) of the measurement. The feedback names the other
    answers a prediction can be close to: the longest call alone (everything at once), or the
    sum of all the calls (nothing at once).
    """
    if not isinstance(app, Pregel):
        raise TypeError(f"the second argument must be a compiled graph, not {type(app).__name__}.")
    if not isinstance(inputs, dict):
        raise TypeError(f"inputs must be the graph's input dict, not {type(inputs).__name__}.")
    if predicted is None or predicted is Ellipsis:
        return failed(
            f"your prediction is {predicted!r}: write it first, as a number of seconds, then run the check.",
            "decide before you measure: that is the exercise",
        )
    if isinstance(predicted, bool) or not isinstance(predicted, Real):
        return failed(
            f"the prediction should be a number of seconds, not {type(predicted).__name__} {predicted!r}.",
            "e.g. 0.5",
        )
    rec = Recorder("check")
    with rec:
        await app.ainvoke(inputs, config={"callbacks": [rec.callback()]})
    spans = rec.spans
    nodes = [s for s in spans if s.group in app.nodes]
    calls = [s for s in spans if s.group not in app.nodes]
    if not nodes or not calls:
        raise ValueError("the graph made no recorded tool calls: pass a graph whose nodes call the course's tools.")
    p, wall = float(predicted), rec.summary().wall
    steps = " then ".join(f"{s.name} {s.duration:.2f} s" for s in sorted(nodes, key=lambda s: s.start))
    measured = f"measured: {wall:.2f} s ({steps})"
    longest, total = max(c.duration for c in calls), sum(c.duration for c in calls)
    tol = max(0.06, 0.2 * wall)
    if abs(p - wall) <= tol:
        return passed(
            f"you predicted {p:g} s; {measured}. Nodes in a chain run one after the other; inside each, "
            "gather overlaps the calls, so each node takes about as long as its slowest call."
        )
    if abs(p - longest) <= 0.05:
        return failed(
            f"you predicted {p:g} s, about the longest call alone ({longest:.2f} s); {measured}.",
            "the nodes are in separate steps: the second starts only when the first has ended",
        )
    if abs(p - total) <= max(0.1, 0.2 * total):
        return failed(
            f"you predicted {p:g} s, about the sum of all {len(calls)} calls ({total:.2f} s); {measured}.",
            "inside each node, gather runs its calls at the same time",
        )
    return failed(
        f"you predicted {p:g} s; {measured}.",
        "each node takes about as long as its slowest call; nodes in a chain add up",
    )
