"""agency_lib.diagnostics: asyncio's quiet reports, printed where they happen."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace

import pytest

from agency_lib import diagnostics
from agency_lib.diagnostics import report_loop_errors, report_slow_callbacks, report_unawaited


async def _work() -> int:
    return 1


def test_report_unawaited_prints_the_warning_of_a_dropped_coroutine(capsys: pytest.CaptureFixture[str]) -> None:
    with report_unawaited() as report:
        coro = _work()
        del coro
    assert report.unawaited() == ["coroutine '_work' was never awaited"]
    assert capsys.readouterr().out == "RuntimeWarning: coroutine '_work' was never awaited\n"


def test_report_unawaited_lets_an_error_through_and_still_reports(capsys: pytest.CaptureFixture[str]) -> None:
    def fail_with_a_coroutine_in_the_frame() -> None:
        coro = _work()  # noqa: F841 - held only by this frame, so by the traceback
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        with report_unawaited():
            fail_with_a_coroutine_in_the_frame()
    assert "never awaited" in capsys.readouterr().out


def test_report_unawaited_is_silent_when_everything_was_awaited(capsys: pytest.CaptureFixture[str]) -> None:
    with report_unawaited() as report:
        assert asyncio.run(_work()) == 1
    assert report.unawaited() == []
    assert capsys.readouterr().out == ""


def test_report_loop_errors_prints_a_task_exception_nobody_retrieved(capsys: pytest.CaptureFixture[str]) -> None:
    async def fails() -> None:
        raise ConnectionError("inbox down")

    async def main() -> None:
        with report_loop_errors():
            task = asyncio.create_task(fails())
            await asyncio.sleep(0.01)
            del task  # the finished task is collected with its exception never retrieved

    asyncio.run(main())
    assert capsys.readouterr().out == "event loop: Task exception was never retrieved (ConnectionError: inbox down)\n"


def test_report_loop_errors_restores_the_previous_handler() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        def mine(loop: asyncio.AbstractEventLoop, context: dict) -> None:
            return None

        loop.set_exception_handler(mine)
        with report_loop_errors():
            assert loop.get_exception_handler() is not mine
        assert loop.get_exception_handler() is mine

    asyncio.run(main())


def test_report_loop_errors_outside_a_loop_says_where_to_use_it() -> None:
    with pytest.raises(RuntimeError, match="needs a running event loop"):
        with report_loop_errors():
            pass


# -- report_slow_callbacks: debug mode's "Executing <Task ...> took 0.200 seconds", in the cell --------------
def _hold_the_loop(seconds: float = 0.15) -> None:
    time.sleep(seconds)  # a helper that blocks: what debug mode is for


async def _enrich() -> None:
    await asyncio.sleep(0.01)
    _hold_the_loop()
    await asyncio.sleep(0.01)  # the next await after the blocking call


def test_report_slow_callbacks_names_the_task_and_its_next_await(capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> report_slow_callbacks:
        with report_slow_callbacks(threshold=0.1) as report:
            await asyncio.create_task(_enrich(), name="enrich")
        return report

    report = asyncio.run(main())
    (step,) = [s for s in report.steps if s.task == "enrich"]
    assert step.seconds >= 0.15 and step.coroutines == ("_enrich",) and not step.finished
    line = _enrich.__code__.co_firstlineno + 3
    assert step.where == f"test_diagnostics.py:{line}"
    out = capsys.readouterr().out
    assert out.startswith("debug mode: 1 step held the loop for 0.1 s or more\n")
    assert f"task 'enrich': _enrich, next await at test_diagnostics.py:{line}" in out


def test_report_slow_callbacks_reports_a_task_that_finished_in_its_slow_step_and_a_plain_callback() -> None:
    async def blocks_then_returns() -> int:
        _hold_the_loop()
        return 1

    async def main() -> report_slow_callbacks:
        with report_slow_callbacks(threshold=0.1) as report:
            assert await asyncio.create_task(blocks_then_returns(), name="one-step") == 1
            asyncio.get_running_loop().call_soon(_hold_the_loop)
            await asyncio.sleep(0.2)
        return report

    report = asyncio.run(main())
    by_task = {s.task: s for s in report.steps}
    defined = f"test_diagnostics.py:{blocks_then_returns.__code__.co_firstlineno}"
    assert by_task["one-step"].finished and by_task["one-step"].where == defined
    assert f"(defined at {defined}), finished in that step" in str(by_task["one-step"])
    assert by_task[None].coroutines == ("_hold_the_loop()",) and "callback _hold_the_loop()" in str(by_task[None])


def test_report_slow_callbacks_on_a_loop_without_its_private_handle_reads_the_log_record(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # uvloop, say, has no `_current_handle`: the report still names the task and its next await, and says why
    # it shows only the outermost coroutine.
    monkeypatch.setattr(diagnostics, "_CURRENT_HANDLE", "_no_such_attribute")

    async def main() -> report_slow_callbacks:
        with report_slow_callbacks(threshold=0.1) as report:
            await asyncio.create_task(_enrich(), name="enrich")
        return report

    report = asyncio.run(main())
    (step,) = [s for s in report.steps if s.task == "enrich"]
    assert (
        step.coroutines == ("_enrich",) and step.where == f"test_diagnostics.py:{_enrich.__code__.co_firstlineno + 3}"
    )
    assert "has no `loop._no_such_attribute`" in capsys.readouterr().out


def test_a_slow_step_is_read_from_the_text_when_the_handle_is_not_what_we_expect() -> None:
    class Odd:
        @property
        def _callback(self) -> None:
            raise RuntimeError("not a handle we know")

    text = "<Task pending name='kb: x' coro=<research_one() running at /somewhere/agency.py:12>>"
    record = logging.LogRecord(
        "asyncio", logging.WARNING, __file__, 1, "Executing %s took %.3f seconds", (text, 0.2), None
    )
    step = diagnostics._slow_step(record, SimpleNamespace(_current_handle=Odd()))  # type: ignore[arg-type]
    assert step == diagnostics.SlowStep(0.2, "kb: x", ("research_one",), "agency.py:12")
    other = logging.LogRecord("asyncio", logging.WARNING, __file__, 1, "Executing %s took %s seconds", ("?", "x"), None)
    assert diagnostics._slow_step(other, SimpleNamespace()) is None  # type: ignore[arg-type]


def test_a_report_that_cannot_be_read_does_not_break_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(record: logging.LogRecord, loop: object) -> None:
        raise AttributeError("_fut_waiter")

    monkeypatch.setattr(diagnostics, "_slow_step", broken)

    async def main() -> report_slow_callbacks:
        with report_slow_callbacks(threshold=0.1) as report:
            await asyncio.create_task(_enrich(), name="enrich")
        return report

    steps = asyncio.run(main()).steps
    assert steps and "could not read this record: AttributeError: _fut_waiter" in str(steps[0])


def test_report_slow_callbacks_says_so_when_no_step_was_slow(capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> report_slow_callbacks:
        with report_slow_callbacks(threshold=0.5) as report:
            await asyncio.sleep(0.01)
        return report

    assert asyncio.run(main()).steps == []
    assert capsys.readouterr().out == "debug mode: no step held the loop for 0.5 s or more\n"


def test_report_slow_callbacks_restores_the_loop_and_the_logger_also_on_error() -> None:
    logger = logging.getLogger("asyncio")
    mine = logging.NullHandler()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_debug(False)
        loop.slow_callback_duration = 0.25
        logger.setLevel(logging.ERROR)
        logger.addHandler(mine)
        before = (list(logger.handlers), logger.level, logger.propagate)
        try:
            with pytest.raises(KeyError, match="boom"):
                with report_slow_callbacks(threshold=0.05):
                    assert loop.get_debug() and loop.slow_callback_duration == 0.05
                    assert logger.getEffectiveLevel() <= logging.WARNING and not logger.propagate
                    raise KeyError("boom")
            assert not loop.get_debug() and loop.slow_callback_duration == 0.25
            assert (list(logger.handlers), logger.level, logger.propagate) == before
        finally:
            logger.removeHandler(mine)
            logger.setLevel(logging.NOTSET)

    asyncio.run(main())


def test_report_slow_callbacks_keeps_debug_mode_on_if_it_was_on() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        with report_slow_callbacks():
            pass
        assert loop.get_debug()

    asyncio.run(main())


def test_report_slow_callbacks_as_async_with_also_times_the_blocks_own_code() -> None:
    async def with_async_with() -> report_slow_callbacks:
        async with report_slow_callbacks(threshold=0.1) as report:
            _hold_the_loop()  # the block's own code, with no await after it: `async with` times it
        return report

    async def with_with() -> report_slow_callbacks:
        with report_slow_callbacks(threshold=0.1) as report:
            _hold_the_loop()  # before the block's first await: the loop decided not to time this step
            await asyncio.sleep(0)
        return report

    seen = asyncio.run(with_async_with())
    assert [s.coroutines[-1].rsplit(".", 1)[-1] for s in seen.steps] == ["with_async_with"]
    assert asyncio.run(with_with()).steps == []


def test_report_slow_callbacks_ignores_another_threads_event_loop() -> None:
    async def elsewhere() -> None:
        asyncio.get_running_loop().set_debug(True)
        asyncio.get_running_loop().slow_callback_duration = 0.05
        await asyncio.sleep(0)
        _hold_the_loop(0.1)
        await asyncio.sleep(0)

    async def main() -> report_slow_callbacks:
        with report_slow_callbacks(threshold=0.05) as report:
            await asyncio.to_thread(asyncio.run, elsewhere())
        return report

    logger = logging.getLogger("asyncio")
    logger.addHandler(logging.NullHandler())  # (the other loop's record goes here once we have stopped listening)
    try:
        assert asyncio.run(main()).steps == []
    finally:
        logger.handlers.clear()


def test_report_slow_callbacks_rejects_a_bad_threshold_and_needs_a_running_loop() -> None:
    for bad in (0, -1, "0.1", True, 100):
        with pytest.raises(ValueError, match="threshold is the seconds"):
            report_slow_callbacks(threshold=bad)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="needs a running event loop"):
        with report_slow_callbacks():
            pass
