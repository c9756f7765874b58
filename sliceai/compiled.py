"""``compiled``: numba's ``njit`` as sliceai uses it, with its type kept for mypy.

The hot loops of the solver (:mod:`sliceai.solver.kernels`) and of the forecast
mixture (:mod:`sliceai.forecast.mixture`) are plain Python loops compiled to machine
code. Each compiled function releases the GIL while it runs (``nogil``) and is cached
on disk after its first compilation (``cache=True``: in ``__pycache__`` next to the
module, or where ``NUMBA_CACHE_DIR`` says), so only the first run on a machine pays
the compile time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

_F = TypeVar("_F", bound=Callable[..., Any])


def compiled(fn: _F) -> _F:
    """``numba.njit(cache=True, nogil=True)``, typed as the function it wraps."""
    return cast(_F, numba.njit(cache=True, nogil=True)(fn))
