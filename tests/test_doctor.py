"""The doctor's three levels: [OK] as tested, [WARN] untested but should run, [FAIL] breaks the course.

Only a [FAIL] makes `python -m agency_lib doctor` exit 1 (and `make lab` still opens the lab);
the advice fits where the learner is: a clone, Binder, a JupyterHub, or an installed copy.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agency_lib import doctor
from agency_lib.__main__ import main

REPO = Path(__file__).resolve().parent.parent


# -- Python --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("version", "level"), [((3, 10, 14), "FAIL"), ((3, 11, 0), "OK"), ((3, 11, 9), "OK"), ((3, 12, 4), "WARN")]
)
def test_python_older_than_3_11_fails_newer_warns(version, level):
    got, text = doctor.check_python(version)
    assert got == level, text
    assert text.startswith("Python " + ".".join(map(str, version)))


# -- packages ------------------------------------------------------------------------------------
def test_a_version_inside_the_range_is_ok_even_if_it_is_not_the_pin():
    assert doctor.check_package("langgraph", ">=1.2.24,<1.3", "1.2.24", "1.2.31") == (
        "OK",
        "langgraph 1.2.31 (tested: >=1.2.24,<1.3)",
    )


@pytest.mark.parametrize("have", ["1.3.0", "1.2.20", "1.2.25rc1"])
def test_a_version_outside_the_range_or_a_pre_release_warns(have):
    level, text = doctor.check_package("langgraph", ">=1.2.24,<1.3", "1.2.24", have)
    assert level == "WARN"
    assert f"langgraph {have} is untested" in text and ">=1.2.24,<1.3" in text


def test_a_missing_package_fails_and_names_what_is_needed():
    assert doctor.check_package("httpx", ">=0.28,<0.29", "0.28.1", None) == (
        "FAIL",
        "httpx is missing (the course needs httpx>=0.28,<0.29)",
    )


@pytest.mark.parametrize("name", sorted(doctor.NOT_FOR_THE_KERNEL))
def test_the_lab_and_the_test_runner_are_not_the_kernel_s_requirements(name):
    level, text = doctor.check_package(name, ">=1,<2", "1.0", None)
    assert level == "OK" and "not in this environment" in text
    assert doctor.check_package(name, ">=1,<2", "1.0", "2.0")[0] == "WARN"  # installed but untested: said


# -- the ranges ----------------------------------------------------------------------------------
def test_the_ranges_come_from_requirements_in_in_a_clone():
    ranges, source = doctor.tested_ranges(REPO)
    assert source == "requirements.in"
    assert ranges["langgraph"] == ">=1.2.24,<1.3"
    assert ranges["ipykernel"] == ">=7.4,<8"
    assert set(ranges) == set(doctor.REQUIRED)


def test_without_requirements_in_the_installed_package_s_requirements_are_used(tmp_path):
    ranges, source = doctor.tested_ranges(tmp_path)  # no requirements.in there: an installed copy
    assert source == "agency_lib's requirements"
    assert doctor.in_range("0.28.1", ranges["httpx"])
    assert not doctor.in_range("0.29.0", ranges["httpx"])
    assert ranges["nest-asyncio"] == ">=1.6.0,<1.7"  # not in agency_lib's requirements: its tested pin's release


def test_requirement_lines_parse_with_comments_and_spaces():
    lines = ["# a comment", "", "httpx >= 0.28, <0.29   # the client", "ruff>=0.17,<0.18", "plain-name"]
    assert doctor.parse_requirements(lines) == {"httpx": ">=0.28,<0.29", "ruff": ">=0.17,<0.18"}


# -- the loopback port ---------------------------------------------------------------------------
def test_no_loopback_port_fails(monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError("Operation not permitted")

    monkeypatch.setattr(socket, "socket", refuse)
    level, text = doctor.check_loopback()
    assert level == "FAIL" and text.startswith("no loopback port")


def test_a_loopback_port_opens_here():
    assert doctor.check_loopback()[0] == "OK"


# -- where the learner is, and the advice --------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "place"),
    [
        ({"BINDER_LAUNCH_HOST": "https://mybinder.org/", "JUPYTERHUB_USER": "x"}, "binder"),
        ({"JUPYTERHUB_API_URL": "http://hub:8081/hub/api"}, "jupyterhub"),
        ({}, "clone"),
    ],
)
def test_where_the_course_runs(env, place):
    assert doctor.where(env, REPO) == place


def test_an_installed_copy_without_the_repository(tmp_path):
    assert doctor.where({}, tmp_path) == "installed"


@pytest.mark.parametrize(
    ("place", "in_kernel", "says"),
    [
        ("clone", False, "make lab"),
        ("binder", True, "relaunch"),
        ("jupyterhub", True, "%pip install -r ../requirements.txt"),
        ("jupyterhub", False, "python -m pip install -r requirements.txt"),
        ("installed", False, 'python -m pip install "httpx>=0.28,<0.29"'),
    ],
)
def test_the_advice_fits_the_place(place, in_kernel, says):
    assert says in doctor.advice(place, in_kernel, ["httpx>=0.28,<0.29"])


# -- the whole run: levels, summary line, exit code ----------------------------------------------
@pytest.fixture
def quick(monkeypatch):
    """run_doctor with the slow checks (service, knowledge base, chart, kernel) answered OK."""
    for name in ("check_service", "check_kb", "check_matplotlib", "check_kernel"):
        monkeypatch.setattr(doctor, name, lambda name=name: ("OK", name))
    monkeypatch.setattr(doctor, "check_python", lambda: ("OK", "Python 3.11.7"))
    return monkeypatch


def installed(versions):
    def version(name):
        return versions.get(name, doctor.REQUIRED[name])

    return version


def test_all_ok(quick):
    lines = []
    report = doctor.run_doctor(lines.append)
    assert report.ok and not report.warnings
    assert all(line.startswith("[OK] ") for line in lines[:-1])
    assert lines[-1] == "All good: the course is ready to run."


def test_an_untested_version_warns_and_the_course_runs_on(quick, capsys):
    quick.setattr(doctor, "_installed", installed({"httpx": "0.29.0"}))
    lines = []
    report = doctor.run_doctor(lines.append)
    assert report.ok, "a warning is not a failure"
    assert report.warnings == ["httpx 0.29.0 is untested: the course is tested with httpx>=0.28,<0.29 (0.28.1)"]
    assert "[WARN] httpx 0.29.0 is untested" in "\n".join(lines)
    assert lines[-1].startswith("1 [WARN]: the course should run")
    assert main(["doctor"]) == 0  # the command line too: exit 0, so `make lab` goes on
    capsys.readouterr()


def test_a_missing_package_fails_and_skips_the_checks_that_need_it(quick, capsys):
    quick.setattr(doctor, "_installed", installed({"uvicorn": None}))
    lines = []
    report = doctor.run_doctor(lines.append)
    assert not report.ok
    assert report.failures == ["uvicorn is missing (the course needs uvicorn>=0.54,<0.60)"]
    assert "check_service" not in "\n".join(lines)  # the service cannot start without uvicorn
    assert lines[-1].startswith("1 [FAIL]: the course will not run until they are fixed.")
    assert main(["doctor"]) == 1
    capsys.readouterr()


def test_no_loopback_port_fails_the_run_and_skips_the_service(quick, capsys):
    quick.setattr(doctor, "check_loopback", lambda: ("FAIL", "no loopback port: refused"))
    report = doctor.run_doctor(lambda line: None)
    assert report.failures == ["no loopback port: refused"]
    assert ("OK", "check_service") not in report.checks


def test_a_crashing_check_is_a_failure_said_plainly(quick):
    def broken():
        raise RuntimeError("no display")

    broken.__name__ = "check_matplotlib"
    quick.setattr(doctor, "check_matplotlib", broken)
    report = doctor.run_doctor(lambda line: None)
    assert report.failures == ["matplotlib: RuntimeError: no display"]
