"""Restart & Run All for notebooks, in place: `make notebooks` or `python .ci/run_notebooks.py NB...`.

Runs each notebook in a fresh kernel of this environment (cells tagged
`raises-exception` may fail; any other failure stops with the error), with the
notebooks folder as working directory, and saves the outputs. Prints each run's time.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def run(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        nb, timeout=120, kernel_name="python3", record_timing=False, resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    for cell in nb.cells:  # no timestamps in the stored notebook: they only add noise to diffs
        cell.metadata.pop("execution", None)
    took = time.perf_counter() - start
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nbformat.write(nb, path)
    return took


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted((ROOT / "notebooks").rglob("[0-9]*.ipynb"))
    for p in paths:
        if ".ipynb_checkpoints" in p.parts:
            continue
        print(f"{p}: {run(p.resolve()):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
