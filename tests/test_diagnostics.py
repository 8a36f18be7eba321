"""agency_lib.diagnostics: asyncio's quiet reports, printed where they happen."""

from __future__ import annotations

import asyncio

import pytest

from agency_lib.diagnostics import report_loop_errors, report_unawaited


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
