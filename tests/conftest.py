"""Shared set-up for the unit tests: draw with the Agg backend (no display, no windows).

The backend is chosen in this process only, with ``matplotlib.use``: setting
``MPLBACKEND`` in the environment would leak into the notebook kernels that nbval
starts (they inherit it) and replace their inline backend, so plots would vanish.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
