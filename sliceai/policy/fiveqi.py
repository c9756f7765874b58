"""Standardized 5QI to QoS characteristics mapping (3GPP TS 23.501, Table 5.7.4-1).

Each entry gives the resource type, the default priority level (lower is more
important), the packet delay budget (PDB), the packet error rate (PER), the
default maximum data burst volume (MDBV, delay-critical GBR only) and the
default averaging window (GBR and delay-critical GBR: 2000 ms).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ResourceType(str, Enum):
    GBR = "GBR"
    NON_GBR = "non-GBR"
    DELAY_CRITICAL_GBR = "DC-GBR"

    @property
    def is_gbr(self) -> bool:
        return self is not ResourceType.NON_GBR


DEFAULT_AVERAGING_WINDOW_MS = 2000


@dataclass(frozen=True)
class FiveQICharacteristics:
    """QoS characteristics of one 5QI value."""

    value: int
    resource_type: ResourceType
    priority_level: int
    pdb_ms: float
    per: float
    mdbv_bytes: int | None = None
    averaging_window_ms: int | None = None

    @property
    def standardized(self) -> bool:
        return self.value in STANDARD_5QI


def _row(
    value: int, kind: str, priority: int, pdb_ms: float, per: float, mdbv: int | None = None
) -> tuple[int, FiveQICharacteristics]:
    rtype = ResourceType(kind)
    window = DEFAULT_AVERAGING_WINDOW_MS if rtype.is_gbr else None
    return value, FiveQICharacteristics(value, rtype, priority, pdb_ms, per, mdbv, window)


STANDARD_5QI: dict[int, FiveQICharacteristics] = dict(
    [
        _row(1, "GBR", 20, 100, 1e-2),  # conversational voice
        _row(2, "GBR", 40, 150, 1e-3),  # conversational video (live streaming)
        _row(3, "GBR", 30, 50, 1e-3),  # real-time gaming, V2X, process automation monitoring
        _row(4, "GBR", 50, 300, 1e-6),  # non-conversational video (buffered)
        _row(65, "GBR", 7, 75, 1e-2),  # mission-critical push-to-talk voice
        _row(66, "GBR", 20, 100, 1e-2),  # non-mission-critical push-to-talk voice
        _row(67, "GBR", 15, 100, 1e-3),  # mission-critical video user plane
        _row(71, "GBR", 56, 150, 1e-6),  # live uplink streaming
        _row(72, "GBR", 56, 300, 1e-4),
        _row(73, "GBR", 56, 300, 1e-8),
        _row(74, "GBR", 56, 500, 1e-8),
        _row(76, "GBR", 56, 500, 1e-4),
        _row(5, "non-GBR", 10, 100, 1e-6),  # IMS signalling
        _row(6, "non-GBR", 60, 300, 1e-6),  # buffered video, TCP-based
        _row(7, "non-GBR", 70, 100, 1e-3),  # voice, live video, interactive gaming
        _row(8, "non-GBR", 80, 300, 1e-6),
        _row(9, "non-GBR", 90, 300, 1e-6),  # default bearer
        _row(69, "non-GBR", 5, 60, 1e-6),  # mission-critical delay-sensitive signalling
        _row(70, "non-GBR", 55, 200, 1e-6),  # mission-critical data
        _row(79, "non-GBR", 65, 50, 1e-2),  # V2X messages
        _row(80, "non-GBR", 68, 10, 1e-6),  # low-latency eMBB, augmented reality
        _row(82, "DC-GBR", 19, 10, 1e-4, 255),  # discrete automation
        _row(83, "DC-GBR", 22, 10, 1e-4, 1354),  # discrete automation, V2X platooning
        _row(84, "DC-GBR", 24, 30, 1e-5, 1354),  # intelligent transport systems
        _row(85, "DC-GBR", 21, 5, 1e-5, 255),  # electricity distribution, high voltage
        _row(86, "DC-GBR", 18, 5, 1e-4, 1354),  # V2X collision avoidance
        _row(87, "DC-GBR", 25, 5, 1e-3, 500),  # interactive service, motion tracking
        _row(88, "DC-GBR", 25, 10, 1e-3, 1125),
        _row(89, "DC-GBR", 25, 15, 1e-4, 17000),  # visual content for cloud/edge split rendering
        _row(90, "DC-GBR", 25, 20, 1e-4, 63000),
    ]
)


def lookup(value: int) -> FiveQICharacteristics | None:
    """The standardized characteristics of ``value``, or None for an operator-specific 5QI."""
    return STANDARD_5QI.get(value)
