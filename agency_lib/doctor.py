"""The environment check: ``python -m agency_lib doctor`` prints one line per check, at one of three levels.

* ``[OK]``: as tested. A package version inside the ranges of ``requirements.in``, Python 3.11, a
  service, a knowledge base and a chart that work.
* ``[WARN]``: should work, but is not what the course was tested with: a version outside those
  ranges, a newer Python, a ``python3`` kernel that runs another Python. Printed outputs may then
  differ from the stored ones. The course runs on.
* ``[FAIL]``: breaks the course: Python older than 3.11, a package missing, no loopback port for
  the local service, a service, knowledge base or chart that does not work.

The advice at the end fits where the check runs: a local clone, Binder, a JupyterHub, or a
copy of ``agency_lib`` installed without the repository.
"""

from __future__ import annotations

import importlib.metadata as md
import io
import os
import re
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["run_doctor", "DoctorReport", "REQUIRED", "NOT_FOR_THE_KERNEL"]

#: The packages the course needs, and the versions it was tested with (requirements.txt's pins).
REQUIRED = {
    "langgraph": "1.2.24",
    "langchain-core": "1.8.3",
    "langchain-openai": "1.7.4",
    "langgraph-checkpoint-sqlite": "3.1.2",
    "langgraph-cli": "0.4.40",
    "httpx": "0.28.1",
    "starlette": "1.10.0",
    "uvicorn": "0.54.0",
    "aiosqlite": "0.22.1",
    "matplotlib": "3.11.2",
    "nest-asyncio": "1.6.0",
    "jupyterlab": "4.6.6",
    "ipykernel": "7.4.0",
    "nbval": "0.11.0",
}

#: Of those, the ones that run *around* the kernel (the lab, the test suite), not inside it. On
#: a JupyterHub or Binder the lab may run from another environment than the kernel, so these are
#: never a [FAIL]: only an untested version of one that is installed gets a [WARN].
NOT_FOR_THE_KERNEL = frozenset({"jupyterlab", "nbval"})

#: The oldest Python the course runs on, and the one it is tested on.
PYTHON_NEEDED, PYTHON_TESTED = (3, 11), (3, 11)

_REPO = Path(__file__).resolve().parent.parent
Level = Literal["OK", "WARN", "FAIL"]
Place = Literal["binder", "jupyterhub", "clone", "installed"]


@dataclass
class DoctorReport:
    """What `run_doctor` found: one (level, text) per check, and the advice it printed."""

    checks: list[tuple[Level, str]] = field(default_factory=list)
    advice: str = ""

    @property
    def failures(self) -> list[str]:
        """The [FAIL] lines: what breaks the course."""
        return [text for level, text in self.checks if level == "FAIL"]

    @property
    def warnings(self) -> list[str]:
        """The [WARN] lines: untested, but the course should run."""
        return [text for level, text in self.checks if level == "WARN"]

    @property
    def ok(self) -> bool:
        """True when nothing failed (warnings allowed)."""
        return not self.failures


# -- where are we, and what to advise ---------------------------------------------------------------
def _in_kernel() -> bool:
    """True inside a Jupyter kernel (a notebook cell), False in a terminal."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def where(env: Mapping[str, str] | None = None, repo: Path = _REPO) -> Place:
    """Where the course runs: Binder, a JupyterHub, a local clone of the repository, or an installed copy."""
    env = os.environ if env is None else env
    if any(k.startswith("BINDER_") for k in env):  # Binder runs a JupyterHub too: test it first
        return "binder"
    if "JUPYTERHUB_API_URL" in env or "JUPYTERHUB_USER" in env:
        return "jupyterhub"
    if (repo / "requirements.txt").exists():
        return "clone"
    return "installed"


def advice(place: Place, in_kernel: bool, wanted: list[str]) -> str:
    """How to get the tested versions, from where the learner is. `wanted`: requirements, e.g. 'httpx>=0.28,<0.29'."""
    if place == "binder":
        return (
            "On Binder the tested set is installed when the image is built: relaunch from the README's Binder "
            "button. If a fresh launch still says this, the build is broken: tell the course's maintainers."
        )
    if place == "jupyterhub":
        how = (
            "in a cell of this notebook, `%pip install -r ../requirements.txt` (it installs into this kernel's "
            "environment), then Kernel → Restart Kernel"
            if in_kernel
            else "in the course folder, `python -m pip install -r requirements.txt` with the Python of your kernel"
        )
        return f"On a JupyterHub: {how}. If you may not install packages there, ask the hub's admin."
    if place == "clone":
        return (
            "In your clone: `make lab` installs the tested set into .venv and opens the lab from it "
            "(`make clean lab` rebuilds .venv); in an environment of your own: `python -m pip install -r "
            "requirements.txt`."
        )
    quoted = " ".join(f'"{w}"' for w in wanted) or '"agency_lib"'
    return f"Install what is missing or untested: python -m pip install {quoted}"


# -- the ranges --------------------------------------------------------------------------------------
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.-]*)\s*((?:[<>=!~]=?|===)[^;#]*)?")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirements(lines: list[str]) -> dict[str, str]:
    """`{name: specifier}` from requirement lines such as ``httpx>=0.28,<0.29  # comment``."""
    ranges = {}
    for line in lines:
        m = _REQ.match(line)
        if m and m.group(2):
            ranges[_normalise(m.group(1))] = m.group(2).replace(" ", "").strip()
    return ranges


def _compatible(version: str) -> str:
    """The compatible-release range of a tested version: 1.2.24 → >=1.2.24,<1.3."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]] or [0]
    upper = f"{parts[0]}.{parts[1] + 1}" if len(parts) > 1 else str(parts[0] + 1)
    return f">={version},<{upper}"


def tested_ranges(repo: Path = _REPO) -> tuple[dict[str, str], str]:
    """The range each REQUIRED package is tested in, and where the ranges came from.

    requirements.in when the repository is there; else the installed agency_lib's own
    requirements; for a package neither names, the compatible release of its tested version.
    """
    ranges: dict[str, str] = {}
    source = "the tested versions"
    path = repo / "requirements.in"
    if path.exists():
        ranges, source = parse_requirements(path.read_text().splitlines()), "requirements.in"
    else:
        try:
            ranges = parse_requirements(md.requires("agency_lib") or [])
            source = "agency_lib's requirements"
        except md.PackageNotFoundError:
            pass
    return {name: ranges.get(_normalise(name), _compatible(want)) for name, want in REQUIRED.items()}, source


def in_range(version: str, spec: str) -> bool:
    """True when `version` satisfies `spec` (e.g. '>=1.2.24,<1.3'); pre-releases count as outside."""
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import InvalidVersion, Version
    except ImportError:  # packaging comes with langchain-core; without it, only the tested pin is OK
        return any(version == s.lstrip("=") for s in spec.split(",") if s.startswith("=="))
    try:
        return SpecifierSet(spec).contains(Version(version), prereleases=False)
    except InvalidVersion:
        return False


# -- the checks --------------------------------------------------------------------------------------
def check_python(version: tuple[int, ...] | None = None) -> tuple[Level, str]:
    """FAIL below 3.11, OK on 3.11, WARN above (it should run, but the stored outputs come from 3.11)."""
    v = tuple(sys.version_info[:3]) if version is None else tuple(version)
    text = f"Python {'.'.join(map(str, v))}"
    if v[:2] < PYTHON_NEEDED:
        return "FAIL", f"{text}: the course needs 3.11 or newer"
    if v[:2] == PYTHON_TESTED:
        return "OK", f"{text} (the course is tested on 3.11)"
    return "WARN", f"{text}: the course is tested on 3.11; it should run, but a few outputs may differ"


def check_package(name: str, spec: str, tested: str, have: str | None) -> tuple[Level, str]:
    """OK inside the tested range, WARN outside it, FAIL when missing (unless the kernel does not need it)."""
    if have is None:
        if name in NOT_FOR_THE_KERNEL:
            return "OK", f"{name} is not in this environment (the kernel does not need it)"
        return "FAIL", f"{name} is missing (the course needs {name}{spec})"
    if in_range(have, spec):
        return "OK", f"{name} {have} (tested: {spec})"
    return "WARN", f"{name} {have} is untested: the course is tested with {name}{spec} ({tested})"


def _installed(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def check_loopback() -> tuple[Level, str]:
    """FAIL when no TCP port can be opened and reached on 127.0.0.1 (the local service needs one)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            with socket.create_connection(server.getsockname(), timeout=5):
                pass
    except OSError as exc:
        return "FAIL", f"no loopback port: 127.0.0.1 refused a local connection ({type(exc).__name__}: {exc})"
    return "OK", "a loopback port opens on 127.0.0.1"


def check_kernel() -> tuple[Level, str]:
    """In a terminal: does the lab's 'python3' kernel run this Python? (In a kernel, the answer is yes.)"""
    if _in_kernel():
        return "OK", "running inside a notebook kernel: the lines above are this kernel's own"
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        exe = KernelSpecManager().get_kernel_spec("python3").argv[0]
    except NoSuchKernel:
        return "WARN", "no 'python3' kernel is installed: run `python -m ipykernel install --user`"
    if exe in ("python", "python3", sys.executable) or Path(exe).resolve() == Path(sys.executable).resolve():
        return "OK", "the notebook kernel 'python3' runs this environment"
    return (
        "WARN",
        "the notebook kernel 'python3' runs another Python: in the lab pick this environment's kernel "
        "(Kernel → Change Kernel), or start the lab from this environment (`make lab` in a clone)",
    )


def check_matplotlib() -> tuple[Level, str]:
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # a terminal: draw off-screen (a notebook keeps its backend)
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.barh([0], [1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    ok = buf.getvalue().startswith(b"\x89PNG")
    return ("OK", "matplotlib renders a PNG") if ok else ("FAIL", "matplotlib did not render a PNG")


def check_service() -> tuple[Level, str]:
    import httpx

    from .service import SearchService

    with SearchService(latency=0.0) as svc:
        r = httpx.get(f"{svc.url}/search/web", params={"q": "doctor"}, timeout=5)
    if r.status_code == 200:
        return "OK", "the local search service answers on 127.0.0.1"
    return "FAIL", f"the local search service answered {r.status_code}"


def check_kb() -> tuple[Level, str]:
    from .kb import query_kb_blocking

    hits = query_kb_blocking("event loop")
    if hits:
        return "OK", f"the knowledge base answers ({len(hits)} hits for 'event loop')"
    return "FAIL", "the knowledge base found nothing for 'event loop': its corpus is missing or empty"


def _run(check: Callable[[], tuple[Level, str]]) -> tuple[Level, str]:
    try:
        return check()
    except Exception as exc:  # a check that crashes is a failed check, said plainly
        return "FAIL", f"{check.__name__[6:]}: {type(exc).__name__}: {exc}"


def run_doctor(out: Callable[[str], None] = print) -> DoctorReport:
    """Print one [OK] / [WARN] / [FAIL] line per check, then advice; return the report.

    ``report.ok`` is True when nothing failed: warnings do not stop the course.
    """
    report = DoctorReport()

    def note(result: tuple[Level, str]) -> Level:
        report.checks.append(result)
        out(f"[{result[0]}] {result[1]}")
        return result[0]

    note(check_python())
    ranges, _ = tested_ranges()
    untested = []
    for name, tested in REQUIRED.items():
        if note(check_package(name, ranges[name], tested, _installed(name))) != "OK":
            untested.append(f"{name}{ranges[name]}")
    missing = {name for name in REQUIRED if _installed(name) is None} - NOT_FOR_THE_KERNEL
    if "ipykernel" not in missing:
        note(_run(check_kernel))
    if not missing & {"matplotlib"}:
        note(_run(check_matplotlib))
    if note(_run(check_loopback)) == "OK" and not missing & {"httpx", "starlette", "uvicorn"}:
        note(_run(check_service))
    if "aiosqlite" not in missing:
        note(_run(check_kb))

    fails, warns = len(report.failures), len(report.warnings)
    if untested or fails:
        report.advice = advice(where(), _in_kernel(), untested)
    if fails:
        out(f"{fails} [FAIL]: the course will not run until they are fixed. {report.advice}".rstrip())
    elif warns:
        out(
            f"{warns} [WARN]: the course should run, but not on the versions it was tested with, so some "
            f"outputs may differ from the stored ones. {report.advice}".rstrip()
        )
    else:
        out("All good: the course is ready to run.")
    return report
