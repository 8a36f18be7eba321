"""The agency's shared parts: its state and the Planner, Writer and Editor nodes.

The Researcher is what the course teaches, so each notebook writes its own. The Writer and
the Editor ask a chat model, through the client a learner would use in production,
``langchain_openai.ChatOpenAI`` (see `chat_model`):

* **by default, the local service's chat model**: ``ChatOpenAI(base_url=service.chat_url,
  api_key="local", model="agency-local", timeout=..., max_retries=...)``, offline. Its answers
  are composed from the prompt (`agency_lib.chat`), so a draft is the same on every run;
* with **no service running**, the same answer, composed in this process after
  ``WRITER_LATENCY`` seconds (no HTTP);
* with **environment variables**, a real provider, through the same code. The course never asks
  for a key, and its tests and notebooks run the local default.

  - ``AGENCY_CHAT_MODEL``: the provider's model name, e.g. ``gpt-4o-mini`` (an ``openai:``
    prefix is dropped);
  - ``AGENCY_CHAT_BASE_URL``: an OpenAI-compatible endpoint, e.g. ``https://api.openai.com/v1``
    (the default when only the model is set);
  - ``AGENCY_CHAT_API_KEY``: its key; else ``OPENAI_API_KEY``, as ChatOpenAI reads it.

  Setting either of the first two switches the Writer and the Editor to the provider.
"""

from __future__ import annotations

import asyncio
import operator
import os
import re
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

import httpx
from langchain_core.rate_limiters import BaseRateLimiter

from .chat import EDITOR_INSTRUCTIONS, LOCAL_MODEL, WRITER_INSTRUCTIONS, compose_reply
from .clients import NO_TLS, shared_client
from .service import current_service
from .tools import SOURCES

if TYPE_CHECKING:  # imported where a model is made: langchain_openai takes about 1 s to import
    from langchain_openai import ChatOpenAI

__all__ = [
    "AgencyState",
    "plan_queries",
    "planner",
    "writer",
    "editor",
    "chat_model",
    "writer_messages",
    "editor_messages",
    "editor_verdict",
    "WRITER_LATENCY",
    "CHAT_TIMEOUT",
    "CHAT_MAX_RETRIES",
]

#: How long the Writer and the Editor take when no service runs, standing in for a model call.
WRITER_LATENCY = 0.05
#: The chat model's timeout per request (seconds) and its client's own retries (the openai SDK's default).
CHAT_TIMEOUT = 10.0
CHAT_MAX_RETRIES = 2
ENV_MODEL, ENV_BASE_URL, ENV_API_KEY = "AGENCY_CHAT_MODEL", "AGENCY_CHAT_BASE_URL", "AGENCY_CHAT_API_KEY"


class AgencyState(TypedDict, total=False):
    """What flows through the agency. `findings` and `errors` merge with `operator.add`."""

    topic: str
    n_queries: int  # how many queries the Planner makes (default 3); a key the graph must know to keep it
    queries: list[str]
    findings: Annotated[list[dict[str, Any]], operator.add]
    errors: Annotated[list[str], operator.add]
    draft: str
    article: str
    revisions: int
    approved: bool


_ANGLES = ["", "pitfalls", "best practices", "benchmarks", "case study", "checklist", "history", "tools"]


def plan_queries(topic: str, n: int = 3) -> list[str]:
    """The Planner's queries for a topic: the topic itself, then angles on it."""
    if not isinstance(topic, str) or not topic.strip():
        raise ValueError(f"topic must be a non-empty string, e.g. 'async python', not {topic!r}.")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(_ANGLES):
        raise ValueError(f"n must be an int from 1 to {len(_ANGLES)}, not {n!r}.")
    topic = topic.strip()
    return [f"{topic} {angle}".strip() for angle in _ANGLES[:n]]


async def planner(state: AgencyState) -> dict[str, Any]:
    """Planner node: turn the topic into search queries (``state['n_queries']``, default 3)."""
    n = state.get("n_queries", 3)
    return {"queries": plan_queries(state["topic"], n)}


def writer_messages(topic: str, findings: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The Writer's prompt: its instructions, the topic, and one line per finding, grouped by source."""
    by_source: dict[str, list[dict[str, Any]]] = {}
    for f in sorted(findings, key=lambda f: (f.get("source", ""), f.get("query", ""), f.get("title", ""))):
        by_source.setdefault(f.get("source", "?"), []).append(f)
    lines = [f"Topic: {str(topic).replace(chr(10), ' ')}", "Findings (source, title):"]
    for source in [s for s in SOURCES if s in by_source] + sorted(set(by_source) - set(SOURCES)):
        lines += [f"- [{source}] {f.get('title', '')!r}" for f in by_source[source]]
    return [{"role": "system", "content": WRITER_INSTRUCTIONS}, {"role": "user", "content": "\n".join(lines)}]


def editor_messages(draft: str, sources: tuple[str, ...] = SOURCES) -> list[dict[str, str]]:
    """The Editor's prompt: its instructions, the sources a draft must cite, and the draft."""
    prompt = f"Sources: {', '.join(sources)}\nDraft:\n{draft}"
    return [{"role": "system", "content": EDITOR_INSTRUCTIONS}, {"role": "user", "content": prompt}]


def editor_verdict(reply: str, sources: tuple[str, ...] = SOURCES) -> list[str]:
    """The sources the Editor's answer says are missing (none when it says 'approved')."""
    text = reply.strip().lower()
    if text.startswith("approved"):
        return []
    named = re.split(r"[\s,;.:]+", text)
    missing = [s for s in sources if s in named]
    return missing or list(sources)  # not approved, and no source named: none counts as cited


def chat_model(
    *,
    timeout: float = CHAT_TIMEOUT,
    max_retries: int = CHAT_MAX_RETRIES,
    http_async_client: httpx.AsyncClient | None = None,
    rate_limiter: BaseRateLimiter | None = None,
) -> ChatOpenAI:
    """The chat model the Writer and the Editor ask: the local service's, or the provider's (see above).

    ``max_retries`` is the client's own retries (the openai SDK retries 429s, 5xx and lost
    connections, honouring Retry-After): under a LangGraph ``RetryPolicy`` the attempts multiply.
    ``rate_limiter`` (e.g. langchain_core's ``InMemoryRateLimiter``) paces the calls to a quota.
    """
    if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
        raise ValueError(f"max_retries is the client's own retries (an int ≥ 0), not {max_retries!r}.")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 600:
        raise ValueError(f"timeout is seconds per request (0 to 600), not {timeout!r}.")
    from langchain_openai import ChatOpenAI

    model = os.environ.get(ENV_MODEL, "").strip().removeprefix("openai:")
    base_url = os.environ.get(ENV_BASE_URL, "").strip()
    if model or base_url:  # a real provider
        key = os.environ.get(ENV_API_KEY) or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise RuntimeError(
                f"{ENV_MODEL} / {ENV_BASE_URL} point the Writer at a real chat model, but no key is set: "
                f"set {ENV_API_KEY} (or OPENAI_API_KEY), or unset them to use the local model."
            )
        return ChatOpenAI(
            base_url=base_url or None,
            api_key=key,
            model=model or "gpt-4o-mini",
            timeout=timeout,
            max_retries=max_retries,
            http_async_client=http_async_client,
            rate_limiter=rate_limiter,
        )
    service = current_service()  # a clear error if none runs
    return ChatOpenAI(
        base_url=service.chat_url,
        api_key="local",
        model=LOCAL_MODEL,
        timeout=timeout,
        max_retries=max_retries,
        stream_usage=True,  # the service sends the token counts at the end of a stream
        http_async_client=http_async_client,
        rate_limiter=rate_limiter,
        http_client=httpx.Client(verify=NO_TLS),  # never used by the async nodes; spares building a TLS one
    )


def _uses_provider() -> bool:
    return bool(os.environ.get(ENV_MODEL, "").strip() or os.environ.get(ENV_BASE_URL, "").strip())


async def _ask(messages: list[dict[str, str]], max_retries: int = CHAT_MAX_RETRIES) -> str:
    """The chat model's answer to `messages`; without a service (and no provider), composed here."""
    if not _uses_provider():
        try:
            current_service()
        except RuntimeError:  # no local service: the same answer, without the HTTP
            await asyncio.sleep(WRITER_LATENCY)
            return compose_reply(messages)
        model = chat_model(max_retries=max_retries, http_async_client=await shared_client("chat"))
        return (await model.ainvoke(messages)).text
    # A provider: a client of this call's own. (A ChatOpenAI made without one shares a client that
    # langchain-openai caches per base URL, across event loops: the next asyncio.run would get
    # "RuntimeError: Event loop is closed".)
    async with httpx.AsyncClient() as http:
        return (await chat_model(max_retries=max_retries, http_async_client=http).ainvoke(messages)).text


async def writer(state: AgencyState, *, max_retries: int = CHAT_MAX_RETRIES) -> dict[str, Any]:
    """Writer node: a draft from the findings, written by the chat model (see the module's docstring).

    ``max_retries`` is the chat client's own retries: pass 0 when the node has a ``RetryPolicy``,
    so that only one layer retries.
    """
    return {"draft": await _ask(writer_messages(state["topic"], state.get("findings", [])), max_retries)}


async def editor(state: AgencyState, *, max_retries: int = CHAT_MAX_RETRIES) -> dict[str, Any]:
    """Editor node: approve a draft that cites every source, else send it back (counted in `revisions`).

    ``max_retries``: as for `writer`.
    """
    draft = state.get("draft", "")
    missing = editor_verdict(await _ask(editor_messages(draft), max_retries))
    revisions = state.get("revisions", 0) + 1
    approved = not missing or revisions >= 3
    article = draft if not missing else draft + "\n\n(editor: missing sources " + ", ".join(missing) + ")"
    return {"article": article, "revisions": revisions, "approved": approved}
