"""O-RAN A1 slice SLA policies (``ORAN_SliceSLATarget_1.0.0``) to and from a slice policy.

The A1 type (O-RAN.WG2.A1TD) scopes one policy to one slice, ``scope.sliceId {sst, sd,
plmnId {mcc, mnc}}``, and states ``sliceSlaObjectives`` in GSMA NG.116 terms, throughputs
in kbit/s. Documents are validated against the JSON schema shipped in
``sliceai/data/a1/`` before anything is read from them.

Mapping (both ways; every field that has no counterpart is listed in ``unmapped``,
never dropped silently):

====================================  =================================================
A1                                    slice policy
====================================  =================================================
``scope.sliceId.sst`` / ``sd``        ``snssai.sst`` / ``snssai.sd`` (the match key)
``guaDlThptPerSlice`` (kbit/s)        ``guaranteed.dl`` (x 1000 bit/s)
``guaUlThptPerSlice``                 ``guaranteed.ul``
``maxDlThptPerSlice``                 ``maximum.dl``
``maxUlThptPerSlice``                 ``maximum.ul``
``scope.sliceId.plmnId``              none (export takes it from ``plmn``)
``maxDlThptPerUe`` / ``maxUlThptPerUe``  none: per-UE caps are the RAN scheduler's
``maxNumberOfUes`` / ``...PduSessions``  none: admission of UEs and sessions
``sliceSlaResources`` (cells, TAs)    none: the figures hold on every link of the slice
none                                  ``five_qi``, ``latency_budget``, ``priority``,
                                      ``risk``, ``match``, ``default``, topology
====================================  =================================================

An A1 policy is a slice's whole SLA: a throughput it leaves out is unset on import
(no guarantee, no cap). Import needs a topology: ``base`` (an existing policy: its
links, and for a slice with the same S-NSSAI its name, 5QI, risk, priority, latency
and match rules; only the throughput figures come from A1; base slices no A1 policy
names are kept as they are) or ``capacity_bps`` (one link ``a1-link`` of that capacity
per direction). A1 carries no packet classification, so a slice new to the policy is
matched by a VLAN (``vlan_start``, ``vlan_start + 1``, ... skipping VLANs in use), said
in ``notes``: edit its match rules before enforcing the policy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator  # type: ignore[import-untyped, unused-ignore]

from sliceai.policy.loader import PolicyError, loads_policy
from sliceai.policy.model import DIRECTIONS, Policy, Slice
from sliceai.policy.units import format_rate

A1_POLICY_TYPE = "ORAN_SliceSLATarget_1.0.0"
SCHEMA_PATH = (
    Path(__file__).resolve().parent.parent / "data" / "a1" / f"{A1_POLICY_TYPE}.schema.json"
)
KBPS = 1e3  # A1 throughputs are kbit/s
DEFAULT_PLMN = ("001", "01")  # the test PLMN (TS 23.003); export-a1 --plmn sets the real one
NEW_SLICE_5QI = 9  # non-GBR default bearer: A1 says nothing of 5QI
A1_LINK = "a1-link"

#: A1 throughput objective -> (policy field, direction index)
THROUGHPUTS: dict[str, tuple[str, int]] = {
    "guaDlThptPerSlice": ("guaranteed", 0),
    "guaUlThptPerSlice": ("guaranteed", 1),
    "maxDlThptPerSlice": ("maximum", 0),
    "maxUlThptPerSlice": ("maximum", 1),
}
#: A1 fields with no counterpart in a slice policy, and why.
UNMAPPED_A1: dict[str, str] = {
    "scope.sliceId.plmnId": "a slice policy has no PLMN (export-a1 --plmn writes one)",
    "sliceSlaObjectives.maxDlThptPerUe": "per-UE caps are the RAN scheduler's; sliceai "
    "meters whole slices",
    "sliceSlaObjectives.maxUlThptPerUe": "per-UE caps are the RAN scheduler's; sliceai "
    "meters whole slices",
    "sliceSlaObjectives.maxNumberOfUes": "admitting UEs is the RAN's and the core's; sliceai "
    "allocates capacity",
    "sliceSlaObjectives.maxNumberOfPduSessions": "admitting PDU sessions is the core's; "
    "sliceai allocates capacity",
    "sliceSlaResources": "a slice policy has links, not cells or tracking areas: the figures "
    "hold on every link the slice crosses",
}


class A1Error(ValueError):
    """A1 documents that cannot be imported (or a policy that cannot be exported);
    ``problems`` holds one sentence each."""

    def __init__(self, problems: Sequence[str]):
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Unmapped:
    """A field with no counterpart on the other side: where, which, its value and why."""

    where: str  # "a1.json[0]" on import, "slices[2] (name)" on export
    field: str
    value: Any
    reason: str

    def __str__(self) -> str:
        value = json.dumps(self.value, sort_keys=True) if self.value is not None else "-"
        if len(value) > 80:
            value = value[:77] + "..."
        return f"{self.where}: {self.field} = {value}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "field": self.field,
            "value": self.value,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class A1Import:
    policy: Policy
    unmapped: tuple[Unmapped, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class A1Export:
    policies: tuple[dict[str, Any], ...]  # one ORAN_SliceSLATarget_1.0.0 document per slice
    unmapped: tuple[Unmapped, ...]
    notes: tuple[str, ...]


@cache
def schema() -> dict[str, Any]:
    """The JSON schema of ``ORAN_SliceSLATarget_1.0.0`` that documents are checked against."""
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


@cache
def _validator() -> Any:
    return Draft7Validator(schema())


def schema_problems(doc: Any, where: str) -> list[str]:
    """One sentence per way ``doc`` breaks the schema (empty when valid), plus negative
    or non-finite numbers, which the schema's ``number`` lets through."""
    out = []
    for err in sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.path))):
        path = _path(err.absolute_path) or "the document"
        out.append(f"{where}: {path}: {err.message} (schema {A1_POLICY_TYPE})")
    if not out:
        for key, value in doc["sliceSlaObjectives"].items():
            if not (math.isfinite(value) and value >= 0):
                out.append(
                    f"{where}: sliceSlaObjectives.{key}: {value!r} is not a finite number >= 0"
                )
    return out


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def parse_a1_text(text: str, source: str) -> list[tuple[str, Any]]:
    """The A1 documents in a JSON text (one object, or a list of them) as ``(where, doc)``;
    :class:`A1Error` when it is not JSON (NaN and Infinity are not JSON either)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    try:
        data = json.loads(text, parse_constant=refuse)
    except ValueError as exc:
        raise A1Error([f"{source}: not JSON: {exc}"]) from None
    if isinstance(data, list):
        return [(f"{source}[{i}]", d) for i, d in enumerate(data)]
    return [(source, data)]


def _snssai_key(doc: dict[str, Any]) -> str:
    sid = doc["scope"]["sliceId"]
    sd = sid.get("sd")
    return f"{sid['sst']}" if sd is None else f"{sid['sst']}-{sd.upper()}"


def _rate(kbps: float) -> str:
    return f"{round(float(kbps) * KBPS, 6)!r} bps"


def import_a1(
    documents: Sequence[tuple[str, Any]],
    *,
    base: Policy | None = None,
    capacity_bps: float | None = None,
    name: str | None = None,
    vlan_start: int = 100,
) -> A1Import:
    """A slice policy from A1 documents ``(where, doc)`` (see the module docstring).

    Raises :class:`A1Error` with every problem: schema violations, two documents for
    one S-NSSAI, neither or both of ``base`` and ``capacity_bps``, and a policy that
    does not validate (a guarantee above its maximum, guarantees over capacity).
    """
    problems = [p for where, doc in documents for p in schema_problems(doc, where)]
    if (base is None) == (capacity_bps is None):
        problems.append("give either a base policy (its topology) or a link capacity")
    if not documents:
        problems.append("no A1 policy given")
    seen: dict[str, str] = {}
    for where, doc in documents:
        if problems:
            break
        key = _snssai_key(doc)
        if key in seen:
            problems.append(f"{where}: S-NSSAI {key} has an A1 policy already ({seen[key]})")
        seen[key] = where
    if problems:
        raise A1Error(problems)

    unmapped = [u for where, doc in documents for u in _unmapped_of(where, doc)]
    notes: list[str] = []
    by_snssai = {str(s.snssai): s for s in base.slices} if base is not None else {}
    used_vlans = {r.vlan for s in (base.slices if base else ()) for r in s.match}
    slices: dict[str, dict[str, Any]] = {}
    if base is not None:
        for s in base.slices:
            slices[str(s.snssai)] = s.model_dump(mode="json", exclude_defaults=True)
    sources: dict[str, str] = {}
    vlan = vlan_start
    for where, doc in documents:
        key = _snssai_key(doc)
        sources[key] = where
        old = by_snssai.get(key)
        if old is not None:
            data = slices[key]
            notes.append(
                f"{where}: slice '{old.name}' (S-NSSAI {key}): throughputs from A1; 5QI, "
                "risk, priority, latency budget and match rules kept from the base policy"
            )
        else:
            while vlan in used_vlans:
                vlan += 1
            sid = doc["scope"]["sliceId"]
            new_name = f"a1-sst{sid['sst']}" + (f"-{sid['sd'].lower()}" if "sd" in sid else "")
            data = {
                "name": new_name,
                "description": f"from A1 {A1_POLICY_TYPE} policy {where}",
                "snssai": {"sst": sid["sst"], **({"sd": sid["sd"].upper()} if "sd" in sid else {})},
                "five_qi": NEW_SLICE_5QI,
                "match": [{"vlan": vlan}],
            }
            notes.append(
                f"{where}: new slice '{new_name}' (S-NSSAI {key}): 5QI {NEW_SLICE_5QI} and "
                f"matched by VLAN {vlan} (A1 carries no packet classification): edit its "
                "five_qi and match rules before enforcing the policy"
            )
            used_vlans.add(vlan)
            slices[key] = data
        data.pop("guaranteed", None)
        data.pop("maximum", None)
        for field, value in doc["sliceSlaObjectives"].items():
            if field in THROUGHPUTS:
                kind, d = THROUGHPUTS[field]
                data.setdefault(kind, {})[DIRECTIONS[d].value] = _rate(value)
    kept = [str(s.snssai) for s in (base.slices if base else ()) if str(s.snssai) not in sources]
    if kept:
        notes.append(
            f"{len(kept)} slice(s) of the base policy have no A1 policy and are kept as they "
            f"are: {', '.join(by_snssai[k].name for k in kept)}"
        )
    policy_data = _policy_data(list(slices.values()), base, capacity_bps, name, notes)
    return A1Import(_validated(policy_data, list(slices), sources), tuple(unmapped), tuple(notes))


def _policy_data(
    slices: list[dict[str, Any]],
    base: Policy | None,
    capacity_bps: float | None,
    name: str | None,
    notes: list[str],
) -> dict[str, Any]:
    names = [s["name"] for s in slices]
    if base is not None:
        data = base.model_dump(mode="json", exclude_defaults=True)
        new = [n for n in names if n not in base.slice_names]
        for link in data["topology"]["links"]:
            link["slices"] = list(link["slices"]) + new
        if new:
            notes.append(f"new slices cross every link of the base policy: {', '.join(new)}")
        data["slices"] = slices
        if name:
            data["name"] = name
        return data
    assert capacity_bps is not None
    return {
        "name": name or "a1-import",
        "description": f"imported from O-RAN A1 {A1_POLICY_TYPE} policies",
        "slices": slices,
        "topology": {
            "links": [{"name": A1_LINK, "capacity": f"{capacity_bps!r} bps", "slices": names}]
        },
    }


def _validated(data: dict[str, Any], keys: list[str], sources: dict[str, str]) -> Policy:
    text = yaml.safe_dump(data, sort_keys=False)
    try:
        return loads_policy(text, "imported policy")
    except PolicyError as exc:
        problems = []
        for issue in exc.issues:
            where = ""
            parts = issue.field.split(".", 1)[0]
            if parts.startswith("slices[") and parts.endswith("]"):
                i = int(parts[len("slices[") : -1])
                where = sources.get(keys[i], "") if i < len(keys) else ""
            problems.append(f"{where + ': ' if where else ''}{issue.field}: {issue.message}")
        raise A1Error(problems) from None


def _unmapped_of(where: str, doc: dict[str, Any]) -> list[Unmapped]:
    out = []
    sid = doc["scope"]["sliceId"]
    out.append(
        Unmapped(where, "scope.sliceId.plmnId", sid["plmnId"], UNMAPPED_A1["scope.sliceId.plmnId"])
    )
    for key, value in doc["sliceSlaObjectives"].items():
        if key not in THROUGHPUTS:
            field = f"sliceSlaObjectives.{key}"
            out.append(Unmapped(where, field, value, UNMAPPED_A1[field]))
    if "sliceSlaResources" in doc:
        out.append(
            Unmapped(
                where,
                "sliceSlaResources",
                doc["sliceSlaResources"],
                UNMAPPED_A1["sliceSlaResources"],
            )
        )
    return out


# --- export ---------------------------------------------------------------------------------


def _kbps(bps: float) -> float | int:
    k = bps / KBPS
    return int(k) if k.is_integer() and abs(k) < 2**53 else k


def export_a1(policy: Policy, plmn: tuple[str, str] = DEFAULT_PLMN) -> A1Export:
    """One ``ORAN_SliceSLATarget_1.0.0`` document per slice with a throughput figure,
    scoped to ``plmn`` (mcc, mnc); every policy field A1 cannot say is in ``unmapped``.
    Each document is checked against the schema (:class:`A1Error` if one fails)."""
    mcc, mnc = plmn
    docs: list[dict[str, Any]] = []
    unmapped: list[Unmapped] = []
    notes: list[str] = []
    if plmn == DEFAULT_PLMN:
        notes.append(f"plmnId is {mcc}-{mnc} (the test PLMN): give the network's with --plmn")
    for i, s in enumerate(policy.slices):
        where = f"slices[{i}] ({s.name})"
        objectives: dict[str, Any] = {}
        for key, (kind, d) in THROUGHPUTS.items():
            value = getattr(s, kind).get(DIRECTIONS[d])
            if value is not None:
                objectives[key] = _kbps(value)
        unmapped += _slice_unmapped(where, s)
        if not objectives:
            unmapped.append(
                Unmapped(
                    where,
                    "guaranteed, maximum",
                    None,
                    "no throughput figure: an A1 policy needs at least one objective, so "
                    "none is written for this slice",
                )
            )
            continue
        slice_id: dict[str, Any] = {"sst": s.snssai.sst}
        if s.snssai.sd is not None:
            slice_id["sd"] = s.snssai.sd
        slice_id["plmnId"] = {"mcc": mcc, "mnc": mnc}
        docs.append({"scope": {"sliceId": slice_id}, "sliceSlaObjectives": objectives})
    for j, link in enumerate(policy.topology.links):
        unmapped.append(
            Unmapped(
                f"topology.links[{j}] ({link.name})",
                "capacity",
                format_rate(link.capacity),
                "A1 slice SLA policies carry no topology",
            )
        )
    problems = [p for k, doc in enumerate(docs) for p in schema_problems(doc, f"[{k}]")]
    if problems:
        raise A1Error(problems)
    return A1Export(tuple(docs), tuple(unmapped), tuple(notes))


def _slice_unmapped(where: str, s: Slice) -> list[Unmapped]:
    reason = "ORAN_SliceSLATarget_1.0.0 has no such objective"
    out = [
        Unmapped(where, "five_qi", s.five_qi.value, reason),
        Unmapped(where, "latency_budget", f"{s.latency_budget_ms:g} ms", reason),
        Unmapped(where, "priority", s.priority_level, reason),
        Unmapped(where, "risk", s.risk, reason),
    ]
    if s.match:
        rules = [r.model_dump(mode="json", exclude_defaults=True) for r in s.match]
        out.append(Unmapped(where, "match", rules, "A1 carries no packet classification"))
    if s.default:
        out.append(Unmapped(where, "default", True, reason))
    return out


def parse_plmn(text: str) -> tuple[str, str]:
    """``"001-01"`` or ``"00101"`` -> ``("001", "01")``; ValueError with a sentence otherwise."""
    digits = text.replace("-", "")
    if not (digits.isdigit() and len(digits) in (5, 6)) or (
        "-" in text and len(text.split("-")[0]) != 3
    ):
        raise ValueError(f"PLMN {text!r}: write MCC-MNC, 3 digits and 2 or 3, e.g. 001-01")
    return digits[:3], digits[3:]
