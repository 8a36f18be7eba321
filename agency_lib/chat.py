"""The local chat model: an OpenAI-compatible ``POST /v1/chat/completions`` on the search service.

`SearchService` mounts it on its own server (same thread, same loop), so
``ChatOpenAI(base_url=f"{service.url}/v1", api_key="local", model="agency-local")`` talks to it
offline, streaming or not, as it would to a real provider. It writes no prose: its answer is
composed from the prompt (`compose_reply`), so it is the same on every run, and the Writer's
draft and the Editor's verdict can be compared by nbval. Knobs (set them on the service as
``chat_<knob>``, e.g. ``service.scenario(chat_ttft=0.3)``):

* ``ttft``: seconds from the request to the first token (a model "thinking");
* ``time_per_token``: seconds between tokens after that;
* ``capacity``: requests in flight above it are answered 429 at once;
* ``rate_limit``: requests per second, and ``tokens_per_minute``: prompt + answer tokens in
  any 60 s, above which requests are answered 429, saying when one would fit;
* ``failure_rate``: the share of requests answered 503 or 500 (after ``ttft``, before any token), drawn from the
  service's ``seed``, the prompt and the attempt, so a retry gets a fresh draw;
* ``retry_after``: the wait (seconds) that 429s over capacity and the 5xx failures ask for.

Every 429 and 5xx carries ``Retry-After`` (whole seconds, as HTTP says) and ``retry-after-ms``
(what the openai SDK reads first). A malformed request gets a 400 whose message says what to
fix. Counters (`ChatStats`): requests, tokens sent, 429s, failures, streams the client left,
and the time to the first token of each streamed answer, measured at the service.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "ChatEndpoint",
    "ChatStats",
    "CHAT_DEFAULTS",
    "LOCAL_MODEL",
    "WRITER_INSTRUCTIONS",
    "EDITOR_INSTRUCTIONS",
    "compose_reply",
    "tokenize",
]

#: The model name the local endpoint reports (it answers to any name).
LOCAL_MODEL = "agency-local"
#: The knobs a service starts with: a quick model, no limits, no failures.
CHAT_DEFAULTS: dict[str, Any] = {
    "ttft": 0.05,
    "time_per_token": 0.0,
    "capacity": None,
    "rate_limit": None,
    "tokens_per_minute": None,
    "failure_rate": 0.0,
    "retry_after": 0.05,
}
#: The system messages of the agency's Writer and Editor: the local model answers them in kind.
WRITER_INSTRUCTIONS = (
    "You are the Writer of a content agency. Write a short draft from the findings: a '# Title' line, "
    "then one line per source: '- source: N findings, e.g. <a title>'."
)
EDITOR_INSTRUCTIONS = (
    "You are the Editor of a content agency. Check that the draft has a line for every source listed. "
    "Answer 'approved', or 'missing: ' and the sources it lacks, separated by commas."
)
_ROLES = ("system", "developer", "user", "assistant", "tool")
_TOKEN = re.compile(r"\s*\S+|\s+")
_TTFT_KEPT = 10_000  # the most recent first-token times kept in the counters


def tokenize(text: str) -> list[str]:
    """The local model's tokens: each word with the white space before it (they join back to `text`)."""
    return _TOKEN.findall(text)


def _unit(*parts: object) -> float:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


# -- what the local model says --------------------------------------------------------------
def _writer_reply(prompt: str) -> str:
    topic = ""
    by_source: dict[str, list[str]] = {}
    for line in prompt.splitlines():
        if line.startswith("Topic: "):
            topic = line[len("Topic: ") :]
        m = re.match(r"^- \[([^\]]*)\] (.*)$", line)
        if m:
            by_source.setdefault(m.group(1), []).append(m.group(2))
    lines = [f"# {topic.strip().title()}", ""]
    for source, titles in by_source.items():
        lines.append(f"- {source}: {len(titles)} findings, e.g. {titles[0]}")
    if not by_source:
        lines.append("- (no findings: the research came back empty)")
    return "\n".join(lines)


def _editor_reply(prompt: str) -> str:
    head, _, draft = prompt.partition("\nDraft:\n")
    m = re.search(r"^Sources: (.*)$", head, re.MULTILINE)
    sources = [s.strip() for s in m.group(1).split(",") if s.strip()] if m else []
    missing = [s for s in sources if f"- {s}:" not in draft]
    return "approved" if not missing else "missing: " + ", ".join(missing)


def compose_reply(messages: list[dict[str, str]]) -> str:
    """What the local model answers to `messages` (``[{"role": ..., "content": ...}]``): no model, a rule.

    To the Writer's instructions, a draft made from the findings in the prompt; to the Editor's,
    a verdict on the draft; to anything else, a short reply that quotes the last user message.
    """
    system = next((m["content"] for m in messages if m["role"] in ("system", "developer")), "")
    user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    if system.startswith(WRITER_INSTRUCTIONS[:40]):
        return _writer_reply(user)
    if system.startswith(EDITOR_INSTRUCTIONS[:40]):
        return _editor_reply(user)
    words = user.split()
    quoted = " ".join(words[:12]) + (" …" if len(words) > 12 else "")
    return (
        f"This is the course's local model: it answers every prompt with a rule, not a thought. "
        f"You said {len(words)} words, starting with: {quoted!r}."
    )


# -- counters --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChatStats:
    """What the chat endpoint saw since the service started (or since `reset_stats`)."""

    requests: int = 0  # every POST to /v1/chat/completions
    streams: int = 0  # ... of which asked for a stream
    ok: int = 0  # answered in full
    rejected: int = 0  # 429: over capacity, the rate limit or the tokens-per-minute limit
    failed: int = 0  # injected 500/503
    bad: int = 0  # 400: a malformed request
    cancelled: int = 0  # the client left before the answer was complete
    tokens: int = 0  # answer tokens sent (for a stream: those written before it ended)
    in_flight: int = 0  # being answered now
    peak_in_flight: int = 0
    ttft: tuple[float, ...] = ()  # per streamed answer: seconds from its arrival to its first token

    def __str__(self) -> str:
        text = (
            f"chat requests {self.requests} ({self.streams} streamed): ok {self.ok}, rejected (429) "
            f"{self.rejected}, failed (5xx) {self.failed}, bad (400) {self.bad}, cancelled {self.cancelled}; "
            f"tokens {self.tokens}; in flight {self.in_flight}, peak {self.peak_in_flight}"
        )
        if self.ttft:
            text += f"; first token after {sorted(self.ttft)[len(self.ttft) // 2]:.2f} s (median)"
        return text


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _error(status: int, message: str, kind: str, param: str | None = None, headers: dict | None = None) -> Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return JSONResponse(body, status, headers=headers)


def _retry_headers(wait: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(wait))), "retry-after-ms": str(max(1, math.ceil(wait * 1000)))}


def _content_text(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    raise _BadRequest(
        f"messages[{i}].content must be a string (or a list of text parts), not {type(content).__name__}.",
        f"messages[{i}].content",
    )


def _parse(body: Any) -> tuple[str, list[dict[str, str]], bool, bool]:
    """(model, messages, stream, include_usage) from a request body, or a _BadRequest saying what to fix."""
    if not isinstance(body, dict):
        raise _BadRequest("the request body must be a JSON object like {'model': ..., 'messages': [...]}.")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _BadRequest("'model' is required: a model name, e.g. 'agency-local'.", "model")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise _BadRequest(
            "'messages' must be a non-empty list like [{'role': 'user', 'content': 'hello'}].", "messages"
        )
    messages = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise _BadRequest(f"messages[{i}] must be a dict with a 'role' in {list(_ROLES)}.", f"messages[{i}].role")
        messages.append({"role": m["role"], "content": _content_text(m.get("content", ""), i)})
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _BadRequest(f"'stream' must be true or false, not {stream!r}.", "stream")
    if body.get("n", 1) not in (1, None):
        raise _BadRequest(f"'n' must be 1: the local model writes one answer, not {body['n']!r}.", "n")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise _BadRequest("'stream_options' must be like {'include_usage': true}.", "stream_options")
    if options and not stream:
        raise _BadRequest("'stream_options' is only allowed with 'stream': true.", "stream_options")
    return model, messages, stream, bool(options.get("include_usage", False))


class ChatEndpoint:
    """The chat endpoint's knobs, counters and routes; `SearchService` makes one and mounts it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seed = 0
        self.ttft: float = CHAT_DEFAULTS["ttft"]
        self.time_per_token: float = CHAT_DEFAULTS["time_per_token"]
        self.capacity: int | None = None
        self.rate_limit: float | None = None
        self.tokens_per_minute: int | None = None
        self.failure_rate = 0.0
        self.retry_after: float = CHAT_DEFAULTS["retry_after"]
        self._counts: dict[str, int] = {}
        self._ttft: deque[float] = deque(maxlen=_TTFT_KEPT)
        self._in_flight = 0
        self._requests: deque[float] = deque()  # admission times in the last second
        self._tokens: deque[tuple[float, int]] = deque()  # (admission time, tokens) in the last minute
        self._attempts: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self.reset_stats()

    # -- knobs ---------------------------------------------------------------------------
    def configure(self, **knobs: Any) -> ChatEndpoint:
        """Change knobs (see the module's docstring): ttft, time_per_token, capacity, rate_limit, ..."""
        unknown = set(knobs) - set(CHAT_DEFAULTS) - {"seed"}
        if unknown:
            raise TypeError(
                f"unknown chat knob(s) {sorted(unknown)}; the chat knobs are {sorted(CHAT_DEFAULTS)} "
                "(on the service: chat_ttft=..., chat_capacity=..., ...)."
            )
        for name in ("ttft", "time_per_token", "retry_after"):
            if name in knobs:
                v = knobs[name]
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 30:
                    raise ValueError(f"chat_{name} must be a number of seconds from 0 to 30, not {v!r}.")
                setattr(self, name, float(v))
        for name, what in (("capacity", "requests in flight"), ("tokens_per_minute", "tokens per minute")):
            if name in knobs:
                v = knobs[name]
                if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                    raise ValueError(f"chat_{name} is the most {what} (an int ≥ 1) or None for no limit, not {v!r}.")
                setattr(self, name, v)
        if "rate_limit" in knobs:
            r = knobs["rate_limit"]
            if r is not None and (not isinstance(r, (int, float)) or isinstance(r, bool) or r <= 0):
                raise ValueError(f"chat_rate_limit is requests per second (> 0) or None for no limit, not {r!r}.")
            self.rate_limit = None if r is None else float(r)
        if "failure_rate" in knobs:
            f = knobs["failure_rate"]
            if not isinstance(f, (int, float)) or isinstance(f, bool) or not 0 <= f <= 1:
                raise ValueError(f"chat_failure_rate is a share of requests in [0, 1], not {f!r}.")
            self.failure_rate = float(f)
        if "seed" in knobs:
            self.seed = knobs["seed"]
        return self

    def knobs(self) -> dict[str, Any]:
        """The knobs now, by name (without the ``chat_`` prefix)."""
        return {name: getattr(self, name) for name in CHAT_DEFAULTS}

    # -- counters ------------------------------------------------------------------------
    def stats(self) -> ChatStats:
        """A snapshot of the counters."""
        with self._lock:
            return ChatStats(
                **self._counts, in_flight=self._in_flight, ttft=tuple(self._ttft)
            )  # in_flight is live, never reset

    def reset_stats(self) -> None:
        """Zero the counters, the rate windows and the attempt memory (so a rerun draws the same failures)."""
        with self._lock:
            self._counts = {k: 0 for k in ("requests", "streams", "ok", "rejected", "failed", "bad", "cancelled")}
            self._counts.update(tokens=0, peak_in_flight=self._in_flight)
            self._ttft.clear()
            self._requests.clear()
            self._tokens.clear()
            self._attempts.clear()

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    # -- life cycle ----------------------------------------------------------------------
    def shutdown(self) -> None:
        """Make every stream and pending answer end now (the server is stopping); any thread may call it."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # the loop closed meanwhile: nothing is waiting on it
                pass

    def _bind(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._stopping is None:
            self._loop, self._stopping = loop, asyncio.Event()
        return self._stopping

    async def _wait(self, seconds: float, stopping: asyncio.Event) -> bool:
        """Sleep `seconds`; True if the service began stopping meanwhile."""
        if stopping.is_set():
            return True
        if seconds <= 0:
            return False
        try:
            await asyncio.wait_for(stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    # -- admission -----------------------------------------------------------------------
    def _admit(self, key: str, tokens: int) -> tuple[int, str, float]:
        """Count a request and decide: (status, reason, wait). For a 429, wait is the retry delay."""
        now = time.monotonic()
        with self._lock:
            c = self._counts
            if self.rate_limit is not None:
                while self._requests and now - self._requests[0] >= 1.0:
                    self._requests.popleft()
                if len(self._requests) >= self.rate_limit:
                    c["rejected"] += 1
                    return 429, "over the rate limit (requests per second)", 1.0 - (now - self._requests[0])
            if self.tokens_per_minute is not None:
                while self._tokens and now - self._tokens[0][0] >= 60.0:
                    self._tokens.popleft()
                used = sum(n for _, n in self._tokens)
                if used + tokens > self.tokens_per_minute:
                    c["rejected"] += 1
                    freed, wait = 0, 60.0
                    for t, n in self._tokens:  # when have enough of the minute's tokens left the window?
                        freed += n
                        if used - freed + tokens <= self.tokens_per_minute:
                            wait = 60.0 - (now - t)
                            break
                    return 429, f"over the tokens-per-minute limit ({self.tokens_per_minute})", wait
            if self.capacity is not None and self._in_flight >= self.capacity:
                c["rejected"] += 1
                return 429, f"over capacity ({self.capacity} requests in flight)", self.retry_after
            if self.rate_limit is not None:
                self._requests.append(now)
            if self.tokens_per_minute is not None:
                self._tokens.append((now, tokens))
            self._in_flight += 1
            c["peak_in_flight"] = max(c["peak_in_flight"], self._in_flight)
            attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        if _unit(self.seed, "chat-fail", key, attempt) < self.failure_rate:
            return (503 if attempt % 2 else 500), "an injected failure", self.retry_after
        return 200, "", 0.0

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    # -- the HTTP side -------------------------------------------------------------------
    def routes(self) -> list[Route]:
        """The routes to mount on the service's app."""
        return [Route("/v1/chat/completions", self._completions, methods=["POST"])]

    async def _completions(self, request: Request) -> Response:
        arrived = time.perf_counter()  # the first token is due `ttft` after this
        stopping = self._bind()
        self._count("requests")
        try:
            try:
                body = json.loads(await request.body())
            except ValueError as e:
                raise _BadRequest(f"the request body is not JSON ({e}).") from None
            model, messages, stream, include_usage = _parse(body)
        except _BadRequest as e:
            self._count("bad")
            return _error(400, str(e), "invalid_request_error", e.param)
        if stream:
            self._count("streams")
        text = compose_reply(messages)
        answer = tokenize(text)
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        key = hashlib.blake2b(json.dumps(messages).encode(), digest_size=8).hexdigest()
        status, reason, wait = self._admit(key, prompt_tokens + len(answer))
        if status == 429:
            return _error(
                429, f"too many requests: {reason}; retry later", "rate_limit_error", None, _retry_headers(wait)
            )
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(answer)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        meta = {"id": f"chatcmpl-local-{key}", "created": int(time.time()), "model": model}
        if status != 200 or not stream:
            try:
                # a failure comes after the "thinking" time; a full answer after all its tokens too
                wait_for = self.ttft + (self.time_per_token * len(answer) if status == 200 else 0.0)
                stopped = await self._wait(wait_for, stopping)
            except BaseException:
                self._count("cancelled")  # the client went away while the answer was being "written"
                self._leave()
                raise
            self._leave()
            if stopped:
                return _error(503, "the service is stopping", "server_error", None, _retry_headers(self.retry_after))
            if status != 200:
                self._count("failed")
                return _error(status, f"{reason}: try again", "server_error", None, _retry_headers(wait))
            self._count("ok")
            self._count("tokens", len(answer))
            reply = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": reply, "finish_reason": "stop", "logprobs": None}
            return JSONResponse({**meta, "object": "chat.completion", "choices": [choice], "usage": usage})
        progress = {"sent": 0, "complete": False}
        return _Stream(
            self._stream(meta, answer, usage if include_usage else None, arrived, stopping, progress),
            on_end=lambda: self._stream_ended(progress),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    def _stream_ended(self, progress: dict[str, Any]) -> None:
        with self._lock:
            self._in_flight -= 1
            self._counts["tokens"] += progress["sent"]
            self._counts["ok" if progress["complete"] else "cancelled"] += 1

    async def _stream(
        self,
        meta: dict[str, Any],
        answer: list[str],
        usage: dict[str, int] | None,
        arrived: float,
        stopping: asyncio.Event,
        progress: dict[str, Any],
    ) -> AsyncIterator[str]:
        def event(delta: dict[str, Any], finish: str | None = None) -> str:
            chunk = {**meta, "object": "chat.completion.chunk"}
            chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
            return f"data: {json.dumps(chunk)}\n\n"

        for i, token in enumerate(answer):
            due = arrived + self.ttft + i * self.time_per_token  # on a schedule: sleeps do not add up their lag
            if await self._wait(due - time.perf_counter(), stopping):
                error = {"error": {"message": "the service stopped during the stream", "type": "server_error"}}
                yield f"data: {json.dumps(error)}\n\n"
                return
            if i == 0:
                with self._lock:
                    self._ttft.append(time.perf_counter() - arrived)
                yield event({"role": "assistant", "content": token})
            else:
                yield event({"content": token})
            progress["sent"] += 1
        yield event({}, "stop")
        if usage is not None:
            yield f"data: {json.dumps({**meta, 'object': 'chat.completion.chunk', 'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"
        progress["complete"] = True


class _Stream(StreamingResponse):
    """A streamed answer that reports its end however it ends: finished, client gone, or server stopping."""

    def __init__(self, content: AsyncIterator[str], *, on_end: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_end = on_end

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_end()
