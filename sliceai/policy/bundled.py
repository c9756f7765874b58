"""The example policies that ship with sliceai (``hospital``, ``factory``, ``campus``,
``ran-3slice``).

They live in ``policies/`` of a checkout and, as identical copies, in the
package's ``sliceai/data/policies/`` (a test keeps the two alike).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def bundled_policy_path(file_name: str) -> Path:
    """``policies/FILE_NAME`` beside the package when it runs from a checkout, else the
    copy in the package; the path may not exist (an unknown name)."""
    beside = PACKAGE_DIR.parent / "policies" / file_name
    return beside if beside.is_file() else PACKAGE_DIR / "data" / "policies" / file_name
