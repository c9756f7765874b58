"""The replay's one error type."""

from __future__ import annotations


class ReplayError(ValueError):
    """A replay that cannot run: unknown allocator, trace not fitting the policy, bad options."""
