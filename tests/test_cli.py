"""The command line: `python -m agency_lib doctor` checks the set-up (its levels: tests/test_doctor.py),
`demo` draws serial vs concurrent research to a PNG, and bad arguments exit with code 2 and a message.

`demo` runs as a learner types it, in a fresh ``python -m agency_lib``; the others call `main` in this process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agency_lib.__main__ import main

REPO = Path(__file__).resolve().parent.parent


def agency_lib_cli(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENCY_CACHE_DIR": str(cache), "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "agency_lib", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_doctor_exits_0_and_prints_one_ok_line_per_check(tmp_path, monkeypatch, capsys):
    # In this process: the same main() that `python -m agency_lib` calls (the demo test runs that one).
    monkeypatch.setenv("AGENCY_CACHE_DIR", str(tmp_path))
    assert main(["doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    checks = [ln for ln in lines if ln.startswith("[")]
    assert checks and all(ln.startswith("[OK] ") for ln in checks)
    assert "[OK] langgraph 1.2.24 (tested: >=1.2.24,<1.3)" in lines  # the range of requirements.in
    assert "[OK] the local search service answers on 127.0.0.1" in lines
    assert lines[-1] == "All good: the course is ready to run."


@pytest.mark.slow  # about 6 s: a fresh Python, then the agency run serially (2.3 s of searches) and concurrently
def test_demo_writes_a_png_and_prints_the_speedup(tmp_path):
    out = tmp_path / "g.png"
    done = agency_lib_cli("demo", "--out", str(out), cache=tmp_path / "cache")
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    speedup = re.search(r"^speed-up of the research: (\d+\.\d)x$", done.stdout, re.MULTILINE)
    assert speedup, done.stdout
    assert float(speedup.group(1)) > 2  # 9 tool calls: serial waits for each, concurrent for the longest
    assert f"wrote {out}" in done.stdout


@pytest.mark.parametrize(
    ("out", "message"),
    [("gantt.txt", "--out must name a .png file, not 'gantt.txt'"), ("no/such/folder/g.png", "does not exist")],
)
def test_demo_with_a_bad_out_exits_2_with_a_message(out, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--out", out])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_serve_with_a_bad_knob_exits_2_with_the_knob_s_message(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--failure-rate", "2"])
    assert exit_.value.code == 2
    assert "failure_rate is a share of requests in [0, 1], not 2.0." in capsys.readouterr().err


def test_a_missing_command_exits_2_with_the_usage(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2
    assert "usage: python -m agency_lib" in capsys.readouterr().err
