"""Offline replay: traces through allocators and a link model, metrics and reports.

Pure: no torch, grpc or os-ken. ``replay(trace, policy, ["static", "oracle"])``
returns a :class:`ReplayResult`; :mod:`sliceai.replay.report` turns it into a
table, JSON and plots; ``sliceai replay`` and ``sliceai demo`` drive it.
"""

from sliceai.replay.allocators import (
    ALLOCATORS,
    LAZY_ALLOCATORS,
    Allocator,
    PolicyAllocator,
    allocator_names,
    make_allocator,
    register_allocator,
)
from sliceai.replay.allocators import _builtin as _register_builtin
from sliceai.replay.engine import ReplayOptions, ReplayResult, replay
from sliceai.replay.errors import ReplayError
from sliceai.replay.linkmodel import LinkModel, fluid_queue, fluid_queue_reference
from sliceai.replay.planning import QuantilePlanner

_register_builtin()

__all__ = [
    "ALLOCATORS",
    "LAZY_ALLOCATORS",
    "Allocator",
    "LinkModel",
    "PolicyAllocator",
    "QuantilePlanner",
    "ReplayError",
    "ReplayOptions",
    "ReplayResult",
    "allocator_names",
    "fluid_queue",
    "fluid_queue_reference",
    "make_allocator",
    "register_allocator",
    "replay",
]
