"""Errors the engine raises for bad requests; the API maps each to one gRPC status."""

from __future__ import annotations


class EngineError(Exception):
    """Base class: a request the engine refused; its state is unchanged."""


class InvalidInput(EngineError):
    """Malformed input: bad value, unit, length or timestamp (INVALID_ARGUMENT)."""


class NotFound(EngineError):
    """Unknown slice or grant (NOT_FOUND)."""


class Forbidden(EngineError):
    """The caller may not touch this resource (PERMISSION_DENIED)."""


class Exhausted(EngineError):
    """Not admissible (capacity), too large, or over a rate limit (RESOURCE_EXHAUSTED)."""


class Conflict(EngineError):
    """The same grant already exists (ALREADY_EXISTS)."""


class Precondition(EngineError):
    """The request does not fit the current state, e.g. a stale version (FAILED_PRECONDITION)."""


class Unavailable(EngineError):
    """Not ready yet, e.g. no forecast computed so far (UNAVAILABLE)."""
