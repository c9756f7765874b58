"""Compiled kernels work for a user who can write neither the package nor its home.

Each run is a fresh interpreter on a read-only copy of the package, with a read-only
HOME; as root the capabilities are dropped (``setpriv``), so root obeys the file
modes like any service user. Without the fallback, importing the solver raises
numba's "cannot cache function ...: no locator available".
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sliceai.compiled import private_cache_dir

PACKAGE = Path(__file__).resolve().parents[2] / "sliceai"
PROBE = """
import logging, sys
import numpy as np
logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
from sliceai.solver.kernels import cut_at_rate
import sliceai.solver.kernels as k
assert k.__file__.startswith(sys.argv[1]), k.__file__  # the read-only copy, not the checkout
print(cut_at_rate(np.array([[1.0, 2.0, 3.0], [5.0, 0.0, 0.0]]), np.array([3.0, 1.0])).tolist())
"""


def _read_only(path: Path) -> None:
    for p in (path, *path.rglob("*")):
        mode = p.stat().st_mode
        p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A read-only copy of the package (no compiled caches) and a read-only home."""
    root = tmp_path / "site"
    shutil.copytree(PACKAGE, root / "sliceai", ignore=shutil.ignore_patterns("__pycache__", "data"))
    home = tmp_path / "home"
    home.mkdir()
    _read_only(root)
    _read_only(home)
    yield root, home
    for p in (root, home):
        for q in (p, *p.rglob("*")):
            if q.is_dir():
                q.chmod(0o755)


def _run(site: Path, home: Path, tmpdir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(site),
        "PYTHONDONTWRITEBYTECODE": "1",
        "TMPDIR": str(tmpdir),
    }
    cmd = [sys.executable, "-c", PROBE, str(site)]
    if os.geteuid() == 0:  # root writes anywhere: drop every capability first
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to run this test as root"
        cmd = [setpriv, "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", *cmd]
    return subprocess.run(
        cmd, cwd=site, env=env, capture_output=True, text=True, timeout=240, check=False
    )


def test_cache_moves_to_a_private_temporary_directory(
    unwritable: tuple[Path, Path], tmp_path: Path
) -> None:
    site, home = unwritable
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    for run in range(2):  # the second run reads what the first cached
        out = _run(site, home, tmpdir)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "[2, 0]"
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, (run, out.stderr)
        assert "caching compiled code in" in lines[0]
        assert f"sliceai-numba-{os.geteuid()}" in lines[0]
    cache = tmpdir / f"sliceai-numba-{os.geteuid()}"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert any(p.name.endswith(".nbi") for p in cache.rglob("*"))


def test_without_a_private_directory_it_compiles_uncached(
    unwritable: tuple[Path, Path], tmp_path: Path
) -> None:
    site, home = unwritable
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    shared = tmpdir / f"sliceai-numba-{os.geteuid()}"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could plant pickles here: not a cache to load from
    out = _run(site, home, tmpdir)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[2, 0]"
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "compiling uncached" in lines[0]
    assert list(shared.iterdir()) == []


def test_a_shared_or_foreign_cache_directory_is_never_used(tmp_path: Path) -> None:
    mine = private_cache_dir(tmp_path)
    assert mine is not None
    assert stat.S_IMODE(mine.stat().st_mode) == 0o700
    mine.chmod(0o777)  # someone else could plant pickles here
    assert private_cache_dir(tmp_path) is None
    mine.rmdir()
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    mine.symlink_to(target)
    assert private_cache_dir(tmp_path) is None  # a link is not a directory of ours
