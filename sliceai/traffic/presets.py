"""Column-mapping presets for common exports: the common case needs no mapping file.

A preset names, for each role, the column names the export is known to use
(matched case-insensitively, surrounding spaces ignored); :func:`preset_fields`
picks the first present in a file's header and returns the
:class:`~sliceai.traffic.mapped.ColumnMapping` fields. Flags and a mapping file
override any of them.

``kpm-ue``: one CSV per UE, as E2SM-KPM collectors and the ColO-RAN / OpenRAN Gym
datasets write them: epoch-millisecond ``Timestamp``, a numeric ``slice_id``, the
UE's ``IMSI`` (or UE id / RNTI; summed over, never kept), and rates in Mbit/s
(``tx_brate downlink [Mbps]`` / ``rx_brate uplink [Mbps]``, or ``dl_mbps`` /
``ul_mbps``). Slice ids 0, 1, 2 are named ``embb``, ``mmtc`` and ``urllc``
(the ColO-RAN convention); ``--slice-name 0=video`` renames one. The files are read
side by side (``merge``), each in time order.

``kpm-snssai``: an E2SM-KPM per-slice report exported with one column per measurement
(the shape KPM monitors and time-series exports write: a row per report time and
slice, and per UE where the report is per UE), named as TS 28.552 does:
``DRB.UEThpDl.SNSSAI`` / ``DRB.UEThpUl.SNSSAI`` (or without ``.SNSSAI``) in kbit/s, the
S-NSSAI label in one column (``1-0000B1``, ``sST=1,sD=0000B1``) or in ``sST`` and ``sD``.
Slices match the policy's by S-NSSAI. ``RRU.PrbUsedDl.SNSSAI`` columns are PRB counts,
not rates: never read. Rows of one report time are summed: right for per-UE reports; in a
cell-level report ``DRB.UEThp`` is the mean throughput per UE, so a slice of several UEs
is understated there: convert the per-UE report where there is one.
A long export (``measName,sst,sd,value`` rows) is pivoted to this shape first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sliceai.traffic.trace import TraceError


@dataclass(frozen=True)
class Preset:
    """Candidate column names per role (first match wins) and fixed mapping fields."""

    name: str
    description: str
    columns: dict[str, tuple[str, ...]]  # mapping field -> candidate column names
    required: tuple[str, ...]  # mapping fields that must be found
    one_of: tuple[str, ...]  # at least one of these must be found
    fixed: dict[str, Any] = field(default_factory=dict)


KPM_UE = Preset(
    name="kpm-ue",
    description="one CSV per UE: epoch-ms time, numeric slice ids, Mbit/s rates, IMSI",
    columns={
        "time_column": ("timestamp", "time", "ts", "timestamp_ms", "time_ms"),
        "slice_column": ("slice_id", "slice", "sliceid", "sst", "snssai", "nssai"),
        "ue_column": ("imsi", "ue_id", "ueid", "ue", "rnti", "ue_imsi"),
        "dl_column": (
            "tx_brate downlink [mbps]",
            "dl_mbps",
            "dl_brate",
            "dl_throughput_mbps",
            "dl_thp_mbps",
        ),
        "ul_column": (
            "rx_brate uplink [mbps]",
            "ul_mbps",
            "ul_brate",
            "ul_throughput_mbps",
            "ul_thp_mbps",
        ),
    },
    required=("time_column", "slice_column"),
    one_of=("dl_column", "ul_column"),
    fixed={
        "time_unit": "ms",
        "value_unit": "Mbps",
        "merge": True,  # the UEs' files cover the same period: read side by side
        "slice_names": {"0": "embb", "1": "mmtc", "2": "urllc"},
    },
)

KPM_SNSSAI = Preset(
    name="kpm-snssai",
    description="E2SM-KPM per-slice report: a column per measurement (DRB.UEThpDl.SNSSAI, "
    "DRB.UEThpUl.SNSSAI in kbit/s), the S-NSSAI label as one column or sST + sD",
    columns={
        "time_column": ("timestamp", "time", "ts", "timestamp_ms", "time_ms", "collectstarttime"),
        "slice_column": ("snssai", "s-nssai", "slice", "sliceid", "nssai", "sst"),
        "sd_column": ("sd",),
        "ue_column": ("ue_id", "ueid", "imsi", "ue", "rnti"),
        "dl_column": ("drb.uethpdl.snssai", "drb.uethpdl"),
        "ul_column": ("drb.uethpul.snssai", "drb.uethpul"),
    },
    required=("time_column", "slice_column"),
    one_of=("dl_column", "ul_column"),
    fixed={"value_unit": "kbps", "slice_is_snssai": True},
)

PRESETS: dict[str, Preset] = {KPM_UE.name: KPM_UE, KPM_SNSSAI.name: KPM_SNSSAI}


def preset_fields(
    name: str, header: list[str], source: object, given: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The mapping fields preset ``name`` gives for a file with ``header`` (``given``: the
    fields the user set, which need not be found).

    Raises :class:`TraceError` naming ``source``, the role and the candidates when a
    needed column is not there.
    """
    try:
        preset = PRESETS[name]
    except KeyError:
        raise TraceError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})") from None
    by_key = {h.strip().lower(): h for h in header}
    out: dict[str, Any] = dict(preset.fixed)
    given = given or {}
    for key, candidates in preset.columns.items():
        found = next((by_key[c] for c in candidates if c in by_key), None)
        if found is not None:
            out[key] = found
    found_one = _any(out, preset.one_of) or _any(given, preset.one_of)
    for key in (*preset.required, *([] if found_one else preset.one_of[:1])):
        if key not in out and key not in given:
            role = key.removesuffix("_column")
            looked = preset.columns.get(key, ())
            raise TraceError(
                f"{source}: preset {name}: no {role} column (looked for "
                f"{', '.join(map(repr, looked))}; the header has "
                f"{', '.join(map(repr, header))}): give --{role}-column"
            )
    return out


def _any(found: dict[str, Any], keys: tuple[str, ...]) -> bool:
    return any(k in found for k in keys)
