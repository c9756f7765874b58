"""The bundled example policies: valid, round-trip through dump, survive random mutation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sliceai.cli import main
from sliceai.policy import PolicyError, dump_policy, load_policy, loads_policy

POLICIES = sorted((Path(__file__).parents[2] / "policies").glob("*.yaml"))


def test_examples_exist() -> None:
    assert {p.stem for p in POLICIES} >= {"hospital", "factory", "campus"}


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_example_round_trip(path: Path) -> None:
    policy = load_policy(path)
    again = loads_policy(dump_policy(policy), "dumped")
    assert again == policy
    assert dump_policy(again) == dump_policy(policy)


# --- mutation fuzzing ---------------------------------------------------------------------

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "20 Mbps",
            "1 Gbps",
            "-5 kbps",
            "1e400 bps",
            "5 ms",
            "udp",
            "10.0.0.0/8",
            "5000-4000",
            "ZZZZZZ",
        ]
    ),
    st.lists(st.integers(-5, 70000), max_size=3),
    st.dictionaries(
        st.sampled_from(["dl", "ul", "sst", "sd", "value", "x"]), st.integers(-1, 300), max_size=2
    ),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(data: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    data = copy.deepcopy(data)
    if not path:
        return value
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    key = path[-1]
    if how == "delete":
        del parent[key]
    elif how == "set":
        parent[key] = value
    elif how == "add" and isinstance(parent[key], dict):
        parent[key]["extra_key"] = value
    elif how == "add" and isinstance(parent[key], list):
        parent[key].append(value)
    else:
        parent[key] = value
    return data


_EXAMPLES = [yaml.safe_load(p.read_text()) for p in POLICIES]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_mutations_load_or_raise_policy_error(data: st.DataObject) -> None:
    doc = data.draw(st.sampled_from(_EXAMPLES))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(doc)))
        how = data.draw(st.sampled_from(["set", "delete", "add"]))
        if how == "delete" and not path:
            continue
        doc = _mutate(doc, path, how, data.draw(_VALUES))
    text = yaml.safe_dump(doc, sort_keys=False)
    try:
        policy = loads_policy(text, "mutant.yaml")
    except PolicyError as exc:
        issues = exc.issues
    else:
        assert loads_policy(dump_policy(policy)) == policy
        return
    assert issues
    assert all(str(i).startswith("mutant.yaml") for i in issues)


# --- the CLI ------------------------------------------------------------------------------------


def test_check_policy_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-policy", *map(str, POLICIES)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        POLICIES[0].read_text().replace("risk: 0.001", "risk: 0.001\n    colour: red", 1)
    )
    assert main(["check-policy", str(bad)]) == 1
    assert "slices[0].colour: unknown key 'colour'" in capsys.readouterr().err
    assert main(["check-policy", str(tmp_path / "nope.yaml")]) == 2
    over = tmp_path / "over.yaml"
    hospital = next(p for p in POLICIES if p.stem == "hospital")
    over.write_text(hospital.read_text().replace("capacity: 1 Gbps", "capacity: 10 Mbps"))
    assert main(["check-policy", str(over)]) == 1
    assert "capacity: guaranteed" in capsys.readouterr().err


def test_policy_show(capsys: pytest.CaptureFixture[str]) -> None:
    hospital = next(p for p in POLICIES if p.stem == "hospital")
    assert main(["policy", "show", str(hospital)]) == 0
    out = capsys.readouterr().out
    assert "surgery-haptics" in out
    assert "85 DC-GBR" in out
    assert "2 Mbps/2 Mbps" in out
    assert "cell-backhaul" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("sliceai ")
