"""``compiled``: numba's ``njit`` as sliceai uses it, with its type kept for mypy.

The hot loops of the solver (:mod:`sliceai.solver.kernels`) and of the forecast
mixture (:mod:`sliceai.forecast.mixture`) are plain Python loops compiled to machine
code. Each compiled function releases the GIL while it runs (``nogil``) and is cached
on disk after its first compilation (``cache=True``: in ``__pycache__`` next to the
module, or where ``NUMBA_CACHE_DIR`` says, else under ``~/.cache``), so only the first
run on a machine pays the compile time.

Where numba finds none of those writable (an unprivileged service user with a
read-only installation and home), the cache moves to a private directory of this
user under the temporary directory (created mode 0700; one that another user owns or
could write is never used, since numba's cache files are pickles), and where that
fails too the functions are compiled uncached; either way one warning says so.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import numba

_F = TypeVar("_F", bound=Callable[..., Any])

log = logging.getLogger(__name__)

#: What numba says when it has nowhere to write a function's cache.
_NO_LOCATOR = "no locator available"
_fallback: list[str | None] = []  # decided once per process: the directory, or None (uncached)


def private_cache_dir(base: Path | None = None) -> Path | None:
    """``<tmp>/sliceai-numba-<uid>``, made 0700 and checked to be this user's alone; else None."""
    uid = os.getuid() if hasattr(os, "getuid") else -1
    path = (base or Path(tempfile.gettempdir())) / f"sliceai-numba-{uid}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
        if not stat.S_ISDIR(st.st_mode) or (uid >= 0 and st.st_uid != uid):
            return None
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        probe = tempfile.NamedTemporaryFile(dir=path)  # noqa: SIM115 - only to test writability
        probe.close()
    except OSError:
        return None
    return path


def _fallback_dir() -> str | None:
    if not _fallback:
        found = private_cache_dir()
        _fallback.append(None if found is None else str(found))
        if found is None:
            log.warning(
                "numba has no writable cache directory (package, NUMBA_CACHE_DIR, ~/.cache, "
                "%s): compiling uncached, every start pays the compile time",
                tempfile.gettempdir(),
            )
        else:
            log.warning(
                "numba has no writable cache directory next to the package or in ~/.cache; "
                "caching compiled code in %s (set NUMBA_CACHE_DIR to choose)",
                found,
            )
    return _fallback[0]


def compiled(fn: _F) -> _F:
    """``numba.njit(cache=True, nogil=True)``, typed as the function it wraps.

    Falls back to a private cache directory, or to no cache, where numba has nowhere
    to write one (see the module's docstring).
    """
    if _fallback and _fallback[0] is None:
        return cast(_F, numba.njit(nogil=True)(fn))
    try:
        return cast(_F, numba.njit(cache=True, nogil=True)(fn))
    except RuntimeError as exc:
        if _NO_LOCATOR not in str(exc):
            raise
    directory = _fallback_dir()
    if directory is not None:
        cast(Any, numba.config).CACHE_DIR = directory  # numba's locators read it at each decoration
        try:
            return cast(_F, numba.njit(cache=True, nogil=True)(fn))
        except RuntimeError as exc:
            if _NO_LOCATOR not in str(exc):
                raise
    return cast(_F, numba.njit(nogil=True)(fn))
