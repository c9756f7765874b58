"""Late imports, all through one function: :func:`load`.

Every sliceai module imports what it needs at its top; :func:`load` is the one
way to import a module while the program runs instead, by name. It is used for:

- **Command handlers.** Each area's ``commands.py`` builds its argparse parser
  and names the function that carries the command out as ``"module:function"``
  (``set_defaults(handler=...)``); :func:`sliceai.cli.main` loads that module
  only when its command runs. So ``sliceai --help`` imports neither torch,
  grpc, os-ken nor matplotlib, and the handler modules import at their top.
- **Benchmarks**, named by module in :data:`sliceai.bench.BENCHMARKS`.
- **torch where it is optional**: the service benchmark sets torch's threads
  only when it measures with the model.
- **matplotlib** in :func:`sliceai.replay.report.write_plots` and
  :func:`sliceai.forecast.plot.fan_chart`: importing it takes about 0.6 s, longer
  than a short replay or a forecast that draws no chart.
- **The Ryu shim** (:mod:`sliceai.controller.ryu_manager`), which must patch
  ``eventlet.wsgi`` before Ryu is imported.
- **The forecast model's adapter** (:data:`sliceai.planning.loading.MODEL_ADAPTER`), so
  the pure planner imports torch only when a model is asked for, and **the model
  adaptation loop** of ``sliceai serve --adapt`` (:mod:`sliceai.api.adapt`, which trains
  with torch), loaded only when ``--adapt`` is given.
- **The MEC 015 REST server** (:mod:`sliceai.api.rest.serve`, FastAPI and uvicorn from
  the extra ``rest``), loaded only by ``sliceai serve --rest``.

- **The optional extras' adapters**: the Parquet trace reader (:mod:`sliceai.traffic.parquet`,
  pyarrow) from :func:`sliceai.traffic.readers.read_trace`, and Ray in ``sliceai sweep``.

A module missing because an optional extra is not installed (os-ken, cvxpy, ray, pyarrow,
flwr, tomli-w) raises :class:`MissingDependency`, which says what to install; the command
line prints it and exits with 2.

``tests/test_imports.py`` checks that nothing else imports inside a function
and that the package's imports form no circle.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Top-level modules that come with an optional extra -> (what to call it, the extra).
EXTRAS: dict[str, tuple[str, str]] = {
    "os_ken": ("os-ken", "controller"),
    "cvxpy": ("cvxpy", "dev"),
    "fastapi": ("FastAPI", "rest"),
    "uvicorn": ("uvicorn", "rest"),
    "ray": ("Ray", "scale"),
    "pyarrow": ("pyarrow", "scale"),
    "flwr": ("Flower (flwr)", "federated"),
    "tomli_w": ("tomli-w", "federated"),
}


class MissingDependency(ImportError):
    """An optional dependency is not installed; the message says which extra brings it."""


def load(target: str) -> Any:
    """``"package.module"`` -> the module; ``"package.module:name"`` -> its attribute ``name``.

    Raises :class:`MissingDependency` when the import fails on a module of an optional
    extra (:data:`EXTRAS`), ``ModuleNotFoundError`` on any other missing module and
    ``AttributeError`` when the module has no ``name``.
    """
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if top not in EXTRAS:
            raise
        what, extra = EXTRAS[top]
        raise MissingDependency(
            f"{what} is not installed: pip install 'sliceai[{extra}]'", name=exc.name
        ) from exc
    return getattr(module, attr) if attr else module
