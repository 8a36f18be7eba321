"""Self-checks for notebook 09, *The capstone*.

* `check_agency` runs *your* agency (``build_graph()``, the shared ``context`` and
  ``run_config(thread_id)``) against the local service made faulty on purpose, and reports one
  line per behaviour: research fanned out, bounded per service, no unretried 429, partial
  results disclosed, bugs raised, progress streamed, resumable, research close to its bound.
* `check_estimate` compares a predicted research time with the measured one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import StateGraph

from ..progress import lower_bound
from ..service import current_service
from ..timing import Recorder, Span
from . import Feedback, failed, passed

__all__ = ["check_agency", "check_estimate", "AgencyReport", "research_phase"]

SOURCES = ("web", "kb", "api")
#: The knobs of the check's quiet service: small latencies, so the whole check takes a few seconds.
HANG = 1.5  # seconds: the api's latency when it hangs
QUIET = {"latency": {"web": 0.1, "api": 0.12}, "jitter": 0.2, "seed": 11, "failure_rate": 0.0}


@dataclass
class AgencyReport:
    """One line per behaviour: ✅ or ❌, with hints under a ❌. Truthy when every line passed."""

    lines: list[tuple[str, Feedback]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.lines) and all(fb.ok for _, fb in self.lines)

    def __bool__(self) -> bool:
        return self.ok

    def __getitem__(self, behaviour: str) -> Feedback:
        for name, fb in self.lines:
            if name == behaviour:
                return fb
        raise KeyError(f"no behaviour {behaviour!r}; the report has {[n for n, _ in self.lines]}.")

    def add(self, behaviour: str, feedback: Feedback) -> None:
        self.lines.append((behaviour, feedback))

    def __str__(self) -> str:
        out = []
        for name, fb in self.lines:
            out.append(("✅ " if fb.ok else "❌ ") + f"{name}: {fb.message}")
            out += [f"   hint: {h}" for h in fb.hints]
        return "\n".join(out)

    __repr__ = __str__

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython: show the plain lines
        p.text(str(self))


def research_phase(rec: Recorder | list[Span], node: str = "researcher") -> float:
    """Seconds from the first start to the last end of the `node` runs in a recording (``rec.callback()``)."""
    spans = rec.spans if isinstance(rec, Recorder) else rec
    runs = [s for s in spans if s.group == node]
    if not runs:
        raise ValueError(
            f"the recording has no {node!r} node run: run the graph with "
            "config={'callbacks': [rec.callback()]} inside `with rec:`."
        )
    return max(s.end for s in runs) - min(s.start for s in runs)


# -- running the learner's agency -------------------------------------------------------------------
@dataclass
class _Run:
    final: dict[str, Any] | None = None
    error: BaseException | None = None
    custom: int = 0  # progress events of the research phase
    research_updates: int = 0
    cached: int = 0


class _Stop(Exception):
    """The check stops a run on purpose (to resume it)."""


def _config(run_config: Callable[[str], dict[str, Any]], thread_id: str, rec: Recorder) -> dict[str, Any]:
    config = dict(run_config(thread_id))
    config["callbacks"] = [*config.get("callbacks", []), rec.callback()]
    return config


async def _stream(app: Any, inputs: Any, config: dict[str, Any], context: Any, run: _Run, stop_after: int = 0) -> None:
    """Stream one run into `run`; with `stop_after`, cancel it after that many finished research tasks."""
    async for mode, chunk in app.astream(inputs, config, context=context, stream_mode=["updates", "custom"]):
        if mode == "custom" and isinstance(chunk, dict) and chunk.get("phase") == "researcher":
            run.custom += 1
        elif mode == "updates" and "researcher" in chunk:
            if (chunk.get("__metadata__") or {}).get("cached"):
                run.cached += 1
            else:
                run.research_updates += 1
                if stop_after and run.research_updates >= stop_after:
                    raise _Stop  # caught by _run: the stop the check asked for
        elif mode == "updates":
            for update in chunk.values():
                if isinstance(update, dict) and "article" in update:
                    run.final = {**(run.final or {}), **update}


async def _run(app: Any, inputs: Any, config: dict[str, Any], context: Any, stop_after: int = 0) -> _Run:
    run = _Run()
    try:
        await _stream(app, inputs, config, context, run, stop_after)
        state = await app.aget_state(config)
        run.final = dict(state.values)
    except _Stop:
        pass
    except Exception as exc:  # the learner's agency failed: report it, do not crash the check
        run.error = exc
    return run


def _calls(rec: Recorder) -> dict[str, list[Span]]:
    """Tool spans per call (source: query), in start order."""
    calls: dict[str, list[Span]] = {}
    for s in rec.spans:
        if s.group in SOURCES:
            calls.setdefault(s.name, []).append(s)
    return calls


def _failure(run: _Run, what: str) -> Feedback:
    exc = run.error
    name = type(exc).__name__
    hints = []
    if name == "NodeTimeoutError":
        hints.append(
            "the node's timeout counts the wait for a slot: time the request inside the slot with "
            "`async with asyncio.timeout(REQUEST_TIMEOUT)`, and keep the node timeout a generous net."
        )
    elif name == "ServiceError":
        hints.append(
            "a source failure failed the run: retry 429 and 5xx, and when you give up, return "
            '{"errors": [...]} instead of raising.'
        )
    elif isinstance(exc, TimeoutError):
        hints.append("a request timeout is a source failure: catch TimeoutError and return it as a gap.")
    else:
        hints.append("fix the error first: the other lines need a run that finishes.")
    return failed(f"{what} failed with {name}: {exc}", *hints)


def _tasks_of(final: dict[str, Any] | None) -> tuple[set[tuple[str, str]], list[str]]:
    findings = (final or {}).get("findings", []) or []
    answered = {(f.get("source", "?"), f.get("query", "?")) for f in findings if isinstance(f, dict)}
    return answered, list((final or {}).get("errors", []) or [])


async def check_agency(
    build_graph: Callable[[], StateGraph],
    *,
    context: Any,
    run_config: Callable[[str], dict[str, Any]],
    capacity: int,
    limit: float = 2.0,
) -> AgencyReport:
    """Run your agency against a faulty local service and report, one line each, which behaviours hold.

    `build_graph()` returns your (uncompiled) ``StateGraph``; the check compiles it with an
    ``InMemorySaver``. `context` is the object every run shares (your limiter, sized to
    `capacity`, the service's limit of requests in flight). `run_config(thread_id)` returns
    your run's config. The check needs a running service (``start_service()``); it sets its
    own scenarios and puts the service's knobs back afterwards.
    """
    if not callable(build_graph) or not callable(run_config):
        raise TypeError(
            "check_agency expects your functions: check_agency(build_graph, context=SERVICES, "
            "run_config=run_config, capacity=CAPACITY)."
        )
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 2:
        raise ValueError(f"capacity is the service's limit of requests in flight (an int ≥ 2), not {capacity!r}.")
    if not isinstance(limit, (int, float)) or limit < 1:
        raise ValueError(f"limit is a ratio ≥ 1 (research time / lower bound), not {limit!r}.")
    service = current_service()
    report = AgencyReport()

    graph = build_graph()
    if not isinstance(graph, StateGraph):
        report.add(
            "the graph",
            failed(f"build_graph() returned {type(graph).__name__}, not a StateGraph: return the builder, uncompiled."),
        )
        return report
    config = run_config("check-0")
    if not isinstance(config, dict) or "max_concurrency" not in config:
        where = (
            "inside 'configurable', where LangGraph ignores it"
            if "max_concurrency" in ((config or {}).get("configurable") or {} if isinstance(config, dict) else {})
            else "missing"
        )
        report.add(
            "the run config",
            failed(
                f"run_config(thread_id) has no top-level 'max_concurrency' ({where}).",
                "return {'configurable': {'thread_id': thread_id}, 'max_concurrency': MAX_CONCURRENCY}.",
            ),
        )
    spec = graph.nodes.get("researcher")
    if spec is None:
        report.add("the graph", failed("the graph has no node 'researcher': add_node('researcher', researcher, ...)."))
        return report
    if spec.timeout is None:
        report.add(
            "the node's safety net",
            failed(
                "the researcher node has no timeout: a hung task would hang the whole run.",
                "add_node('researcher', researcher, timeout=NODE_TIMEOUT): generous, a net, not the request timeout.",
            ),
        )
    app = graph.compile(checkpointer=InMemorySaver())

    with service.scenario(capacity=capacity, **QUIET):
        # 1. Two topics at once through the shared context, on a healthy service.
        recs = [Recorder(f"topic {i}") for i in range(2)]
        runs = await asyncio.gather(
            *(
                _recorded_run(
                    app, {"topic": topic, "n_queries": 3}, _config(run_config, f"check-{i}", recs[i]), context, recs[i]
                )
                for i, topic in enumerate(["event loops", "rate limits"])
            )
        )
        stats = service.stats()
    tasks = 9
    bad = next((r for r in runs if r.error is not None), None)
    ran = [len([s for s in rec.spans if s.group == "researcher"]) for rec in recs]
    if bad is not None:
        report.add("research fanned out", _failure(bad, "a run of 2 topics at once on a healthy service"))
        return report
    if min(ran) < tasks:
        report.add(
            "research fanned out",
            failed(
                f"the researcher ran {min(ran)} times for 3 queries, not {tasks}: one task per query × source.",
                'fan_out returns [Send("researcher", {...}) for q in state["queries"] for s in SOURCES], '
                "with the topic, source and query in each payload.",
            ),
        )
        return report
    report.add("research fanned out", passed(f"{tasks} research tasks per topic, one per query × source."))

    # bounded per service
    if stats.rejected or stats.peak_in_flight > capacity:
        report.add(
            "bounded per service",
            failed(
                f"2 runs at once put up to {stats.peak_in_flight} requests in flight at a service of {capacity}: "
                f"{stats.rejected} got a 429.",
                "take a slot of the shared limiter (runtime.context) around every web and api request, "
                "not a semaphore made per run or per task.",
            ),
        )
    else:
        report.add(
            "bounded per service",
            passed(f"2 runs at once, never more than {capacity} requests in flight, no 429."),
        )

    # progress streamed
    events = min(r.custom for r in runs)
    if events < tasks:
        report.add(
            "progress streamed",
            failed(
                f"the research phase sent {events} progress events for {tasks} tasks.",
                'each task reports how it ended: runtime.stream_writer({"phase": "researcher", "status": "ok"}) '
                '(or "gap", "retried").',
            ),
        )
    else:
        report.add("progress streamed", passed(f"{events} progress events from {tasks} research tasks, as they ran."))

    # close to the bound
    both = [s for rec in recs for s in rec.spans]
    research = research_phase(both)
    bound = lower_bound(both, capacity=capacity)
    ratio = research / bound.length
    if ratio > limit:
        report.add(
            "research close to its bound",
            failed(
                f"the research took {research:.2f} s, {ratio:.2f}× its lower bound ({bound.length:.2f} s).",
                "use all the service's slots (a limiter of `capacity`), sleep the back-off outside the slot, "
                "and keep max_concurrency at least the fan-out (the machine may be busy: run the check again).",
            ),
        )
    else:
        report.add(
            "research close to its bound",
            passed(f"the research took {research:.2f} s, {ratio:.2f}× its lower bound ({bound.length:.2f} s)."),
        )

    # 2. A faulty service: another client holds half its slots, and 30 % of requests fail.
    with service.scenario(capacity=capacity // 2, **{**QUIET, "failure_rate": 0.3}):
        rec = Recorder("faulty")
        run = await _recorded_run(
            app, {"topic": "timeouts", "n_queries": 2}, _config(run_config, "check-faulty", rec), context, rec
        )
        stats = service.stats()
    if run.error is not None:
        report.add("no unretried 429", _failure(run, "a run on a service that answers 429 and 5xx"))
        report.add("partial results disclosed", failed("not checked: the faulty run did not finish."))
    else:
        calls = _calls(rec)
        ended_on_429 = sorted(n for n, spans in calls.items() if "(HTTP 429)" in spans[-1].error)
        if ended_on_429:
            report.add(
                "no unretried 429",
                failed(
                    f"{len(ended_on_429)} search(es) ended on a 429, e.g. {ended_on_429[0]!r}.",
                    "a 429 says 'not now': retry it with exponential back-off and jitter, honouring Retry-After.",
                ),
            )
        else:
            report.add(
                "no unretried 429",
                passed("a full service answered 429s, and every one was retried until it got through."),
            )

    # 2b. A source that hangs: the api answers in 1.5 s, later than any sane request timeout.
    # 3. At the same time, a bug: the kb rejects a query with no words (ValueError), before any wait.
    # It must fail its run, not become a gap.
    with service.scenario(capacity=capacity, **{**QUIET, "latency": {"web": 0.1, "api": HANG}}):
        rec, bug_rec = Recorder("hang"), Recorder("bug")
        run, bug = await asyncio.gather(
            _recorded_run(
                app, {"topic": "deadlines", "n_queries": 1}, _config(run_config, "check-hang", rec), context, rec
            ),
            _recorded_run(
                app, {"topic": "%%%", "n_queries": 1}, _config(run_config, "check-bug", bug_rec), context, bug_rec
            ),
        )
    _, errors = _tasks_of(run.final)
    article = str((run.final or {}).get("article", ""))
    api = _calls(rec).get("api: deadlines", [])
    if run.error is not None:
        report.add("partial results disclosed", _failure(run, "a run with an api that hangs"))
    elif api and api[-1].outcome == "ok":
        report.add(
            "partial results disclosed",
            failed(
                f"the hanging api was waited for ({api[-1].duration:.2f} s): the request has no timeout.",
                "time the request inside its slot: `async with asyncio.timeout(REQUEST_TIMEOUT):`; a timeout is a gap.",
            ),
        )
    elif not any("api" in e for e in errors):
        report.add(
            "partial results disclosed",
            failed(
                "the api search failed, and errors has no entry for it: the gap vanished.",
                'when a source fails for good, return {"errors": ["<source>: <query> (<why>)"]}: a gap the '
                "article can disclose.",
            ),
        )
    elif any(e not in article for e in errors):
        missing = [e for e in errors if e not in article]
        report.add(
            "partial results disclosed",
            failed(f"the gap {missing[0]!r} is not in the article.", "the Editor lists every entry of errors."),
        )
    else:
        report.add(
            "partial results disclosed",
            passed(f"the hanging api became the gap {errors[0]!r}, disclosed in the article."),
        )

    run = bug
    if isinstance(run.error, ValueError):
        report.add("bugs raised", passed(f"a bug failed the run: {type(run.error).__name__}: {run.error}"))
    elif run.error is not None:
        report.add("bugs raised", passed(f"a bug failed the run with {type(run.error).__name__}."))
    else:
        _, errors = _tasks_of(run.final)
        report.add(
            "bugs raised",
            failed(
                "a bug (the kb's ValueError for the query '%%%') did not fail the run"
                + (f": it became the gap {errors[0]!r}." if errors else "."),
                "catch only source failures (ServiceError, TimeoutError, httpx.TransportError); let the rest raise.",
            ),
        )

    # 4. Stop a run after 3 finished research tasks, then resume it with the same thread.
    with service.scenario(capacity=capacity, **QUIET):
        first, second = Recorder("stopped"), Recorder("resumed")
        cfg = _config(run_config, "check-resume", first)
        stopped = await _recorded_run(app, {"topic": "checkpoints", "n_queries": 3}, cfg, context, first, stop_after=3)
        cfg2 = _config(run_config, "check-resume", second)
        resumed = await _recorded_run(app, None, cfg2, context, second)
    rerun = len([s for s in second.spans if s.group == "researcher"])
    answered, errors = _tasks_of(resumed.final)
    if stopped.error is not None or resumed.error is not None:
        report.add("resumable", _failure(stopped if stopped.error else resumed, "the stopped or the resumed run"))
    elif resumed.cached < 1 or rerun >= tasks:
        report.add(
            "resumable",
            failed(
                f"the resume ran {rerun} of {tasks} research tasks again and replayed {resumed.cached} from the "
                "checkpoint.",
                "put the thread_id you are given in config['configurable']['thread_id'].",
            ),
        )
    elif len(answered) + len(errors) < tasks:
        report.add("resumable", failed(f"after the resume only {len(answered)} of {tasks} searches are in the state."))
    else:
        report.add(
            "resumable",
            passed(
                f"stopped after 3 finished tasks, the resume replayed the saved ones and ran only the others: "
                f"all {tasks} searches are in the state."
            ),
        )
    order = [
        "the graph",
        "the run config",
        "the node's safety net",
        "research fanned out",
        "bounded per service",
        "no unretried 429",
        "partial results disclosed",
        "bugs raised",
        "progress streamed",
        "resumable",
        "research close to its bound",
    ]
    report.lines.sort(key=lambda line: order.index(line[0]))
    return report


async def _recorded_run(
    app: Any, inputs: Any, config: dict[str, Any], context: Any, rec: Recorder, stop_after: int = 0
) -> _Run:
    with rec:
        return await _run(app, inputs, config, context, stop_after)


# -- exercise: predict the research time ----------------------------------------------------------------
def check_estimate(estimate: Any, measured: float, *, bound: float, tolerance: float = 0.25) -> Feedback:
    """Your predicted research time (seconds) against the measured one: within `tolerance` passes."""
    if estimate is ... or estimate is None:
        return failed(
            "estimate is not set: write your prediction in seconds before running the measurement.",
            "the service is the bottleneck: how many seconds of requests, shared by how many slots?",
        )
    if isinstance(estimate, bool) or not isinstance(estimate, (int, float)) or estimate <= 0:
        return failed(f"estimate is {estimate!r}: a number of seconds > 0.")
    error = estimate / measured - 1
    if abs(error) <= tolerance:
        return passed(
            f"you predicted {estimate:.2f} s, the research took {measured:.2f} s (within {tolerance:.0%}); its "
            f"lower bound was {bound:.2f} s."
        )
    hints = []
    if estimate < measured:
        hints.append("count every request of every topic (web and api, retries too): they share one service.")
    else:
        hints.append("the kb searches need no slot, and the requests of the 3 topics overlap: divide by the slots.")
    return failed(
        f"you predicted {estimate:.2f} s, the research took {measured:.2f} s ({error:+.0%}).",
        *hints,
        "Σ service time ÷ capacity is the bound: a full service finishes just after it.",
    )
