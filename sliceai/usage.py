"""The error a command raises for bad usage or an unreadable input file (exit code 2).

Its own module so that command handlers raise it without importing
:mod:`sliceai.cli`, which loads them (see :mod:`sliceai.plugins`).
"""

from __future__ import annotations


class UsageError(Exception):
    """Bad command-line usage or an unreadable input file (exit code 2)."""
