"""The self-checks of notebook 06: right answers pass, wrong ones fail with a hint that points at the fix."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from langgraph.types import RetryPolicy, default_retry_on

from agency_lib import start_service
from agency_lib.checks import nb06


# -- gather_partial ----------------------------------------------------------------------------
async def gather_partial(coros):
    outcomes = await asyncio.gather(*coros, return_exceptions=True)
    results = [o for o in outcomes if not isinstance(o, BaseException)]
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    return results, errors


async def plain_gather(coros):
    return await asyncio.gather(*coros), []


async def one_by_one(coros):
    results, errors = [], []
    for c in coros:
        try:
            results.append(await c)
        except Exception as e:
            errors.append(e)
    return results, errors


async def completion_order(coros):
    tasks = [asyncio.ensure_future(c) for c in coros]
    await asyncio.wait(tasks)
    results = [t.result() for t in reversed(tasks) if t.exception() is None]
    errors = [t.exception() for t in tasks if t.exception() is not None]
    return results, errors


async def errors_as_text(coros):
    results, errors = await gather_partial(coros)
    return results, [str(e) for e in errors]


async def mixed(coros):
    return await asyncio.gather(*coros, return_exceptions=True), []


async def ignores_its_input(coros):
    return [], []


def sync_version(coros):
    return [], []


def run(fn):
    return asyncio.run(nb06.check_gather_partial(fn))


def test_gather_partial_right_answer_passes():
    fb = run(gather_partial)
    assert fb and str(fb).startswith("✅") and "3 results and 2 errors" in str(fb)


def test_plain_gather_fails_with_return_exceptions_hint():
    fb = run(plain_gather)
    assert not fb
    assert "escaped" in fb.message and "ValueError" in fb.message
    assert any("return_exceptions=True" in h for h in fb.hints)


def test_one_by_one_is_right_but_too_slow():
    fb = run(one_by_one)
    assert not fb and "one after another" in fb.message
    assert any("asyncio.gather" in h for h in fb.hints)


def test_wrong_order_is_reported():
    fb = run(completion_order)
    assert not fb and "order" in fb.message


def test_errors_must_be_exception_objects():
    fb = run(errors_as_text)
    assert not fb and "exception objects" in fb.message


def test_results_must_not_hold_exceptions():
    fb = run(mixed)
    assert not fb and "results holds exceptions" in fb.message


def test_unawaited_coroutines_are_reported_and_closed(recwarn):
    fb = run(ignores_its_input)
    assert not fb and "never awaited" in fb.message
    assert not [w for w in recwarn if "never awaited" in str(w.message)]


def test_sync_function_fails_with_async_def_hint():
    fb = run(sync_version)
    assert not fb and any("async def" in h for h in fb.hints)


def test_gather_partial_bad_argument_is_a_clear_error():
    with pytest.raises(TypeError, match="expects your function"):
        run("gather_partial")


# -- retry_on predicate -------------------------------------------------------------------------
def should_retry(exc):
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return code == 429 or 500 <= code < 600
    return default_retry_on(exc)


def test_retry_on_right_answer_passes():
    fb = nb06.check_retry_on(should_retry)
    assert fb and str(fb).startswith("✅")


def test_default_retry_on_misses_429():
    fb = nb06.check_retry_on(default_retry_on)
    assert not fb
    assert "ServiceError 429" in fb.message and "HTTPStatusError 429" in fb.message
    assert "503" not in fb.message  # the 5xx are right already
    assert fb.hints


def test_retry_everything_is_wrong_for_4xx_and_bugs():
    fb = nb06.check_retry_on(lambda exc: True)
    assert not fb
    assert "404" in fb.message and "ValueError" in fb.message


def test_only_status_codes_forgets_connection_errors():
    def status_only(exc):
        return isinstance(exc, httpx.HTTPStatusError) and (
            exc.response.status_code == 429 or exc.response.status_code >= 500
        )

    fb = nb06.check_retry_on(status_only)
    assert not fb and "ConnectionError" in fb.message
    assert any("default_retry_on" in h for h in fb.hints)


def test_predicate_that_crashes_gets_an_isinstance_hint():
    fb = nb06.check_retry_on(lambda exc: exc.response.status_code == 429)
    assert not fb and "raised AttributeError" in fb.message
    assert any("isinstance" in h for h in fb.hints)


def test_async_predicate_is_refused():
    async def async_pred(exc):
        return True

    fb = nb06.check_retry_on(async_pred)
    assert not fb and "plain `def" in fb.hints[0]


@pytest.mark.parametrize("bad", [None, "should_retry", ValueError])
def test_retry_on_bad_argument_is_a_clear_error(bad):
    with pytest.raises(TypeError, match="expects your predicate"):
        nb06.check_retry_on(bad)


# -- check_retry_prediction (a real service: web latency 0.02 s) --------------------------------
#: 3 attempts of 0.02 s and waits of 0.02 s + 0.04 s: 0.12 s, 3 requests
POLICY = RetryPolicy(max_attempts=3, initial_interval=0.02, backoff_factor=2, jitter=False)


@pytest.fixture(scope="module")
def service():
    svc = start_service(latency=0.02, seed=1)
    yield svc
    svc.stop()


def predict(prediction, policy=POLICY):
    return asyncio.run(nb06.check_retry_prediction(prediction, policy))


def test_retry_prediction_right_answer_passes_and_restores_the_knobs(service):
    fb = predict({"requests": 3, "seconds": 0.12})
    assert fb and "3 requests" in fb.message
    assert "0.02 s + 0.04 s" in fb.message  # the arithmetic is explained
    assert service.failure_rate == 0.0  # the check's scenario was a block: the knobs came back


def test_retry_prediction_unanswered_is_not_measured(service):
    service.scenario()
    fb = predict({"requests": None, "seconds": None})
    assert not fb and "no prediction yet" in fb.message
    assert service.stats().requests == 0  # nothing measured, nothing given away
    assert any("max_attempts" not in h and "attempts" in h for h in fb.hints)


def test_retry_prediction_forgetting_the_first_try_is_explained(service):
    fb = predict({"requests": 2, "seconds": 0.12})
    assert not fb and "you predicted 2 requests; the service counted 3" in fb.message
    assert any("first try" in h for h in fb.hints)


def test_retry_prediction_far_off_time_is_explained(service):
    fb = predict({"requests": 3, "seconds": 1.0})
    assert not fb and "you predicted 1.00 s" in fb.message
    assert any("backoff_factor" in h for h in fb.hints)


@pytest.mark.parametrize(
    ("prediction", "says"),
    [
        (0.75, "a dict with the keys"),
        ({"requests": 3}, "a dict with the keys"),
        ({"requests": "3", "seconds": 0.1}, "whole number"),
        ({"requests": 3, "seconds": True}, "whole number"),
    ],
)
def test_retry_prediction_malformed_gets_a_hint(service, prediction, says):
    fb = predict(prediction)
    assert not fb and says in fb.message and fb.hints


def test_retry_prediction_needs_a_policy_without_jitter():
    with pytest.raises(TypeError, match="needs the RetryPolicy"):
        predict({"requests": 3, "seconds": 0.1}, policy="flaky_policy")
    with pytest.raises(ValueError, match="jitter=True"):
        predict({"requests": 3, "seconds": 0.1}, policy=RetryPolicy())
