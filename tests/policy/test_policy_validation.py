"""One failing policy per validation rule; each message must name file, line and field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sliceai.policy import Direction, PolicyError, load_policy, loads_policy

BASE = """\
name: tiny
slices:
  - name: haptics
    snssai: {sst: 2, sd: "0000A1"}
    five_qi: 85
    guaranteed: {dl: 2 Mbps, ul: 1 Mbps}
    maximum: {dl: 4 Mbps, ul: 2 Mbps}
    risk: 0.001
    match:
      - {protocol: udp, ports: [5000]}
  - name: embb
    snssai: {sst: 1}
    five_qi: 9
    default: true
topology:
  links:
    - name: uplink
      capacity: 100 Mbps
      slices: [haptics, embb]
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        loads_policy(text, "p.yaml")
    return [str(issue) for issue in info.value.issues]


def test_base_policy_is_valid() -> None:
    policy = loads_policy(BASE, "p.yaml")
    haptics = policy.slice("haptics")
    assert haptics.guaranteed_bps(Direction.DL) == 2e6
    assert haptics.maximum_bps(Direction.UL) == 2e6
    assert policy.slice("embb").maximum_bps(Direction.DL) == float("inf")
    assert policy.links_of("embb") == ("uplink",)


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "words"),
    [
        # unknown key, with a suggestion
        (
            "    risk: 0.001\n",
            "    risk: 0.001\n    priorty: 3\n",
            9,
            "slices[0].priorty",
            "unknown key 'priorty'; did you mean 'priority'",
        ),
        # wrong type
        (
            "    risk: 0.001\n",
            "    risk: 0.001\n    priority: high\n",
            9,
            "slices[0].priority",
            "integer",
        ),
        # bad unit
        (
            "{dl: 2 Mbps, ul: 1 Mbps}",
            "{dl: 2 Mbs, ul: 1 Mbps}",
            6,
            "slices[0].guaranteed.dl",
            "unknown rate unit 'Mbs'",
        ),
        # a rate with no unit at all
        ("capacity: 100 Mbps", "capacity: 100", 18, "topology.links[0].capacity", "needs a unit"),
        # SST out of range
        ("{sst: 2, sd:", "{sst: 256, sd:", 4, "slices[0].snssai.sst", "less than or equal to 255"),
        # SD not 6 hex digits
        ('sd: "0000A1"', 'sd: "00A1"', 4, "slices[0].snssai.sd", "pattern"),
        # 5QI out of range
        ("five_qi: 85", "five_qi: 300", 5, "slices[0].five_qi.value", "less than or equal to 255"),
        # non-standardized 5QI without its characteristics
        ("five_qi: 85", "five_qi: 200", 5, "slices[0].five_qi", "not standardized"),
        # guaranteed above maximum
        (
            "maximum: {dl: 4 Mbps",
            "maximum: {dl: 1 Mbps",
            3,
            "slices[0]",
            "guaranteed.dl (2 Mbps) is above maximum.dl (1 Mbps)",
        ),
        # guarantees above link capacity
        (
            "capacity: 100 Mbps",
            "capacity: 1500 kbps",
            18,
            "topology.links[0].capacity",
            "above the link capacity",
        ),
        # risk outside (0, 0.5]
        ("risk: 0.001", "risk: 0.7", 8, "slices[0].risk", "less than or equal to 0.5"),
        ("risk: 0.001", "risk: 0", 8, "slices[0].risk", "greater than 0"),
        # a link naming a slice that does not exist
        (
            "slices: [haptics, embb]",
            "slices: [haptics, embb, hapticz]",
            19,
            "topology.links[0].slices[2]",
            "unknown slice 'hapticz'; did you mean 'haptics'",
        ),
        # DSCP out of range
        (
            "{protocol: udp, ports: [5000]}",
            "{protocol: udp, ports: [5000], dscp: [64]}",
            10,
            "slices[0].match[0].dscp",
            "DSCP 64",
        ),
        # ports without a transport protocol
        (
            "{protocol: udp, ports: [5000]}",
            "{ports: [5000], dscp: [46]}",
            10,
            "slices[0].match[0]",
            "ports need protocol",
        ),
    ],
)
def test_each_rule_names_file_line_and_field(
    old: str, new: str, line: int, field: str, words: str
) -> None:
    assert old in BASE
    errors = errors_of(BASE.replace(old, new, 1))
    wanted = f"p.yaml:{line}: {field}: "
    hits = [e for e in errors if e.startswith(wanted)]
    assert hits, f"no error starting {wanted!r} in {errors}"
    assert any(words in e for e in hits), errors


def test_duplicate_slice_name() -> None:
    text = BASE.replace(
        "  - name: embb\n    snssai: {sst: 1}", "  - name: haptics\n    snssai: {sst: 1}"
    )
    errors = errors_of(text)
    assert any(
        e.startswith("p.yaml:11: slices[1].name: slice name 'haptics' is used twice")
        for e in errors
    ), errors


def test_duplicate_snssai() -> None:
    errors = errors_of(BASE.replace("snssai: {sst: 1}", 'snssai: {sst: 2, sd: "0000a1"}'))
    assert any("slices[1].snssai: S-NSSAI 2-0000A1 is used by two slices" in e for e in errors), (
        errors
    )
    assert any(e.startswith("p.yaml:12:") for e in errors)


def test_slice_on_no_link() -> None:
    errors = errors_of(BASE.replace("slices: [haptics, embb]", "slices: [embb]"))
    assert errors == ["p.yaml:3: slices[0].name: slice 'haptics' crosses no link in topology.links"]


def test_overlapping_match_rules() -> None:
    text = BASE.replace(
        "    five_qi: 9\n    default: true\n",
        "    five_qi: 9\n    match:\n      - {protocol: udp, ports: [4000-5001]}\n",
    )
    errors = errors_of(text)
    assert any(
        e.startswith(
            "p.yaml:15: slices[1].match[0]: overlaps slices[0].match[0] of slice 'haptics'"
        )
        for e in errors
    ), errors


def test_disjoint_match_rules_are_fine() -> None:
    text = BASE.replace(
        "    five_qi: 9\n    default: true\n",
        "    five_qi: 9\n    match:\n      - {protocol: udp, ports: [5001-6000]}\n      - {protocol: tcp, ports: [5000]}\n",
    )
    assert loads_policy(text).slice("embb").match[1].protocol == "tcp"


def test_two_default_slices() -> None:
    text = BASE.replace("    risk: 0.001\n", "    risk: 0.001\n    default: true\n")
    errors = errors_of(text)
    assert any("slices[1].default: only one slice may be the default slice" in e for e in errors), (
        errors
    )


def test_every_error_reported_at_once() -> None:
    text = BASE.replace("risk: 0.001", "risk: 2").replace(
        "five_qi: 9", "five_qi: 9\n    colour: red"
    )
    errors = errors_of(text)
    assert len(errors) == 2
    assert {e.split(": ")[1] for e in errors} == {"slices[0].risk", "slices[1].colour"}


def test_duplicate_yaml_key() -> None:
    errors = errors_of(BASE.replace("    risk: 0.001\n", "    risk: 0.001\n    risk: 0.01\n"))
    assert any(e.startswith("p.yaml:9: slices[0].risk: key appears twice") for e in errors), errors


def test_yaml_syntax_error_has_line() -> None:
    errors = errors_of(BASE.replace("capacity: 100 Mbps", "capacity: [100 Mbps"))
    assert len(errors) == 1
    assert re.match(r"p\.yaml:\d+: YAML syntax error", errors[0]), errors


@pytest.mark.parametrize("text", ["", "   \n# only a comment\n"])
def test_empty_file(text: str) -> None:
    assert errors_of(text) == ["p.yaml: file is empty; expected a policy"]


def test_not_a_mapping() -> None:
    errors = errors_of("- a\n- b\n")
    assert "expected a mapping" in errors[0]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"missing\.yaml: cannot read file"):
        load_policy(tmp_path / "missing.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PolicyError, match="cannot read file"):
        load_policy(binary)


def test_defaults_come_from_the_5qi_table() -> None:
    policy = loads_policy(BASE)
    embb = policy.slice("embb")
    assert embb.latency_budget_ms == 300  # 5QI 9: PDB 300 ms
    assert embb.priority_level == 90
    assert not embb.is_guaranteed
    haptics = policy.slice("haptics")
    q = haptics.five_qi.characteristics
    assert (q.resource_type.value, q.pdb_ms, q.per, q.mdbv_bytes, q.averaging_window_ms) == (
        "DC-GBR",
        5,
        1e-5,
        255,
        2000,
    )
    assert haptics.is_guaranteed


def test_policy_is_frozen() -> None:
    from pydantic import ValidationError

    policy = loads_policy(BASE)
    with pytest.raises(ValidationError):
        policy.slices[0].risk = 0.3  # type: ignore[misc]


def test_unknown_yaml_tag_is_a_policy_error() -> None:
    errors = errors_of(BASE.replace("risk: 0.001", "risk: !0 0.001"))
    assert any(e.startswith("p.yaml:8: slices[0].risk: cannot read value") for e in errors), errors


def test_names_match_case_insensitively() -> None:
    text = BASE.replace("name: embb", "name: eMBB").replace("[haptics, embb]", "[Haptics, EMBB]")
    policy = loads_policy(text, "p.yaml")
    assert policy.slice_names == ("haptics", "embb")
    assert policy.links_of("embb") == ("uplink",)


@pytest.mark.parametrize(
    ("bad", "field", "kind", "suggestion"),
    [
        ("  - name: embb\n", "slices[1].name", "slice", "'e-mbb'"),
        ("    - name: uplink\n", "topology.links[0].name", "link", "'up-link'"),
    ],
)
def test_an_invalid_name_is_refused_with_a_sentence(
    bad: str, field: str, kind: str, suggestion: str
) -> None:
    replacement = bad.replace("embb", "e_mbb").replace("uplink", "Up Link")
    text = BASE.replace(bad, replacement)
    if kind == "slice":
        text = text.replace("[haptics, embb]", "[haptics, e_mbb]")
    errors = errors_of(text)
    mine = [e for e in errors if field in e]
    assert mine, errors
    assert f"{kind} names are lower-case letters, digits and '-'" in mine[0]
    assert f"did you mean {suggestion}?" in mine[0]
    assert "pattern" not in " ".join(errors)
