"""Run All twice in one kernel: every notebook must give its stored outputs on the second pass too.

A learner re-runs cells; an instructor runs a notebook again before class. This check
catches what a fresh kernel hides: state left by an earlier cell (a knob still changed, a
second service, a name overwritten by a solution), warnings shown only once, tasks left
running. For each notebook it writes a copy whose cells are the notebook's cells twice
over (the stored outputs included), next to the original so paths resolve the same, and
runs nbval in strict mode over the copies with the suite's own settings and sanitising.
The copies are removed afterwards, also on failure or interrupt.

    python .ci/run_twice.py                     # every numbered notebook
    python .ci/run_twice.py notebooks/03_*.ipynb
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "_twice_"  # in .gitignore; test_repo ignores such files


def doubled(path: Path) -> Path:
    nb = nbformat.read(path, as_version=4)
    again = [copy.deepcopy(c) for c in nb.cells]
    for i, cell in enumerate(again):
        cell["id"] = f"second-pass-{i}"  # ids are unique within a notebook
    nb.cells = nb.cells + again
    out = path.with_name(PREFIX + path.name)
    nbformat.write(nb, out)
    return out


def main(argv: list[str]) -> int:
    paths = [Path(a).resolve() for a in argv] or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    copies: list[Path] = []
    try:
        copies = [doubled(p) for p in paths if not p.name.startswith(PREFIX)]
        print(f"Run All twice in one kernel: {len(copies)} notebooks", flush=True)
        cmd = [sys.executable, "-m", "pytest", "-q", *map(str, copies)]
        return subprocess.call(cmd, cwd=ROOT)
    finally:
        for c in copies:
            c.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
