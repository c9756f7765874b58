"""Slice policies: model, 3GPP 5QI table, loading and validation (pure: no torch/grpc/os-ken)."""

from sliceai.policy.fiveqi import STANDARD_5QI, FiveQICharacteristics, ResourceType
from sliceai.policy.loader import (
    PolicyError,
    PolicyIssue,
    dump_policy,
    load_policy,
    loads_policy,
)
from sliceai.policy.model import (
    DIRECTIONS,
    Direction,
    FiveQI,
    Link,
    MatchRule,
    PerDirection,
    Policy,
    PortRange,
    Slice,
    Snssai,
    Topology,
)

__all__ = [
    "DIRECTIONS",
    "STANDARD_5QI",
    "Direction",
    "FiveQI",
    "FiveQICharacteristics",
    "Link",
    "MatchRule",
    "PerDirection",
    "Policy",
    "PolicyError",
    "PolicyIssue",
    "PortRange",
    "ResourceType",
    "Slice",
    "Snssai",
    "Topology",
    "dump_policy",
    "load_policy",
    "loads_policy",
]
