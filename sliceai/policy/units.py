"""Parsing and formatting of quantities written with explicit units.

Rates are written as ``"20 Mbps"``, ``"500 kbps"``, ``"1.5 Gbps"`` or
``"64000 bps"`` (decimal SI prefixes, bits per second) and become floats in
bit/s. Durations are written as ``"10 ms"``, ``"250 us"``, ``"1 s"``,
``"15 min"`` and become floats in milliseconds or seconds. A bare number is
refused for rates and durations: a policy must say what it means.
"""

from __future__ import annotations

import math
import re

RATE_UNITS: dict[str, float] = {
    "bps": 1.0,
    "kbps": 1e3,
    "Mbps": 1e6,
    "Gbps": 1e9,
    "Tbps": 1e12,
}
DURATION_UNITS_S: dict[str, float] = {
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "min": 60.0,
    "h": 3600.0,
}

_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]+)\s*$")


class UnitError(ValueError):
    """A quantity that is malformed or carries an unknown unit."""


def _split(text: object, kind: str, units: dict[str, float]) -> tuple[float, float]:
    if isinstance(text, bool) or not isinstance(text, str):
        raise UnitError(f"expected a {kind} with a unit such as {_examples(units)}, got {text!r}")
    match = _QUANTITY.match(text)
    if match is None:
        raise UnitError(f"cannot read {text!r} as a {kind}; write e.g. {_examples(units)}")
    number, unit = float(match.group(1)), match.group(2)
    if unit not in units:
        raise UnitError(f"unknown {kind} unit {unit!r} in {text!r}; use one of {', '.join(units)}")
    if not math.isfinite(number):
        raise UnitError(f"{kind} {text!r} is not finite")
    return number, units[unit]


def _examples(units: dict[str, float]) -> str:
    names = list(units)
    return f"'20 {names[min(2, len(names) - 1)]}' or '500 {names[1]}'"


def parse_rate(text: object) -> float:
    """``"20 Mbps"`` -> ``20e6`` (bit/s)."""
    number, scale = _split(text, "rate", RATE_UNITS)
    return number * scale


def parse_duration_s(text: object) -> float:
    """``"10 ms"`` -> ``0.01`` (seconds)."""
    number, scale = _split(text, "duration", DURATION_UNITS_S)
    return number * scale


def format_rate(bps: float) -> str:
    """Shortest exact-enough rendering: ``20e6`` -> ``"20 Mbps"``."""
    for unit, scale in (("Gbps", 1e9), ("Mbps", 1e6), ("kbps", 1e3)):
        if bps >= scale:
            return f"{_trim(bps / scale)} {unit}"
    return f"{_trim(bps)} bps"


def format_duration_ms(ms: float) -> str:
    if ms >= 1000 and ms % 1000 == 0:
        return f"{_trim(ms / 1000)} s"
    return f"{_trim(ms)} ms"


def _trim(x: float) -> str:
    text = f"{x:.12g}"
    return text
