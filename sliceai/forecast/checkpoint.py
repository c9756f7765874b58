"""Forecast checkpoints on disk: where they live, how they are written and read.

Layout (a directory): ``config.json`` (:class:`ForecastConfig` plus metadata) and
``model.safetensors`` (the weights, fp32 or fp16; a seed ensemble's under ``members.K.``), and with
``config.fast_below_s`` a second checkpoint of this layout in ``fast/`` that forecasts at
the faster clocks. The bundled default lives in ``sliceai/data/model/`` and is used when
no path is given, so everything works offline.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from sliceai.forecast.config import OBSOLETE_FIELDS, ForecastConfig
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.mixture import ForecastEnsemble
from sliceai.forecast.model import ForecastModel

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: Subdirectory of a checkpoint holding the one for clocks below ``config.fast_below_s``.
FAST_DIR = "fast"


def default_checkpoint() -> Path:
    """Directory of the checkpoint bundled with the package."""
    return Path(str(resources.files("sliceai").joinpath("data", "model")))


def save_model(
    model: ForecastModel | ForecastEnsemble,
    directory: str | Path,
    half: bool = False,
    **metadata: Any,
) -> None:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created); with
    ``half`` the fp32 weights are stored as fp16 (half the bytes; :func:`load_model` reads
    them back into an fp32 model, so only the rounding of the weights differs)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.dtype == torch.float32 else v for k, v in state.items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / WEIGHTS_FILE)
    (out / CONFIG_FILE).write_text(model.config.to_json(**metadata) + "\n")


def checkpoint_dir(path: str | Path | None = None) -> Path:
    """The checkpoint directory of ``path`` (a directory or its ``model.safetensors``;
    None: the bundled one)."""
    base = default_checkpoint() if path is None else Path(path)
    return base.parent if base.suffix == ".safetensors" else base


def weights_file(path: str | Path | None = None) -> Path:
    """The ``model.safetensors`` of ``path`` (a checkpoint directory or that file; None:
    the bundled one)."""
    base = default_checkpoint() if path is None else Path(path)
    return base if base.suffix == ".safetensors" else base / WEIGHTS_FILE


def stored_half(path: str | Path | None = None) -> bool:
    """Whether a checkpoint's weights are stored as fp16 (see :func:`save_model`), read
    from the safetensors header alone; False for an unreadable file (:func:`load_model`
    reports that)."""
    try:
        with safe_open(str(weights_file(path)), framework="pt") as f:
            names = f.keys()
            return any(f.get_slice(k).get_dtype() == "F16" for k in names)
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return False


def load_model(
    path: str | Path | None = None,
) -> tuple[ForecastModel | ForecastEnsemble, dict[str, Any]]:
    """Read a checkpoint (see :func:`save_model`; fp16 weights are widened): the fp32 model (a
    :class:`~sliceai.forecast.mixture.ForecastEnsemble` when ``config.members > 1``) on the
    CPU and its metadata."""
    directory = checkpoint_dir(path)
    weights = weights_file(path)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file() or not weights.is_file():
        raise ForecastError(
            f"{directory}: not a forecast checkpoint (needs {CONFIG_FILE} and {WEIGHTS_FILE})"
        )
    text = config_path.read_text()
    config = ForecastConfig.from_json(text, source=str(config_path))
    known = set(ForecastConfig.__dataclass_fields__) | {"format_version", *OBSOLETE_FIELDS}
    metadata = {k: v for k, v in json.loads(text).items() if k not in known}
    try:
        state = {
            k: v.float() if v.dtype == torch.float16 else v
            for k, v in load_file(str(weights)).items()
        }
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ForecastError(f"{weights}: corrupt weights file ({exc})") from None
    model: ForecastModel | ForecastEnsemble = (
        ForecastEnsemble(config) if config.members > 1 else ForecastModel(config)
    )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:2]
        raise ForecastError(
            f"{weights}: weights do not match {config_path}: {' '.join(first)}"
        ) from None
    return model.eval(), metadata
