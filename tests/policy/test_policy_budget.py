"""The loader's budget: no YAML aliases (a few hundred bytes must not expand to
gigabytes), a cap on the text's size and on its number of YAML values."""

from __future__ import annotations

from pathlib import Path

import pytest

from sliceai.policy import PolicyError, load_policy, loads_policy
from sliceai.policy.bench import synthetic_policy_yaml
from sliceai.policy.loader import MAX_POLICY_BYTES, MAX_POLICY_NODES

HOSPITAL = Path(__file__).resolve().parents[2] / "policies" / "hospital.yaml"

#: The "billion laughs": 10 levels of 9 aliases, 10^9 strings once expanded.
BOMB = "\n".join(
    ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    + ["name: x"]
)


def _issue(text: str) -> str:
    with pytest.raises(PolicyError) as info:
        loads_policy(text, "p.yaml")
    assert len(info.value.issues) == 1
    return str(info.value.issues[0])


def test_an_alias_bomb_is_refused_at_its_first_alias() -> None:
    assert len(BOMB.encode()) < 1000
    message = _issue(BOMB)
    assert message.startswith("p.yaml:2: YAML alias '*a0' is not allowed")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: &r [1, *r]\n", 1),  # refers to itself: would never end
        ("x: &d {dl: 5 Mbps}\ny:\n  <<: *d\n", 3),  # a merge key is an alias too
        ("x: &n 3\ny: *n\n", 2),  # a scalar alias
    ],
)
def test_every_alias_is_refused_with_its_line(text: str, line: int) -> None:
    assert _issue(text).startswith(f"p.yaml:{line}: YAML alias")


def test_a_real_policy_with_an_alias_is_refused_and_without_it_loads() -> None:
    text = HOSPITAL.read_text(encoding="utf-8")
    assert loads_policy(text).name
    aliased = text.replace("name:", "name: &n", 1) + "extra: *n\n"
    assert "YAML alias '*n'" in _issue(aliased)


def test_text_over_the_size_cap_is_refused_unread(tmp_path: Path) -> None:
    big = "# padding\n" * (MAX_POLICY_BYTES // 10 + 1)
    assert f"at most {MAX_POLICY_BYTES}" in _issue(big)
    path = tmp_path / "big.yaml"
    path.write_text(big, encoding="utf-8")
    with pytest.raises(PolicyError, match=f"at most {MAX_POLICY_BYTES}"):
        load_policy(path)


def test_too_many_values_are_refused() -> None:
    text = "a: [" + ",".join(["1"] * (MAX_POLICY_NODES + 1)) + "]\n"
    assert len(text.encode()) <= MAX_POLICY_BYTES
    assert f"over {MAX_POLICY_NODES} YAML values" in _issue(text)


def test_a_thousand_slices_fit_the_budget() -> None:
    policy = loads_policy(synthetic_policy_yaml(1000, 200), "synthetic")
    assert len(policy.slices) == 1000


def test_syntax_errors_still_come_with_their_line() -> None:
    assert _issue("name: x\nslices: [\n").startswith("p.yaml:3: YAML syntax error")
