"""Self-checks for notebook 08 (streaming): the Writer's tokens with their node, one retry layer.

* `await check_writer_tokens(fn, app, inputs)`: runs the learner's ``writer_tokens(app, inputs)``
  and checks it returns ``(node, token)`` pairs of the Writer only, in order, which join into the
  draft the Writer wrote (the check runs the graph once more with ``ainvoke`` to know the draft).
* `await check_one_retry_layer(make_model, service)`: puts the learner's chat model in a Writer
  under ``RetryPolicy(max_attempts=3)``, against the local chat model down (every request fails),
  then flaky, and counts the requests at the service.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from . import Feedback, failed, passed

__all__ = ["check_writer_tokens", "check_one_retry_layer", "RETRY_ATTEMPTS"]

#: The RetryPolicy attempts `check_one_retry_layer` puts around the learner's Writer.
RETRY_ATTEMPTS = 3


async def check_writer_tokens(fn: Callable[..., Any], app: Any, inputs: dict[str, Any]) -> Feedback:
    """Check ``await fn(app, inputs)`` returns the Writer's streamed tokens as (node, token) pairs."""
    if not callable(fn):
        return failed(f"writer_tokens is {fn!r}, not a function: define async def writer_tokens(app, inputs).")
    if not inspect.iscoroutinefunction(fn):
        return failed(
            "writer_tokens is a plain def: `async for` over app.astream(...) needs an async def.",
            "write it as async def writer_tokens(app, inputs): ... and await it.",
        )
    pairs = await fn(app, inputs)
    if not isinstance(pairs, list) or not pairs:
        return failed(
            f"writer_tokens returned {pairs!r}: no tokens.",
            "stream with app.astream(inputs, stream_mode='messages'): each item is (chunk, metadata); "
            "keep (metadata['langgraph_node'], chunk.content) when the content is not empty.",
        )

    def is_pair(p: object) -> bool:
        return isinstance(p, tuple) and len(p) == 2 and all(isinstance(x, str) for x in p)

    if not all(is_pair(p) for p in pairs):
        bad = next(p for p in pairs if not is_pair(p))
        return failed(
            f"each item should be a pair of strings (node, token); one is {bad!r}.",
            "append (metadata['langgraph_node'], chunk.content), not the chunk itself.",
        )
    nodes = sorted({node for node, _ in pairs})
    if nodes != ["writer"]:
        return failed(
            f"the pairs come from the nodes {nodes}: the Editor asks the chat model too, so its tokens stream "
            "on the same mode.",
            "keep only the items whose metadata['langgraph_node'] == 'writer'.",
        )
    if any(token == "" for _, token in pairs):
        return failed(
            "some tokens are empty strings: the stream also carries chunks without text (the end, the usage).",
            "skip a chunk whose content is empty.",
        )
    draft = (await app.ainvoke(inputs)).get("draft", "")
    text = "".join(token for _, token in pairs)
    if text != draft:
        return failed(
            f"the tokens join into {len(text)} characters, the draft has {len(draft)}: some are missing or repeated.",
            "keep every writer token in the order they came, and do not stop early.",
        )
    return passed(f"{len(pairs)} tokens, all from the writer, in order: they join into the draft.")


async def check_one_retry_layer(make_model: Callable[[], Any], service: Any) -> Feedback:
    """Check that a Writer using ``make_model()`` under RetryPolicy(3) sends at most 3 requests to a dead model."""
    import openai
    from langchain_openai import ChatOpenAI
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import RetryPolicy

    from ..agency import AgencyState, writer_messages

    if not callable(make_model):
        return failed(f"make_writer_model is {make_model!r}, not a function that returns a ChatOpenAI.")
    model = make_model()
    if not isinstance(model, ChatOpenAI):
        return failed(
            f"make_writer_model() returned a {type(model).__name__}, not a ChatOpenAI.",
            "return ChatOpenAI(base_url=service.chat_url, api_key='local', model='agency-local', ...).",
        )
    if (model.openai_api_base or "").rstrip("/") != service.chat_url:
        return failed(
            f"the model talks to {model.openai_api_base!r}, not the local service ({service.chat_url}).",
            "pass base_url=service.chat_url.",
        )

    async def writer(state: AgencyState) -> dict[str, Any]:
        reply = await model.ainvoke(writer_messages(state["topic"], state["findings"]))
        return {"draft": reply.text}

    g = StateGraph(AgencyState)
    g.add_node(
        "writer", writer, retry_policy=RetryPolicy(max_attempts=RETRY_ATTEMPTS, initial_interval=0.01, jitter=False)
    )
    g.add_edge(START, "writer")
    g.add_edge("writer", END)
    app = g.compile()
    inputs = {"topic": "retries", "findings": [{"source": "web", "query": "retries", "title": "Retry-After"}]}

    async def requests_at(failure_rate: float) -> tuple[int, BaseException | None]:
        # seed 6: at a failure rate of 0.5 this prompt's first attempt fails and its second succeeds
        with service.scenario(chat_ttft=0.0, chat_failure_rate=failure_rate, chat_retry_after=0.01, seed=6):
            try:
                await app.ainvoke(inputs)
                error = None
            except Exception as e:
                error = e
            return service.chat_stats().requests, error

    down, error = await requests_at(1.0)
    if not isinstance(error, openai.APIStatusError):
        return failed(
            f"with the model down, the Writer should fail with the service's 503, but got "
            f"{type(error).__name__}: {error}",
            "make a new model in make_writer_model() each time it is called, in this notebook's event loop.",
        )
    sdk = model.max_retries
    if down > RETRY_ATTEMPTS:
        return failed(
            f"with the model down, one Writer sent {down} requests: RetryPolicy's {RETRY_ATTEMPTS} attempts × "
            f"(1 + the client's max_retries={sdk}) — two layers retry, and their attempts multiply.",
            "the node already has a RetryPolicy: let only it retry, with ChatOpenAI(..., max_retries=0).",
        )
    flaky, error = await requests_at(0.5)
    if error is not None:
        return failed(
            f"with a model that fails half the time, the Writer never wrote its draft ({flaky} requests).",
            "one layer should still retry: keep the RetryPolicy's attempts.",
        )
    return passed(
        f"one retry layer: {down} requests while the model was down (RetryPolicy's {RETRY_ATTEMPTS} attempts, "
        f"max_retries={sdk}), and the draft written when it was only flaky ({flaky} requests)."
    )
