"""Load the ``sims/forecast`` scripts as modules for tests (they import each other by bare
name, as they do when run from that folder)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SIMS = Path(__file__).resolve().parents[2] / "sims" / "forecast"


def load_sims_module(name: str, *needs: str) -> ModuleType:
    """``sims/forecast/<name>.py``, after the modules it imports by name (``needs``) that
    are not loaded yet; registered in ``sys.modules`` (dataclasses resolve their
    annotations through it)."""
    for dep in needs:
        if dep not in sys.modules:
            load_sims_module(dep)
    spec = importlib.util.spec_from_file_location(name, SIMS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
