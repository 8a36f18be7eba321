"""The test run's start-up, and the order in which `make test`'s workers take the files.

**Start-up.** nbval reads notebooks with nbformat, which imports jsonschema, which imports
``rfc3987_syntax`` when it is installed (jupyter-events needs it): that package builds a
Lark parser for IRIs at import, 1.4 s in every process of the run (the main one and each
worker). The tests never check an IRI with jsonschema, so it is hidden from this process
before nbval is imported: pyproject.toml says ``-p no:nbval``, and nbval is loaded here,
as ``pytest_plugins``, after the line that hides it. (The notebook kernels are other
processes: they are not affected.)

**Order: the longest first.**

With ``--dist loadfile`` each file (a notebook, a test module) is one unit of work, and
a free worker takes the next unit in the order collected (``--no-loadscope-reorder``:
xdist's default order is by number of tests, which can leave the longest notebook for
last, with the other workers idle). Longest first, so the short ones even out the end:

* the notebooks, highest number first (the later notebooks are the longer ones);
* then the unit test files, the ones with the most tests first.

This only decides which file a worker starts next: every test still runs, in its file's
own order, and the order is a function of the collected test ids alone, so both workers
compute the same one (xdist requires it). It lives at the root, not in ``tests/``, so
that it also orders ``pytest notebooks``.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

import pytest

sys.modules.setdefault("rfc3987_syntax", None)  # `import rfc3987_syntax` raises ImportError: jsonschema goes on without
if "nbval.plugin" not in sys.modules:  # else its entry point loaded it (e.g. make test-slow's -o addopts=)
    pytest_plugins = ["nbval.plugin"]  # nbval, loaded here, after that line (pyproject.toml: -p no:nbval)


def _file(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]  # what --dist loadfile groups by


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_in = Counter(_file(item) for item in items)

    def longest_first(item: pytest.Item) -> tuple:
        file = _file(item)
        if file.endswith(".ipynb"):
            number = re.search(r"(\d+)_", file.rsplit("/", 1)[-1])  # also _twice_09_... (make test-twice)
            return (0, -int(number.group(1)) if number else 0, file)
        return (1, -tests_in[file], file)

    items.sort(key=longest_first)  # stable: the tests of a file keep their order
