"""Command line: ``python -m agency_lib doctor | demo | serve | serve-agency``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

__all__ = ["main"]


async def _research(queries: list[str], concurrent: bool) -> list[dict]:
    from .tools import SOURCES, search

    calls = [(source, q) for q in queries for source in SOURCES]
    if concurrent:
        batches = await asyncio.gather(*(search(s, q) for s, q in calls))
    else:
        batches = [await search(s, q) for s, q in calls]
    return [f for batch in batches for f in batch]


def _build_agency(concurrent: bool):
    from langgraph.graph import END, START, StateGraph

    from .agency import AgencyState, planner, writer

    async def researcher(state: AgencyState) -> dict:
        return {"findings": await _research(state["queries"], concurrent)}

    g = StateGraph(AgencyState)
    g.add_node("planner", planner)
    g.add_node("researcher", researcher)
    g.add_node("writer", writer)
    g.add_edge(START, "planner")
    g.add_edge("planner", "researcher")
    g.add_edge("researcher", "writer")
    g.add_edge("writer", END)
    return g.compile()


async def _demo(out: Path, topic: str) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .plotting import compare
    from .service import start_service
    from .timing import Recorder
    from .tools import close_clients

    recs = []
    try:
        with start_service(seed=1):
            for concurrent in (False, True):
                rec = Recorder("concurrent" if concurrent else "serial")
                app = _build_agency(concurrent)
                with rec:
                    await app.ainvoke({"topic": topic}, config={"callbacks": [rec.callback()]})
                recs.append(rec)
    finally:
        await close_clients()  # the tools' HTTP client, closed before asyncio.run ends the loop
    for rec in recs:
        tools = [s for s in rec.spans if s.group in ("web", "kb", "api")]
        research = next(s for s in rec.spans if s.name == "researcher")
        longest = max(s.duration for s in tools)
        print(
            f"{rec.name:>10}: agency {rec.summary().wall:.2f} s; research {research.duration:.2f} s "
            f"for {len(tools)} tool calls (longest {longest:.2f} s, {research.duration / longest:.2f}x of it)"
        )
    serial, conc = (next(s for s in r.spans if s.name == "researcher").duration for r in recs)
    print(f"speed-up of the research: {serial / conc:.1f}x")
    fig = compare(recs[0], recs[1])
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agency_lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check the environment: [OK] / [WARN] / [FAIL] per check; exit 1 only on a [FAIL]")
    demo = sub.add_parser("demo", help="run the agency serially, then concurrently, and draw both")
    demo.add_argument("--out", default="gantt.png", help="where to write the Gantt chart (PNG)")
    demo.add_argument("--topic", default="async python", help="what the agency researches")
    serve = sub.add_parser("serve", help="run the local search service in the foreground (for instructors)")
    serve.add_argument("--latency", type=float, default=None, help="seconds per request (default: per source)")
    serve.add_argument("--capacity", type=int, default=None, help="requests in flight before 429")
    serve.add_argument("--failure-rate", type=float, default=0.0, help="share of requests answered 5xx")
    serve.add_argument("--seed", type=int, default=0)
    agency = sub.add_parser(
        "serve-agency",
        help="run the search service and LangGraph's Agent Server (langgraph dev) serving the agency, until Ctrl-C",
    )
    agency.add_argument("--port", type=int, default=None, help="the Agent Server's port (default: a free one)")
    agency.add_argument("--n-jobs-per-worker", type=int, default=None, help="runs at once (langgraph dev's default: 1)")
    agency.add_argument("--allow-blocking", action="store_true", help="switch off the blocking-call detector")
    agency.add_argument("--reload", action="store_true", help="restart the server when the graph's code changes")
    agency.add_argument("--seed", type=int, default=0, help="the search service's seed")
    args = parser.parse_args(argv)

    if args.command == "doctor":
        from .doctor import run_doctor

        return 0 if run_doctor().ok else 1  # warnings do not stop the course
    if args.command == "demo":
        out = Path(args.out)
        if out.suffix.lower() != ".png":
            parser.error(f"--out must name a .png file, not {args.out!r}")
        if not out.parent.exists():
            parser.error(f"--out: the folder {str(out.parent)!r} does not exist")
        return asyncio.run(_demo(out, args.topic))
    if args.command == "serve":
        from .service import start_service

        try:
            svc = start_service(
                latency=args.latency, capacity=args.capacity, failure_rate=args.failure_rate, seed=args.seed
            )
        except (TypeError, ValueError) as exc:
            parser.error(str(exc))
        print(f"serving on {svc.url} (GET /search/web?q=..., /search/api?q=...); Ctrl-C stops it")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            svc.stop()
            print(f"stopped. {svc.stats()}")
        return 0
    if args.command == "serve-agency":
        return _serve_agency(parser, args)
    return 2


def _serve_agency(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import signal

    from .server import AgentServerError, agent_server
    from .service import start_service

    def stop(signum, frame):  # SIGTERM (a process manager, `kill`) stops both, as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    svc = start_service(seed=args.seed)
    try:
        with agent_server(
            search_url=svc.url,
            port=args.port,
            n_jobs_per_worker=args.n_jobs_per_worker,
            allow_blocking=args.allow_blocking,
            reload=args.reload,
        ) as server:
            print(
                f"search service on {svc.url}; Agent Server on {server.url} (started in {server.start_seconds:.1f} s)"
            )
            print(f"graphs: agency, nap, blocking; {server.n_jobs_per_worker} job(s) per worker. Ctrl-C stops both.")
            print(
                f'try: langgraph_sdk.get_client(url="{server.url}").runs.wait(None, "agency", input={{"topic": "async python"}})'
            )
            while server.running:
                time.sleep(0.5)
            print(f"the Agent Server stopped by itself:\n{server.log_tail()}")
            return 1
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    except AgentServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped.")
        return 0
    finally:
        svc.stop()


if __name__ == "__main__":
    sys.exit(main())
