"""O-RAN A1 ORAN_SliceSLATarget_1.0.0 import and export: schema, mapping, unmapped fields,
round trips, and the two commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sliceai import cli
from sliceai.policy import DIRECTIONS, Direction, load_policy, loads_policy
from sliceai.policy import commands as policy_commands
from sliceai.policy.a1 import (
    A1_POLICY_TYPE,
    A1Error,
    export_a1,
    import_a1,
    parse_a1_text,
    parse_plmn,
    schema,
    schema_problems,
)

ROOT = Path(__file__).resolve().parents[2]
POLICIES = sorted((ROOT / "policies").glob("*.yaml"))


def a1_doc(sst: int = 1, sd: str | None = "0000B1", **objectives: Any) -> dict[str, Any]:
    slice_id: dict[str, Any] = {"sst": sst, "plmnId": {"mcc": "208", "mnc": "93"}}
    if sd is not None:
        slice_id["sd"] = sd
    return {
        "scope": {"sliceId": slice_id},
        "sliceSlaObjectives": objectives or {"guaDlThptPerSlice": 20000},
    }


def figures(policy: Any) -> dict[str, tuple[Any, ...]]:
    """Each slice's throughput figures by S-NSSAI."""
    return {
        str(s.snssai): tuple((s.guaranteed.get(d), s.maximum.get(d)) for d in DIRECTIONS)
        for s in policy.slices
    }


def test_the_schema_names_the_a1_fields_exactly() -> None:
    doc = schema()
    assert doc["title"] == A1_POLICY_TYPE
    assert set(doc["properties"]) == {"scope", "sliceSlaObjectives", "sliceSlaResources"}
    assert set(doc["properties"]["sliceSlaObjectives"]["properties"]) == {
        "maxNumberOfUes",
        "maxNumberOfPduSessions",
        "guaDlThptPerSlice",
        "maxDlThptPerSlice",
        "maxDlThptPerUe",
        "guaUlThptPerSlice",
        "maxUlThptPerSlice",
        "maxUlThptPerUe",
    }
    assert doc["definitions"]["SliceId"]["required"] == ["sst", "plmnId"]
    assert policy_commands.A1_POLICY_TYPE == A1_POLICY_TYPE


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_export_then_import_gives_the_same_figures(path: Path) -> None:
    policy = load_policy(path)
    exported = export_a1(policy, ("208", "93"))
    for doc in exported.policies:
        assert schema_problems(doc, "x") == []
    docs = [(f"a1[{i}]", d) for i, d in enumerate(exported.policies)]
    onto_base = import_a1(docs, base=policy)
    assert onto_base.policy == policy  # same figures and everything A1 cannot carry kept
    alone = import_a1(docs, capacity_bps=max(link.capacity for link in policy.topology.links))
    with_figures = {k: v for k, v in figures(policy).items() if any(x for p in v for x in p)}
    assert figures(alone.policy) == with_figures


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 255),
            st.one_of(st.none(), st.integers(0, 0xFFFFFF).map(lambda n: f"{n:06X}")),
            st.lists(
                st.one_of(st.none(), st.integers(0, 10**9).map(lambda n: n / 1000)),
                min_size=4,
                max_size=4,
            ),
        ),
        min_size=1,
        max_size=6,
        unique_by=lambda t: (t[0], t[1]),
    )
)
def test_import_then_export_gives_the_same_objectives(
    slices: list[tuple[int, str | None, list[float | None]]],
) -> None:
    docs = []
    for sst, sd, (g_dl, g_ul, m_dl, m_ul) in slices:
        if g_dl is not None and m_dl is not None and g_dl > m_dl:
            g_dl, m_dl = m_dl, g_dl
        if g_ul is not None and m_ul is not None and g_ul > m_ul:
            g_ul, m_ul = m_ul, g_ul
        objectives = {
            k: v
            for k, v in {
                "guaDlThptPerSlice": g_dl,
                "guaUlThptPerSlice": g_ul,
                "maxDlThptPerSlice": m_dl,
                "maxUlThptPerSlice": m_ul,
            }.items()
            if v is not None
        } or {"maxDlThptPerSlice": 1000}
        docs.append(a1_doc(sst, sd, **objectives))
    imported = import_a1([(f"a[{i}]", d) for i, d in enumerate(docs)], capacity_bps=1e13)
    back = export_a1(imported.policy, ("208", "93")).policies
    assert len(back) == len(docs)
    for doc, again in zip(docs, back, strict=True):
        assert again["scope"] == doc["scope"]
        assert again["sliceSlaObjectives"] == pytest.approx(doc["sliceSlaObjectives"], rel=1e-12)


def test_a1_throughputs_are_kbit_per_second_on_the_matching_slice() -> None:
    base = load_policy(ROOT / "policies" / "hospital.yaml")
    doc = a1_doc(1, "0000b1", guaDlThptPerSlice=30000, maxUlThptPerSlice=90000)
    result = import_a1([("a.json", doc)], base=base)
    consults = result.policy.slice("consults")
    assert consults.guaranteed_bps(Direction.DL) == 30e6
    assert consults.maximum_bps(Direction.UL) == 90e6
    # the A1 policy is the whole SLA: what it leaves out is unset
    assert consults.guaranteed.ul is None
    assert consults.maximum.dl is None
    assert consults.match == base.slice("consults").match
    assert consults.five_qi == base.slice("consults").five_qi
    assert result.policy.slice("surgery-video") == base.slice("surgery-video")
    assert any("kept as they are" in n for n in result.notes)


def test_every_unmapped_a1_field_is_listed_with_its_value() -> None:
    doc = a1_doc(
        guaDlThptPerSlice=1000,
        maxNumberOfUes=100,
        maxNumberOfPduSessions=200,
        maxDlThptPerUe=50,
        maxUlThptPerUe=20,
    )
    doc["sliceSlaResources"] = {
        "cellIdList": [{"plmnId": {"mcc": "208", "mnc": "93"}, "cId": {"ncI": 7}}]
    }
    result = import_a1([("a.json", doc)], capacity_bps=1e9)
    listed = {u.field: u.value for u in result.unmapped}
    assert listed == {
        "scope.sliceId.plmnId": {"mcc": "208", "mnc": "93"},
        "sliceSlaObjectives.maxNumberOfUes": 100,
        "sliceSlaObjectives.maxNumberOfPduSessions": 200,
        "sliceSlaObjectives.maxDlThptPerUe": 50,
        "sliceSlaObjectives.maxUlThptPerUe": 20,
        "sliceSlaResources": doc["sliceSlaResources"],
    }
    assert all(u.where == "a.json" and u.reason for u in result.unmapped)


def test_export_lists_every_policy_field_a1_cannot_carry() -> None:
    policy = load_policy(ROOT / "policies" / "hospital.yaml")
    result = export_a1(policy)
    fields = {(u.where.split(" ")[0], u.field) for u in result.unmapped}
    for i, s in enumerate(policy.slices):
        for name in ("five_qi", "latency_budget", "priority", "risk"):
            assert (f"slices[{i}]", name) in fields
        assert ((f"slices[{i}]", "match") in fields) == bool(s.match)
    assert ("topology.links[0]", "capacity") in fields
    assert any("test PLMN" in n for n in result.notes)


def test_a_slice_without_figures_is_reported_not_exported() -> None:
    text = """\
name: p
slices:
  - {name: a, snssai: {sst: 1}, five_qi: 9, default: true}
  - {name: b, snssai: {sst: 2}, five_qi: 9, maximum: {dl: 1 Mbps}, match: [{vlan: 7}]}
topology: {links: [{name: l, capacity: 1 Gbps, slices: [a, b]}]}
"""
    result = export_a1(loads_policy(text))
    assert [d["scope"]["sliceId"]["sst"] for d in result.policies] == [2]
    assert any(
        u.field == "guaranteed, maximum" and "none is written" in u.reason for u in result.unmapped
    )


@pytest.mark.parametrize(
    ("mutate", "says"),
    [
        (lambda d: d.pop("scope"), "the document: 'scope' is a required property"),
        (
            lambda d: d["scope"]["sliceId"].update(sd="XYZ"),
            "scope.sliceId.sd: 'XYZ' does not match",
        ),
        (lambda d: d["scope"]["sliceId"].pop("plmnId"), "'plmnId' is a required property"),
        (lambda d: d["sliceSlaObjectives"].update(latency=5), "'latency' was unexpected"),
        (lambda d: d.update(sliceSlaObjectives={}), "sliceSlaObjectives: {} should be non-empty"),
        (
            lambda d: d["sliceSlaObjectives"].update(guaDlThptPerSlice=-5),
            "sliceSlaObjectives.guaDlThptPerSlice: -5 is not a finite number >= 0",
        ),
    ],
)
def test_schema_refusals_are_sentences_naming_file_and_field(mutate: Any, says: str) -> None:
    doc = a1_doc()
    mutate(doc)
    with pytest.raises(A1Error) as info:
        import_a1([("x.json[3]", doc)], capacity_bps=1e9)
    assert any(p.startswith("x.json[3]: ") and says in p for p in info.value.problems), (
        info.value.problems
    )


def test_json_that_is_not_json_and_nan_are_refused() -> None:
    with pytest.raises(A1Error, match=r"x\.json: not JSON"):
        parse_a1_text("{", "x.json")
    with pytest.raises(A1Error, match="NaN is not a JSON number"):
        parse_a1_text('{"a": NaN}', "x.json")
    assert [w for w, _ in parse_a1_text("[{}, {}]", "l.json")] == ["l.json[0]", "l.json[1]"]


def test_two_policies_for_one_snssai_and_impossible_sums_are_refused() -> None:
    with pytest.raises(
        A1Error, match=r"b.json: S-NSSAI 1-0000B1 has an A1 policy already \(a.json\)"
    ):
        import_a1([("a.json", a1_doc()), ("b.json", a1_doc())], capacity_bps=1e9)
    with pytest.raises(
        A1Error, match=r"a\.json: slices\[0\]: guaranteed\.dl \(5 Mbps\) is above maximum\.dl"
    ):
        import_a1(
            [("a.json", a1_doc(guaDlThptPerSlice=5000, maxDlThptPerSlice=1000))], capacity_bps=1e9
        )
    with pytest.raises(A1Error, match="above the link capacity 1 Mbps"):
        import_a1([("a.json", a1_doc(guaDlThptPerSlice=5000))], capacity_bps=1e6)
    with pytest.raises(A1Error, match="either a base policy"):
        import_a1([("a.json", a1_doc())])


def test_new_slices_get_free_vlans_and_say_so() -> None:
    base = loads_policy(
        """\
name: p
slices:
  - {name: a, snssai: {sst: 1}, five_qi: 9, match: [{vlan: 100}]}
topology: {links: [{name: l1, capacity: 1 Gbps, slices: [a]}, {name: l2, capacity: 1 Gbps, slices: [a]}]}
"""
    )
    result = import_a1([("n.json", a1_doc(2, None, maxDlThptPerSlice=1000))], base=base)
    new = result.policy.slice("a1-sst2")
    assert [r.vlan for r in new.match] == [101]
    assert result.policy.links_of("a1-sst2") == ("l1", "l2")
    assert any("VLAN 101" in n and "edit its" in n for n in result.notes)


def test_plmn_parsing() -> None:
    assert parse_plmn("208-93") == ("208", "93")
    assert parse_plmn("310410") == ("310", "410")
    for bad in ("2089", "20-893", "abc-de"):
        with pytest.raises(ValueError, match="write MCC-MNC"):
            parse_plmn(bad)


def test_the_commands_round_trip_through_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = ROOT / "policies" / "factory.yaml"
    out = tmp_path / "a1.json"
    assert cli.main(["policy", "export-a1", str(src), "--plmn", "001-01", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "not mapped" in err
    assert "five_qi" in err
    docs = json.loads(out.read_text())
    assert all(d["scope"]["sliceId"]["plmnId"] == {"mcc": "001", "mnc": "01"} for d in docs)
    for i, doc in enumerate(docs):  # one file per policy is read the same as a list
        (tmp_path / f"p{i}.json").write_text(json.dumps(doc))
    back = tmp_path / "back.yaml"
    files = [str(tmp_path / f"p{i}.json") for i in range(len(docs))]
    assert cli.main(["policy", "import-a1", *files, "--base", str(src), "-o", str(back)]) == 0
    err = capsys.readouterr().err
    assert "scope.sliceId.plmnId" in err
    assert f"imported {len(docs)} A1 policies" in err
    assert figures(load_policy(back)) == figures(load_policy(src))


def test_the_import_command_refuses_invalid_a1_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"scope": {"sliceId": {"sst": 1}}, "sliceSlaObjectives": {}}))
    out = tmp_path / "p.yaml"
    assert cli.main(["policy", "import-a1", str(bad), "--capacity", "1 Gbps", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "'plmnId' is a required property" in err
    assert "not imported" in err
    assert not out.exists()
    assert (
        cli.main(["policy", "import-a1", str(tmp_path / "none.json"), "--capacity", "1 Gbps"]) == 2
    )
