"""The environment check: ``python -m agency_lib doctor`` prints [OK] / [FAIL] per requirement."""

from __future__ import annotations

import importlib.metadata as md
import io
import re
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["run_doctor", "REQUIRED"]

#: The packages the course imports, and the versions it was tested with (see requirements.txt).
REQUIRED = {
    "langgraph": "1.2.24",
    "langchain-core": "1.8.3",
    "langgraph-checkpoint-sqlite": "3.1.2",
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


def _pins_from_requirements() -> dict[str, str]:
    """The pins of the repo's requirements.txt when agency_lib runs from a checkout."""
    path = Path(__file__).resolve().parent.parent / "requirements.txt"
    pins = dict(REQUIRED)
    if path.exists():
        for line in path.read_text().splitlines():
            m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line)
            if m and m.group(1).lower().replace("_", "-") in pins:
                pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def _check_python() -> tuple[bool, str]:
    v = sys.version_info
    return v >= (3, 11), f"Python {v.major}.{v.minor}.{v.micro} (3.11 or newer needed)"


def _check_kernel() -> tuple[bool, str]:
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    exe = spec.argv[0]
    same = Path(exe).resolve() == Path(sys.executable).resolve() or exe in ("python", "python3", sys.executable)
    where = "this environment" if same else "another Python"
    return same, f"the notebook kernel 'python3' runs {where}"


def _check_matplotlib() -> tuple[bool, str]:
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # a terminal: draw off-screen (a notebook keeps its backend)
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.barh([0], [1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue().startswith(b"\x89PNG"), "matplotlib renders a PNG"


def _check_service() -> tuple[bool, str]:
    import httpx

    from .service import SearchService

    with SearchService(latency=0.0) as svc:
        r = httpx.get(f"{svc.url}/search/web", params={"q": "doctor"}, timeout=5)
    return r.status_code == 200, "the local search service answers on 127.0.0.1"


def _check_kb() -> tuple[bool, str]:
    from .kb import query_kb_blocking

    hits = query_kb_blocking("event loop")
    return bool(hits), f"the knowledge base answers ({len(hits)} hits for 'event loop')"


def run_doctor(out: Callable[[str], None] = print) -> bool:
    """Print one [OK] / [FAIL] line per requirement; return True when all pass."""
    ok_all = True

    def report(ok: bool, text: str) -> None:
        nonlocal ok_all
        ok_all &= ok
        out(f"[{'OK' if ok else 'FAIL'}] {text}")

    report(*_check_python())
    for name, want in _pins_from_requirements().items():
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            report(False, f"{name} is missing: run `make lab` (or pip install -r requirements.txt)")
            continue
        if have == want:
            report(True, f"{name} {have}")
        else:
            report(False, f"{name} {have}, but the course is tested with {want}: run `make lab` to get the pinned set")
    for check in (_check_kernel, _check_matplotlib, _check_service, _check_kb):
        try:
            report(*check())
        except Exception as exc:  # a check that crashes is a failed check, said plainly
            report(False, f"{check.__name__[7:]}: {type(exc).__name__}: {exc}")
    out("All good: the course is ready to run." if ok_all else "Something is missing: fix the [FAIL] lines above.")
    return ok_all
