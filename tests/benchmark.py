"""How much the course's scaffolding costs: run with ``.venv/bin/python tests/benchmark.py``.

Not a test (pytest does not collect it): it prints three measurements.

1. Recorder overhead per span (µs): the async context manager, the sync one, and the
   NodeTimer callback (its handler alone, and a real graph run with vs without it).
   Target: ≤ 20 µs a span.
2. The local service's overhead above its configured latency (0.05 s) on loopback,
   p50 and p99, with 100 and with 1,000 requests launched at once from one httpx client
   (20 idle connections kept, as `make_client` does; then 100 kept, to show what httpcore's
   pool costs), and the CPU a request costs the service thread and the client.
   Goal: p50 ≤ 5 ms at 100 in flight.
3. `Send` fan-out overhead per task over a bare `asyncio.gather` (300 zero-work tasks).
4. The chat endpoint's time to first token as the client (ChatOpenAI) measures it, against the
   configured ``chat_ttft`` (0.2 s), at 1 and at 50 concurrent streams. Target: within
   10 % + 5 ms of the configured value.
5. ``stream_mode="messages"`` overhead per token: a node's model call streamed through
   LangGraph vs the same model's ``astream`` consumed directly (1,000 tokens, no delay a token).

Pass ``--profile`` to also print the top functions (cProfile) of the client's loop during
the 1,000-request bursts and of the service thread over all of them.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import operator
import pstats
import statistics
import sys
import time
import uuid
from typing import Annotated, Any, TypedDict

import httpx
import psutil

from agency_lib import Recorder, start_service

LATENCY = 0.05


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:6.1f} µs"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:6.2f} ms"


# -- 1. recorder overhead ----------------------------------------------------------------
def bench_recorder(n: int = 20_000) -> None:
    print("1. Recorder overhead per span (best of 5 rounds)")

    async def empty_loop() -> float:
        t = time.perf_counter()
        for _ in range(n):
            pass
        return time.perf_counter() - t

    async def async_spans() -> float:
        rec = Recorder()
        t = time.perf_counter()
        for _ in range(n):
            async with rec.span("step", group="g"):
                pass
        took = time.perf_counter() - t
        assert len(rec) == n
        return took

    def sync_spans() -> float:
        rec = Recorder()
        t = time.perf_counter()
        for _ in range(n):
            with rec.span_sync("step", group="g"):
                pass
        took = time.perf_counter() - t
        assert len(rec) == n
        return took

    def node_timer_handler() -> float:
        # The handler alone, as LangChain calls it for a node run (inline callbacks).
        rec = Recorder()
        cb = rec.callback()
        meta = {"langgraph_node": "work", "langgraph_step": 1}
        tags = ["graph:step:1"]
        ids = [uuid.uuid4() for _ in range(n)]
        t = time.perf_counter()
        for run_id in ids:
            cb.on_chain_start({}, {}, run_id=run_id, tags=tags, metadata=meta, name="work")
            cb.on_chain_end({}, run_id=run_id)
        took = time.perf_counter() - t
        assert len(rec) == n
        return took

    base = min(asyncio.run(empty_loop()) for _ in range(5))
    a = min(asyncio.run(async_spans()) for _ in range(5)) - base
    s = min(sync_spans() for _ in range(5)) - base
    h = min(node_timer_handler() for _ in range(5)) - base
    print(f"   async with rec.span(...)        {_us(a / n)}")
    print(f"   with rec.span_sync(...)         {_us(s / n)}")
    print(f"   NodeTimer handler (start + end) {_us(h / n)}")

    # A real graph: 200 sequential super-steps would be slow to build; use 300 Send tasks,
    # with and without the callback, and divide the difference by the node runs.
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    class S(TypedDict, total=False):
        out: Annotated[list, operator.add]

    async def work(state: dict) -> dict:
        return {"out": [1]}

    g = StateGraph(S)
    g.add_node("work", work)
    g.add_conditional_edges(START, lambda s: [Send("work", {}) for _ in range(300)], ["work"])
    g.add_edge("work", END)
    app = g.compile()

    async def run(with_cb: bool) -> float:
        cfg: dict[str, Any] = {"callbacks": [Recorder().callback()]} if with_cb else {}
        t = time.perf_counter()
        await app.ainvoke({}, config=cfg)
        return time.perf_counter() - t

    async def graph_rounds() -> tuple[float, float]:
        await run(False)
        await run(True)
        plain = min([await run(False) for _ in range(7)])
        timed = min([await run(True) for _ in range(7)])
        return plain, timed

    plain, timed = asyncio.run(graph_rounds())
    print(
        f"   NodeTimer in a real graph run   {_us((timed - plain) / 300)} per node run "
        f"(LangChain's callback manager included; 300 Send tasks: {_ms(plain)} without, {_ms(timed)} with)"
    )
    print("   target: ≤ 20 µs a span")


# -- 2. service overhead -----------------------------------------------------------------
async def _burst(client: httpx.AsyncClient, k: int, tag: str) -> list[float]:
    """k requests at once; each one's time from the call to the response (seconds)."""

    async def one(i: int) -> float:
        t = time.perf_counter()
        r = await client.get("/search/web", params={"q": f"{tag} {i}"})
        took = time.perf_counter() - t
        assert r.status_code == 200, r.status_code
        return took

    return list(await asyncio.gather(*(one(i) for i in range(k))))


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def _thread_cpu(native_id: int | None) -> float:
    """CPU seconds used so far by one thread of this process (the service's)."""
    for t in psutil.Process().threads():
        if t.id == native_id:
            return t.user_time + t.system_time
    return 0.0


async def _levels(svc: Any, rounds: int, profile: bool) -> None:
    for k, keepalive in ((100, 20), (1000, 20), (100, 100)):
        # make_client(max_connections=k) keeps 20 idle connections; the last line keeps all k.
        limits = httpx.Limits(max_connections=k, max_keepalive_connections=keepalive)
        async with httpx.AsyncClient(base_url=svc.url, limits=limits, timeout=60) as client:
            await _burst(client, k, "warm-up")
            svc.reset_stats()
            times: list[float] = []
            walls: list[float] = []
            prof = cProfile.Profile() if profile and k == 1000 else None
            for r in range(rounds if keepalive == 20 else 1):
                t = time.perf_counter()
                if prof:
                    prof.enable()
                times += await _burst(client, k, f"round {r}")
                if prof:
                    prof.disable()
                walls.append(time.perf_counter() - t)
            over = [x - LATENCY for x in times]
            print(
                f"   {k:>5} in flight, keep-alive {keepalive:>3}: overhead p50 {_ms(_pct(over, 50))}, "
                f"p99 {_ms(_pct(over, 99))}; a burst takes {_ms(statistics.median(walls))}; "
                f"peak in flight {svc.stats().peak_in_flight}"
            )
            if prof:
                _print_profile("the client's event loop, 1,000 in flight", prof)


async def _cpu_split(svc: Any, n: int = 1000) -> None:
    """One request at a time, latency 0: the CPU each side spends on a request."""
    svc.configure(latency=0.0)
    native_id = svc._thread.native_id
    async with httpx.AsyncClient(base_url=svc.url) as client:
        for i in range(50):
            await client.get("/search/web", params={"q": f"warm {i}"})
        server0, all0, t0 = _thread_cpu(native_id), time.process_time(), time.perf_counter()
        for i in range(n):
            await client.get("/search/web", params={"q": f"q {i}"})
        wall, total, server = (
            time.perf_counter() - t0,
            time.process_time() - all0,
            _thread_cpu(native_id) - server0,
        )
    print(
        f"   one at a time, latency 0: {_us(wall / n)} a request; CPU: service thread {_us(server / n)}, "
        f"client (httpx) {_us((total - server) / n)}"
    )
    svc.configure(latency=LATENCY)


def _print_profile(label: str, prof: cProfile.Profile, top: int = 10) -> None:
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    print(f"   cProfile, {label}, by own time:")
    for ln in lines[start : start + top + 1]:
        ln = ln.replace(sys.prefix + "/lib/python3.11/site-packages/", "").replace(sys.base_prefix, "<python>")
        print("     " + ln)


def bench_service(profile: bool = False) -> None:
    print(f"2. Service overhead above its latency ({_ms(LATENCY)}) on loopback, timed by the client per request")
    with start_service(latency=LATENCY, seed=0) as svc:
        server_prof = cProfile.Profile() if profile else None
        if server_prof is not None:  # profile the service's own thread: install it on its loop
            loop = svc._server.servers[0].get_loop()
            asyncio.run_coroutine_threadsafe(_call(server_prof.enable), loop).result(5)
        asyncio.run(_levels(svc, rounds=3, profile=profile))
        if server_prof is not None:
            asyncio.run_coroutine_threadsafe(_call(server_prof.disable), loop).result(5)
            _print_profile("the service thread (uvicorn + starlette), all levels", server_prof)
        asyncio.run(_cpu_split(svc))
    print("   goal: p50 ≤ 5 ms at 100 in flight")


async def _call(fn: Any) -> None:
    fn()


# -- 3. Send fan-out ---------------------------------------------------------------------
def bench_send(n: int = 300) -> None:
    print(f"3. Send fan-out vs a bare gather ({n} zero-work tasks, best of 7)")
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    class S(TypedDict, total=False):
        out: Annotated[list, operator.add]

    async def work(state: dict) -> dict:
        return {"out": [state["i"]]}

    def build(k: int) -> Any:
        g = StateGraph(S)
        g.add_node("work", work)
        g.add_conditional_edges(START, lambda s: [Send("work", {"i": i}) for i in range(k)], ["work"])
        g.add_edge("work", END)
        return g.compile()

    fan, one = build(n), build(1)

    async def timed(app: Any) -> float:
        t = time.perf_counter()
        await app.ainvoke({})
        return time.perf_counter() - t

    async def bare() -> float:
        t = time.perf_counter()
        await asyncio.gather(*(work({"i": i}) for i in range(n)))
        return time.perf_counter() - t

    async def main() -> tuple[float, float, float]:
        await timed(fan)
        await timed(one)
        return (
            min([await timed(fan) for _ in range(7)]),
            min([await timed(one) for _ in range(7)]),
            min([await bare() for _ in range(7)]),
        )

    t_fan, t_one, t_bare = asyncio.run(main())
    per_send = (t_fan - t_one) / (n - 1)
    print(f"   Send:   {_ms(t_fan)} for {n} tasks ({_ms(t_one)} for 1) → {_us(per_send)} per task")
    print(f"   gather: {_ms(t_bare)} for {n} tasks → {_us(t_bare / n)} per task")
    print(f"   Send costs {_us(per_send - t_bare / n)} more per task than a bare gather")


def bench_service_wrk(seconds: int = 5) -> None:
    """The service measured from another process with wrk (keep-alive connections, closed loop).

    This isolates the service from httpx's client-side cost; skipped when wrk is not installed
    (Debian: apt-get install wrk).
    """
    import re
    import shutil
    import subprocess

    print("2b. Service overhead measured by wrk from another process (latency 0.05 s)")
    if not shutil.which("wrk"):
        print("   skipped: wrk is not installed")
        return
    with start_service(latency=LATENCY) as svc:
        for conns in (100, 1000):
            out = subprocess.run(
                ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", f"{svc.url}/search/web?q=async"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            pct = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+)ms", out, re.M))
            rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
            print(
                f"   {conns:>5} in flight: p50 overhead {float(pct['50']) - LATENCY * 1e3:6.2f} ms, "
                f"p99 overhead {float(pct['99']) - LATENCY * 1e3:6.2f} ms, {float(rps.group(1)) if rps else 0:.0f} req/s"
            )


# -- 4. time to first token --------------------------------------------------------------
TTFT = 0.2


def bench_ttft(levels: tuple[int, ...] = (1, 50), rounds: int = 3) -> None:
    from langchain_openai import ChatOpenAI

    from agency_lib.agency import chat_model
    from agency_lib.clients import close_clients, shared_client

    print(
        f"4. Time to first token seen by the client, ChatOpenAI and the bare openai SDK (chat_ttft {TTFT} s, 20 ms a token; best median of {rounds})"
    )

    async def one(model: ChatOpenAI, i: int) -> float:
        start = time.perf_counter()
        first = None
        async for chunk in model.astream(f"prompt {i}"):  # read to the end: a stream left open is not closed
            if chunk.content and first is None:
                first = time.perf_counter() - start
        return first

    async def one_sdk(client: Any, i: int) -> float:
        start = time.perf_counter()
        first = None
        stream = await client.chat.completions.create(
            model="agency-local", messages=[{"role": "user", "content": f"prompt {i}"}], stream=True
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content and first is None:
                first = time.perf_counter() - start
        return first

    async def main() -> None:
        import openai

        http = await shared_client("chat")
        model = chat_model(max_retries=0, http_async_client=http)
        sdk = openai.AsyncOpenAI(base_url=svc.chat_url, api_key="local", max_retries=0, http_client=http)
        await one(model, -1)  # warm: the first connection and the SDK's first request
        for k, (label, fn, client) in [
            (k, c) for k in levels for c in (("ChatOpenAI", one, model), ("openai", one_sdk, sdk))
        ]:
            medians, worst = [], []
            for _ in range(rounds):
                firsts = await asyncio.gather(*(fn(client, i) for i in range(k)))
                medians.append(statistics.median(firsts))
                worst.append(max(firsts))
            best = min(medians)
            ok = abs(best - TTFT) <= 0.1 * TTFT + 0.005
            at_service = statistics.median(svc.chat_stats().ttft[-k:])
            print(
                f"   {k:>3} streams, {label:<10}: median {_ms(best)}, worst {_ms(min(worst))} "
                f"(configured {TTFT * 1e3:.0f} ms; within 10 % + 5 ms: {ok}); at the service {_ms(at_service)}"
            )
        await close_clients()

    with start_service(chat_ttft=TTFT, chat_time_per_token=0.02) as svc:
        asyncio.run(main())


# -- 5. messages-mode overhead per token ---------------------------------------------------
def bench_messages(tokens: int = 1000, rounds: int = 5) -> None:
    from langgraph.graph import END, START, StateGraph

    from agency_lib.agency import chat_model
    from agency_lib.clients import close_clients, shared_client

    print(f"5. stream_mode='messages' overhead per token ({tokens} tokens, no delay; best of {rounds})")
    # the local model's answer to most prompts is short: ask for a long one in the Writer's format
    findings = "\n".join(f"- [s{i}] 't{i}'" for i in range(tokens // 6))
    writer_prompt = [
        {"role": "system", "content": __import__("agency_lib.chat", fromlist=["x"]).WRITER_INSTRUCTIONS},
        {"role": "user", "content": "Topic: bench\n" + findings},
    ]

    class S(TypedDict, total=False):
        text: str

    async def main() -> None:
        model = chat_model(max_retries=0, http_async_client=await shared_client("chat"))

        async def node(state: S) -> dict:
            return {"text": (await model.ainvoke(writer_prompt)).text}

        g = StateGraph(S)
        g.add_node("writer", node)
        g.add_edge(START, "writer")
        g.add_edge("writer", END)
        app = g.compile()
        direct, graph, n = [], [], 0
        for _ in range(rounds):
            t = time.perf_counter()
            n = len([c async for c in model.astream(writer_prompt) if c.content])
            direct.append(time.perf_counter() - t)
            t = time.perf_counter()
            m = len([c async for c, _ in app.astream({}, stream_mode="messages") if c.content])
            graph.append(time.perf_counter() - t)
            assert m == n
        d, gr = min(direct), min(graph)
        print(
            f"   {n} tokens: direct astream {_ms(d)} ({_us(d / n)} a token), "
            f"through messages mode {_ms(gr)} ({_us(gr / n)} a token): overhead {_us((gr - d) / n)} a token"
        )
        await close_clients()

    with start_service(chat_ttft=0.0, chat_time_per_token=0.0):
        asyncio.run(main())


if __name__ == "__main__":
    profile = "--profile" in sys.argv[1:]
    only = [a for a in sys.argv[1:] if a.isdigit()]
    for number, bench in [
        ("1", bench_recorder),
        ("2", lambda: bench_service(profile=profile)),
        ("2", bench_service_wrk),
        ("3", bench_send),
        ("4", bench_ttft),
        ("5", bench_messages),
    ]:
        if not only or number in only:
            bench()
