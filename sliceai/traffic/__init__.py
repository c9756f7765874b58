"""Traffic traces: model, readers, writers and scenario generators (pure: no torch/grpc/os-ken)."""

from sliceai.traffic.trace import DIRECTION_NAMES, DL, UL, Trace, TraceError, TraceReadError

__all__ = ["DIRECTION_NAMES", "DL", "UL", "Trace", "TraceError", "TraceReadError"]
