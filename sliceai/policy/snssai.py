"""S-NSSAI labels as RAN tools write them, read into the policy's ``"SST"`` / ``"SST-SD"``.

E2SM-KPM labels a per-slice measurement (``DRB.UEThpDl.SNSSAI``) with ``sliceID``
``{sST, sD}``; exports write it as ``1-0000A1``, ``1:0000a1``, ``sST=1,sD=0000A1`` or
``{"sST": 1, "sD": "0000A1"}``, the SST in decimal (``01`` too) or ``0x01``. An SD of
``FFFFFF`` means "no SD" (TS 23.003 §28.4.2), so ``1-FFFFFF`` is ``1``.
"""

from __future__ import annotations

import re

NO_SD = "FFFFFF"
_PAIR = re.compile(
    r"^\s*s?st\s*[=:]\s*(?P<sst>\w+)\s*(?:[,;\s]\s*s?d\s*[=:]\s*(?P<sd>\w+))?\s*$", re.I
)
_PLAIN = re.compile(r"^\s*(?P<sst>(?:0x)?[0-9A-Fa-f]+)\s*(?:[-:/.]\s*(?P<sd>[0-9A-Fa-f]{6}))?\s*$")


def canonical_snssai(sst: int | str, sd: str | None = None) -> str:
    """``"SST"`` or ``"SST-SD"`` (SD upper case; ``FFFFFF`` or empty: no SD); ValueError
    with a sentence when SST is not 0..255 or SD not 6 hex digits."""
    text = str(sst).strip()
    try:
        value = int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        raise ValueError(f"SST {text[:16]!r} is not a number 0..255") from None
    if not 0 <= value <= 255:
        raise ValueError(f"SST {value} is outside 0..255")
    sd = (sd or "").strip().upper()
    if sd in ("", NO_SD):
        return str(value)
    if not re.fullmatch(r"[0-9A-F]{6}", sd):
        raise ValueError(f"SD {sd[:16]!r} is not 6 hex digits")
    return f"{value}-{sd}"


def parse_snssai_label(label: str) -> str:
    """A KPM S-NSSAI label (see the module docstring) as ``"SST"`` / ``"SST-SD"``."""
    text = label.strip().strip("{}").replace('"', "").replace("'", "")
    match = _PAIR.match(text) or _PLAIN.match(text)
    if match is None:
        raise ValueError(
            f"S-NSSAI label {label[:64]!r}: write SST-SD (e.g. 1-0000A1), SST, or sST=1,sD=0000A1"
        )
    return canonical_snssai(match.group("sst"), match.group("sd"))
