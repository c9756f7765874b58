"""Allocators by name: the built-in ones and any a plug-in registers.

``static``, ``proportional`` and ``ewma`` (:mod:`sliceai.replay.allocators`),
``rolling-quantile`` and ``sliceai`` (:mod:`sliceai.replay.planned`), ``oracle``
(:mod:`sliceai.replay.oracle`).
The ``sliceai`` allocator loads its model when a replay starts, not here, so this
module never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable

from sliceai.replay.allocators import (
    Allocator,
    EwmaAllocator,
    ProportionalAllocator,
    StaticAllocator,
)
from sliceai.replay.errors import ReplayError
from sliceai.replay.oracle import OracleAllocator
from sliceai.replay.planned import rolling_quantile_allocator, sliceai_allocator

AllocatorFactory = Callable[[], Allocator]

ALLOCATORS: dict[str, AllocatorFactory] = {
    "static": StaticAllocator,
    "proportional": ProportionalAllocator,
    "ewma": EwmaAllocator,
    "rolling-quantile": rolling_quantile_allocator,
    "sliceai": sliceai_allocator,
    "oracle": OracleAllocator,
}


def register_allocator(name: str, factory: AllocatorFactory) -> None:
    """Add (or replace) an allocator under ``name``."""
    ALLOCATORS[name] = factory


def allocator_names() -> tuple[str, ...]:
    """Names of the registered allocators, built-in ones first."""
    return tuple(ALLOCATORS)


def make_allocator(name: str) -> Allocator:
    """A fresh allocator by name; :class:`ReplayError` for an unknown one."""
    factory = ALLOCATORS.get(name)
    if factory is None:
        raise ReplayError(f"unknown allocator {name!r}; choose from {', '.join(ALLOCATORS)}")
    return factory()
