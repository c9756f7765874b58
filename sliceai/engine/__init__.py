"""The live loop: telemetry -> forecast -> solve -> plan, with fail-safes and durable state.

No gRPC here: :class:`Engine` is driven by :mod:`sliceai.api` (or directly, in tests).
"""

from sliceai.engine.core import LOCAL_ADMIN, Caller, Engine, EngineSettings
from sliceai.engine.errors import (
    Conflict,
    EngineError,
    Exhausted,
    Forbidden,
    InvalidInput,
    NotFound,
    Precondition,
    Unavailable,
)
from sliceai.engine.grants import BwRequest, Grant, SessionFilter
from sliceai.engine.loop import LoopSettings, PlanHub, PlanRecord
from sliceai.engine.queries import ForecastResult
from sliceai.engine.store import PolicyRecord, StateStore, StoreError

__all__ = [
    "LOCAL_ADMIN",
    "BwRequest",
    "Caller",
    "Conflict",
    "Engine",
    "EngineError",
    "EngineSettings",
    "Exhausted",
    "Forbidden",
    "ForecastResult",
    "Grant",
    "InvalidInput",
    "LoopSettings",
    "NotFound",
    "PlanHub",
    "PlanRecord",
    "PolicyRecord",
    "Precondition",
    "SessionFilter",
    "StateStore",
    "StoreError",
    "Unavailable",
]
