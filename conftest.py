"""The order in which `make test`'s two workers take the files: the longest first.

With ``--dist loadfile`` each file (a notebook, a test module) is one unit of work, and
a free worker takes the next unit in the order collected (``--no-loadscope-reorder``:
xdist's default order is by number of tests, which can leave the longest notebook for
last, with the other worker idle). Longest first, so the short ones even out the end:

* the notebooks, highest number first (the later notebooks are the longer ones);
* then the unit test files, the ones with the most tests first.

This only decides which file a worker starts next: every test still runs, in its file's
own order, and the order is a function of the collected test ids alone, so both workers
compute the same one (xdist requires it). It lives at the root, not in ``tests/``, so
that it also orders ``pytest notebooks``.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest


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
