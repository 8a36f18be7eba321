"""Shared set-up for the unit tests: draw with the Agg backend (no display, no windows); skip the slow tests.

The backend is chosen in this process only, with ``matplotlib.use``: setting
``MPLBACKEND`` in the environment would leak into the notebook kernels that nbval
starts (they inherit it) and replace their inline backend, so plots would vanish.

A test marked ``@pytest.mark.slow`` (a second or more: a server started, a subprocess,
a full agency run) is skipped unless ``AGENCY_SLOW_TESTS=1``: ``make test-slow`` runs
them, and ``.ci/run`` runs it after ``make test``.
"""

from __future__ import annotations

import os

import matplotlib
import pytest

matplotlib.use("Agg")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("AGENCY_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set AGENCY_SLOW_TESTS=1 (make test-slow; .ci/run does)")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)
