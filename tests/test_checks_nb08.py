"""Notebook 08's self-checks: a wrong answer gets ❌ and a hint, a right one ✅."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph

from agency_lib import AgencyState, SearchService
from agency_lib.agency import chat_model, writer_messages
from agency_lib.checks import nb08
from agency_lib.clients import close_clients, shared_client

FINDINGS = [{"source": s, "query": "q", "title": f"{s} title"} for s in ("web", "kb", "api")]
INPUTS = {"topic": "streams", "findings": FINDINGS}


@pytest.fixture(scope="module")
def service():
    with SearchService(chat_ttft=0.0) as svc:
        yield svc


def run(coro):
    async def main():
        try:
            return await coro
        finally:
            await close_clients()

    return asyncio.run(main())


async def model() -> ChatOpenAI:
    """The local chat model with this loop's shared HTTP client: each test runs its own event loop.

    (A ChatOpenAI made without ``http_async_client`` shares a client cached per base URL across
    loops: the next ``asyncio.run`` gets ``RuntimeError: Event loop is closed``.)
    """
    return chat_model(max_retries=0, http_async_client=await shared_client("chat"))


def writer_and_editor(service: SearchService):
    """A small graph whose Writer and Editor both call the local chat model (so both stream tokens)."""

    async def writer(state: AgencyState) -> dict:
        return {"draft": (await (await model()).ainvoke(writer_messages(state["topic"], state["findings"]))).text}

    async def editor(state: AgencyState) -> dict:
        return {"article": (await (await model()).ainvoke("check " + state["draft"])).text}

    g = StateGraph(AgencyState)
    g.add_node("writer", writer)
    g.add_node("editor", editor)
    g.add_edge(START, "writer")
    g.add_edge("writer", "editor")
    g.add_edge("editor", END)
    return g.compile()


async def right(app, inputs):
    return [
        (meta["langgraph_node"], chunk.content)
        async for chunk, meta in app.astream(inputs, stream_mode="messages")
        if meta["langgraph_node"] == "writer" and chunk.content
    ]


async def every_node(app, inputs):
    return [(m["langgraph_node"], c.content) async for c, m in app.astream(inputs, stream_mode="messages") if c.content]


async def with_empty(app, inputs):
    return [(m["langgraph_node"], c.content) async for c, m in app.astream(inputs, stream_mode="messages")]


async def chunks_not_pairs(app, inputs):
    return [c async for c, m in app.astream(inputs, stream_mode="messages")]


async def node_and_chunk(app, inputs):
    return [
        (m["langgraph_node"], c)
        async for c, m in app.astream(inputs, stream_mode="messages")
        if m["langgraph_node"] == "writer" and c.content
    ]


async def stops_early(app, inputs):
    return (await right(app, inputs))[:3]


def stub_sync(app, inputs):
    return []


async def stub(app, inputs):
    return []


@pytest.mark.parametrize(
    "fn, says",
    [
        (stub, "no tokens"),
        (stub_sync, "plain def"),
        (every_node, "the Editor asks the chat model too"),
        (with_empty, "the Editor asks the chat model too"),
        (chunks_not_pairs, "a pair of strings"),
        (node_and_chunk, "a pair of strings"),
        (stops_early, "some are missing or repeated"),
        (None, "not a function"),
    ],
)
def test_check_writer_tokens_explains_what_is_wrong(service, fn, says):
    feedback = run(nb08.check_writer_tokens(fn, writer_and_editor(service), INPUTS))
    assert not feedback and says in str(feedback), str(feedback)


def test_check_writer_tokens_passes_the_writers_tokens_in_order(service):
    feedback = run(nb08.check_writer_tokens(right, writer_and_editor(service), INPUTS))
    assert feedback, str(feedback)
    assert "all from the writer" in str(feedback)


def test_check_one_retry_layer_finds_the_multiplying_layer_and_passes_one(service):
    clients: list[httpx.AsyncClient] = []

    def local(max_retries: int) -> ChatOpenAI:
        clients.append(httpx.AsyncClient())  # made on the check's loop, closed below
        kwargs = {"api_key": "local", "model": "agency-local", "http_async_client": clients[-1]}
        return ChatOpenAI(base_url=service.chat_url, max_retries=max_retries, **kwargs)

    async def check(max_retries: int):
        try:
            return await nb08.check_one_retry_layer(lambda: local(max_retries), service)
        finally:
            await clients[-1].aclose()

    bad = run(check(2))
    assert not bad and "sent 9 requests" in str(bad) and "max_retries=0" in str(bad), str(bad)
    good = run(check(0))
    assert good and "3 requests while the model was down" in str(good), str(good)
    assert service.chat.failure_rate == 0.0  # the check put the knobs back


def test_check_one_retry_layer_wants_a_chat_openai_on_the_local_service(service):
    assert "not a ChatOpenAI" in str(run(nb08.check_one_retry_layer(lambda: "model", service)))
    elsewhere = run(
        nb08.check_one_retry_layer(
            lambda: ChatOpenAI(base_url="http://127.0.0.1:9/v1", api_key="x", model="m", max_retries=0), service
        )
    )
    assert "not the local service" in str(elsewhere)
