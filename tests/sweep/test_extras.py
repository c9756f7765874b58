"""The optional extras resolve together: flwr's simulation extra pins the Ray that `scale` uses."""

from __future__ import annotations

import re
from importlib import metadata

import pytest

pytestmark = [pytest.mark.scale, pytest.mark.federated]


def _ray_pins_of_flwr() -> set[str]:
    pins = set()
    for requirement in metadata.requires("flwr") or []:
        found = re.match(r"ray\s*==\s*([\w.]+)", requirement)
        if found and "simulation" in requirement:
            pins.add(found.group(1))
    return pins


def test_the_installed_ray_is_the_one_flwr_simulation_pins() -> None:
    ray = pytest.importorskip("ray")
    pytest.importorskip("flwr")
    pins = _ray_pins_of_flwr()
    assert pins, "flwr's metadata names no Ray for its simulation extra"
    assert pins == {ray.__version__}


def test_pyarrow_and_protobuf_load_beside_ray() -> None:
    pa = pytest.importorskip("pyarrow")
    pytest.importorskip("ray")
    from google.protobuf import __version__ as protobuf_version

    from sliceai.v1 import controller_pb2

    # The generated code checks the runtime at import; flwr needs protobuf < 7.
    assert protobuf_version.startswith("6.")
    assert controller_pb2.DESCRIPTOR.package == "sliceai.v1"
    assert pa.table({"a": [1, 2]}).num_rows == 2
