"""Small in-memory policies for the solver tests."""

from __future__ import annotations

from typing import Any

from sliceai.policy import Policy


def slice_spec(
    name: str,
    five_qi: int = 9,
    priority: int | None = None,
    floor: tuple[float, float] | None = None,
    cap: tuple[float, float] | None = None,
    risk: float = 0.05,
    port: int = 5000,
) -> dict[str, Any]:
    """A slice as the loader would see it; rates in bit/s."""
    spec: dict[str, Any] = {
        "name": name,
        "snssai": {"sst": 1},
        "five_qi": five_qi,
        "risk": risk,
        "match": [{"protocol": "udp", "ports": [port]}],
    }
    if priority is not None:
        spec["priority"] = priority
    if floor is not None:
        spec["guaranteed"] = {"dl": f"{floor[0]} bps", "ul": f"{floor[1]} bps"}
    if cap is not None:
        spec["maximum"] = {"dl": f"{cap[0]} bps", "ul": f"{cap[1]} bps"}
    return spec


def make_policy(slices: list[dict[str, Any]], links: list[tuple[str, float, list[str]]]) -> Policy:
    """``links``: (name, capacity bit/s, slice names). No loader cross-checks (floors may exceed capacity)."""
    for i, spec in enumerate(slices):
        spec["match"] = [{"protocol": "udp", "ports": [5000 + i]}]
    return Policy.model_validate(
        {
            "name": "test",
            "slices": slices,
            "topology": {
                "links": [{"name": n, "capacity": f"{c} bps", "slices": s} for n, c, s in links]
            },
        }
    )
