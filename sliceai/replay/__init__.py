"""Offline replay: traces through allocators and a link model, metrics and reports.

Pure: no torch, grpc or os-ken (the ``sliceai`` allocator loads the model plug-in
when a replay starts). ``replay(trace, policy, ["static", "oracle"])``
returns a :class:`ReplayResult`; :mod:`sliceai.replay.report` turns it into a
table, JSON and plots; ``sliceai replay`` and ``sliceai demo`` drive it.
"""

from sliceai.replay.allocators import Allocator, PolicyAllocator
from sliceai.replay.engine import ReplayOptions, ReplayResult, replay
from sliceai.replay.errors import ReplayError
from sliceai.replay.linkmodel import LinkModel, fluid_queue, fluid_queue_reference
from sliceai.replay.planned import PlannerAllocator
from sliceai.replay.registry import ALLOCATORS, allocator_names, make_allocator, register_allocator

__all__ = [
    "ALLOCATORS",
    "Allocator",
    "LinkModel",
    "PlannerAllocator",
    "PolicyAllocator",
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
