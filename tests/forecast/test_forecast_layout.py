"""The package's layout tells inference from training and from the studies: nothing in
``sliceai`` imports ``research``, and the modules a forecast runs on never import
``sliceai.forecast.training``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sliceai"
#: What loading a checkpoint and forecasting runs on (the service, the replay allocator).
INFERENCE = (
    "checkpoint",
    "config",
    "errors",
    "features",
    "metrics",
    "mixture",
    "model",
    "pipeline",
)


def _imports(path: Path) -> set[str]:
    """Absolute module names ``path`` imports, at any depth (lazy imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_nothing_in_the_package_imports_the_studies() -> None:
    offenders = {
        str(path.relative_to(PACKAGE.parent)): sorted(
            n for n in _imports(path) if n == "research" or n.startswith("research.")
        )
        for path in PACKAGE.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("module", INFERENCE)
def test_inference_does_not_import_training(module: str) -> None:
    imported = _imports(PACKAGE / "forecast" / f"{module}.py")
    assert not [n for n in imported if n.startswith("sliceai.forecast.training")]
