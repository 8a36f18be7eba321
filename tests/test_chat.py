"""The local chat model: an OpenAI-compatible endpoint on the search service that the openai SDK and
ChatOpenAI talk to, with a slow first token, limits that answer 429 with Retry-After, seeded
failures, a 400 that says what to fix, counters, and a clean stop with streams open."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

from agency_lib import SearchService
from agency_lib.chat import LOCAL_MODEL, WRITER_INSTRUCTIONS, compose_reply, tokenize

HELLO = [{"role": "user", "content": "hello from the tests"}]
#: How early a timer may fire: the service runs on uvloop when it is installed (uvicorn's choice), whose timers
#: have a resolution of 1 ms, so a 0.2 s wait can end after 0.1990 s of time.perf_counter().
EARLY = 0.002


@pytest.fixture(scope="module")
def shared():
    with SearchService(chat_ttft=0.0) as svc:
        yield svc


@pytest.fixture
def service(shared: SearchService):
    """The module's service, quick (no first-token wait), no limits, counters zeroed."""
    shared.scenario(chat_ttft=0.0)
    return shared


def sdk(service: SearchService, max_retries: int = 0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=service.chat_url, api_key="local", max_retries=max_retries)


async def post(service: SearchService, body: object, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(base_url=service.chat_url, timeout=10) as client:
        if isinstance(body, bytes):
            return await client.post("/chat/completions", content=body, **kwargs)
        return await client.post("/chat/completions", json=body, **kwargs)


# -- the format the openai SDK reads --------------------------------------------------------------
def test_a_stream_parses_with_the_openai_sdk_into_the_composed_reply_and_ends_with_usage(service):
    async def main():
        async with sdk(service) as client:
            stream = await client.chat.completions.create(
                model=LOCAL_MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
            )
            return [chunk async for chunk in stream]

    chunks = asyncio.run(main())
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == compose_reply(HELLO)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage  # the last chunk: no choices, the usage asked for
    assert chunks[-1].choices == [] and usage.completion_tokens == len(tokenize(text))
    stats = service.chat_stats()
    assert (stats.requests, stats.streams, stats.ok, stats.tokens) == (1, 1, 1, len(tokenize(text)))
    assert len(stats.ttft) == 1


def test_a_plain_request_gets_one_chat_completion_with_usage(service):
    async def main():
        async with sdk(service) as client:
            return await client.chat.completions.create(model=LOCAL_MODEL, messages=HELLO)

    reply = asyncio.run(main())
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == compose_reply(HELLO)
    assert reply.usage.prompt_tokens == 4 and reply.usage.total_tokens == 4 + reply.usage.completion_tokens
    assert service.chat_stats().streams == 0


def test_chat_openai_streams_token_by_token_and_the_first_token_waits_ttft(service):
    service.scenario(chat_ttft=0.2, chat_time_per_token=0.005)
    model = ChatOpenAI(base_url=service.chat_url, api_key="local", model=LOCAL_MODEL, max_retries=0, stream_usage=True)

    async def main():
        start = time.perf_counter()
        arrivals, parts, usage = [], [], None
        async for chunk in model.astream("hello from the tests"):
            if chunk.content:
                arrivals.append(time.perf_counter() - start)
                parts.append(chunk.content)
            usage = chunk.usage_metadata or usage
        return arrivals, parts, usage

    arrivals, parts, usage = asyncio.run(main())
    assert "".join(parts) == compose_reply(HELLO)
    assert len(parts) == len(tokenize(compose_reply(HELLO))) > 10  # one chunk a token
    assert 0.2 - EARLY <= arrivals[0] < 0.2 * 1.5 + 0.05  # the first token: after ttft, not much later
    # then one token every 5 ms, on the service's schedule: token i is not sent before ttft + i * 5 ms (a late first
    # token is followed by the others catching up with the schedule, so the gaps alone would not be a fair test)
    early = [(i, t) for i, t in enumerate(arrivals) if t < 0.2 + 0.005 * i - EARLY]
    assert not early, f"tokens ahead of the 5 ms schedule (index, seconds): {early}"
    assert usage["output_tokens"] == len(parts)
    assert 0.2 - EARLY <= service.chat_stats().ttft[0] < 0.3


def test_the_writer_prompt_gets_a_draft_line_per_source():
    prompt = "Topic: async python\nFindings:\n- [web] 'A'\n- [web] 'B'\n- [kb] 'C'"
    messages = [{"role": "system", "content": WRITER_INSTRUCTIONS}, {"role": "user", "content": prompt}]
    assert compose_reply(messages) == "# Async Python\n\n- web: 2 findings, e.g. 'A'\n- kb: 1 findings, e.g. 'C'"
    assert "".join(tokenize(compose_reply(messages))) == compose_reply(messages)


# -- limits: 429 with Retry-After --------------------------------------------------------------------
def test_over_capacity_answers_429_with_retry_after_and_the_sdk_raises_rate_limit_error(service):
    service.scenario(chat_ttft=0.3, chat_capacity=2, chat_retry_after=0.2)

    async def main():
        async with sdk(service) as client:
            calls = [client.chat.completions.create(model=LOCAL_MODEL, messages=HELLO) for _ in range(4)]
            return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 2 and all(isinstance(e, openai.RateLimitError) for e in errors)
    assert "over capacity (2 requests in flight)" in str(errors[0])
    headers = errors[0].response.headers
    assert headers["retry-after-ms"] == "200" and headers["Retry-After"] == "1"
    stats = service.chat_stats()
    assert (stats.requests, stats.ok, stats.rejected, stats.peak_in_flight) == (4, 2, 2, 2)


def test_a_requests_per_second_limit_says_when_the_next_request_fits(service):
    service.scenario(chat_rate_limit=2)
    codes, waits = [], []
    for _ in range(3):
        r = asyncio.run(post(service, {"model": LOCAL_MODEL, "messages": HELLO}))
        codes.append(r.status_code)
        waits.append(r.headers.get("retry-after-ms"))
    assert codes == [200, 200, 429]
    assert 0 < int(waits[2]) <= 1000 and waits[2] is not None


def test_the_tokens_per_minute_limit_holds_under_concurrent_requests(service):
    cost = 4 + len(tokenize(compose_reply(HELLO)))  # prompt + answer tokens of one request
    service.scenario(chat_ttft=0.05, chat_tokens_per_minute=cost * 5 + cost // 2)

    async def main():
        async with httpx.AsyncClient(base_url=service.chat_url, timeout=10) as client:
            body = {"model": LOCAL_MODEL, "messages": HELLO}
            return await asyncio.gather(*(client.post("/chat/completions", json=body) for _ in range(20)))

    responses = asyncio.run(main())
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 5 and codes.count(429) == 15  # 5 requests' tokens fit in the minute, not 6
    rejected = next(r for r in responses if r.status_code == 429)
    assert "tokens-per-minute" in rejected.json()["error"]["message"]
    assert 55_000 < int(rejected.headers["retry-after-ms"]) <= 60_000  # when the first tokens leave the window
    assert service.chat_stats().rejected == 15


# -- seeded failures ------------------------------------------------------------------------------
def _statuses(service: SearchService, n: int) -> list[int]:
    async def main():
        async with httpx.AsyncClient(base_url=service.chat_url, timeout=10) as client:
            out = []
            for i in range(n):
                body = {"model": LOCAL_MODEL, "messages": [{"role": "user", "content": f"prompt {i % 4}"}]}
                out.append((await client.post("/chat/completions", json=body)).status_code)
            return out

    return asyncio.run(main())


def test_seeded_failures_reproduce_and_a_retry_gets_a_fresh_draw(service):
    service.scenario(chat_failure_rate=0.5, seed=3)
    first = _statuses(service, 16)
    service.scenario(chat_failure_rate=0.5, seed=3)  # counters and attempt memory zeroed
    assert _statuses(service, 16) == first
    assert set(first) == {200, 500, 503}  # 16 attempts at 4 prompts: some of each, retries drawn afresh
    assert service.chat_stats().failed == sum(s != 200 for s in first)
    service.scenario(chat_failure_rate=0.5, seed=4)
    assert _statuses(service, 16) != first


def test_the_sdk_retries_a_failing_model_twice_by_default_honouring_retry_after(service):
    service.scenario(chat_failure_rate=1.0, chat_retry_after=0.01)

    async def main():
        async with openai.AsyncOpenAI(base_url=service.chat_url, api_key="local") as client:  # max_retries: 2
            start = time.perf_counter()
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model=LOCAL_MODEL, messages=HELLO)
            return time.perf_counter() - start

    took = asyncio.run(main())
    assert service.chat_stats().requests == 3  # one call, three attempts
    assert took < 0.4  # waited the 10 ms the service asked for, not the SDK's own 0.5 s back-off


# -- bad requests and bad knobs -------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, says",
    [
        (b"{not json", "the request body is not JSON"),
        ({"model": LOCAL_MODEL}, "'messages' must be a non-empty list"),
        ({"messages": HELLO}, "'model' is required"),
        ({"model": LOCAL_MODEL, "messages": [{"role": "robot", "content": "hi"}]}, "messages[0] must be a dict with"),
        ({"model": LOCAL_MODEL, "messages": [{"role": "user", "content": 3}]}, "messages[0].content must be a string"),
        ({"model": LOCAL_MODEL, "messages": HELLO, "stream": "yes"}, "'stream' must be true or false"),
        ({"model": LOCAL_MODEL, "messages": HELLO, "n": 2}, "'n' must be 1"),
        ({"model": LOCAL_MODEL, "messages": HELLO, "stream_options": {"include_usage": True}}, "only allowed with"),
    ],
)
def test_a_malformed_request_gets_400_with_a_message_that_says_what_to_fix(service, body, says):
    r = asyncio.run(post(service, body))
    assert r.status_code == 400
    assert says in r.json()["error"]["message"]
    assert service.chat_stats().bad == 1


def test_the_sdk_shows_the_400_message_and_does_not_retry_it(service):
    async def main():
        async with sdk(service, max_retries=2) as client:
            await client.chat.completions.create(model=LOCAL_MODEL, messages=HELLO, n=3)

    with pytest.raises(openai.BadRequestError, match="'n' must be 1: the local model writes one answer"):
        asyncio.run(main())
    assert service.chat_stats().requests == 1


@pytest.mark.parametrize(
    "knobs, error, says",
    [
        ({"chat_ttft": -1}, ValueError, "chat_ttft must be a number of seconds from 0 to 30"),
        ({"chat_time_per_token": "fast"}, ValueError, "chat_time_per_token must be a number of seconds"),
        ({"chat_capacity": 0}, ValueError, "chat_capacity is the most requests in flight"),
        ({"chat_rate_limit": 0}, ValueError, "chat_rate_limit is requests per second"),
        ({"chat_tokens_per_minute": 1.5}, ValueError, "chat_tokens_per_minute is the most tokens per minute"),
        ({"chat_failure_rate": 2}, ValueError, "chat_failure_rate is a share of requests in [0, 1]"),
        ({"chat_tttf": 0.1}, TypeError, "unknown knob(s) ['chat_tttf']"),
    ],
)
def test_bad_chat_knobs_are_refused_with_a_clear_message_and_change_nothing(service, knobs, error, says):
    with pytest.raises(error) as info:
        service.scenario(**{"chat_capacity": 3, **knobs})
    assert says in str(info.value)
    assert service.chat.capacity is None  # the scenario set nothing
    with pytest.raises(error):
        SearchService(**knobs)


def test_scenario_sets_the_chat_knobs_and_restores_them_as_a_block(service):
    with service.scenario(chat_ttft=0.3, chat_capacity=4):
        assert (service.chat.ttft, service.chat.capacity) == (0.3, 4)
        service.scenario(capacity=2)  # the knobs not named go back to how the service started
        assert (service.chat.ttft, service.chat.capacity) == (0.0, None)
        service.configure(chat_ttft=0.2)
    assert service.chat.ttft == 0.0


# -- streams that end early -----------------------------------------------------------------------
def test_a_client_that_leaves_mid_stream_is_counted_and_frees_its_slot(service):
    service.scenario(chat_ttft=0.0, chat_time_per_token=0.02)

    async def main():
        async with sdk(service) as client:
            stream = await client.chat.completions.create(model=LOCAL_MODEL, messages=HELLO, stream=True)
            async for _ in stream:
                break
            await stream.close()  # the response is closed: the service sees the connection go
            for _ in range(100):
                if service.chat_stats().in_flight == 0:
                    break
                await asyncio.sleep(0.01)

    asyncio.run(main())
    stats = service.chat_stats()
    assert (stats.cancelled, stats.ok, stats.in_flight) == (1, 0, 0)
    assert 1 <= stats.tokens < len(tokenize(compose_reply(HELLO)))  # it stopped writing


def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_the_service_stops_at_once_with_streams_and_slow_answers_open():
    svc = SearchService(chat_ttft=5.0).start()
    port = svc.port
    errors: list[BaseException] = []

    async def main():
        async with openai.AsyncOpenAI(base_url=svc.chat_url, api_key="local", max_retries=0) as client:

            async def streamed():
                stream = await client.chat.completions.create(model=LOCAL_MODEL, messages=HELLO, stream=True)
                return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

            calls = [streamed() for _ in range(3)] + [
                client.chat.completions.create(model=LOCAL_MODEL, messages=HELLO) for _ in range(2)
            ]
            tasks = [asyncio.ensure_future(c) for c in calls]
            for _ in range(500):  # until all five are at the service
                if svc.chat_stats().in_flight == 5:
                    break
                await asyncio.sleep(0.01)
            start = time.perf_counter()
            await asyncio.to_thread(svc.stop)
            took = time.perf_counter() - start
            errors.extend(r for r in await asyncio.gather(*tasks, return_exceptions=True))
            return took

    took = asyncio.run(main())
    assert took < 1.0, f"stop() took {took:.2f} s with streams open"
    assert all(isinstance(e, openai.APIError) for e in errors), errors  # each call failed, none hung
    assert not [t for t in threading.enumerate() if t.name == f"search-service:{port}"]
    assert _refused(port)
    assert svc.chat_stats().in_flight == 0
