"""``sliceai assess``: one table that judges the sliceai allocator on each trace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sliceai.assess import TraceAssessment, assess_trace
from sliceai.cli import main
from sliceai.policy import load_policy
from sliceai.traffic import Trace
from sliceai.traffic.longcsv import write_long_csv

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "policies" / "hospital.yaml"


def _trace(n: int = 400, seed: int = 0) -> Trace:
    policy = load_policy(POLICY)
    rng = np.random.default_rng(seed)
    base = np.array([5e5, 2e7, 2.5e7, 1e6, 8e7])
    load = base[None, :, None] * rng.lognormal(0.0, 0.3, (n, len(policy.slices), 2))
    return Trace(1_767_571_200.0, 10.0, policy.slice_names, load)


def _fake(rates: dict[str, dict[str, float]], costs: dict[str, float]) -> TraceAssessment:
    """An assessment from hand-written figures: ``rates[allocator][slice]`` servable rates."""
    policy = load_policy(POLICY)
    allocators = {
        name: {
            "total": {"cost": costs[name], "overprovisioning": 1.5},
            "slices": {s: {"violation_rate_servable": r} for s, r in per.items()},
        }
        for name, per in rates.items()
    }
    report = {"allocators": allocators, "intervals": 100, "interval_s": 10.0}
    return TraceAssessment("t", policy, report, None)


def test_the_verdict_compares_with_the_cheapest_baseline_that_keeps_every_promise() -> None:
    ok = {"consults": 0.01, "staff-embb": 0.12}  # risks 1 % and 10 %: within x 1.5
    starving = {"consults": 0.016, "staff-embb": 0.05}  # consults over 1.5 %
    item = _fake(
        {"sliceai": ok, "ewma": starving, "static": ok, "rolling-quantile": ok},
        {"sliceai": 90.0, "ewma": 60.0, "static": 300.0, "rolling-quantile": 100.0},
    )
    verdict = item.verdict()
    assert verdict["cost_vs_cheapest"] == pytest.approx(1.5)  # ewma is cheapest ...
    assert verdict["cost_vs_cheapest_keeping_risk"] == pytest.approx(0.9)  # ... by starving
    assert verdict["over_risk"] == []
    assert item.over_risk("ewma") == ["consults 1.60%/1%"]


def test_assessing_a_trace_replays_everything_and_scores_the_same_forecaster(
    tiny_checkpoint: Path,
) -> None:
    policy = load_policy(POLICY)
    item = assess_trace(
        "t", _trace(), policy, ["static", "ewma", "sliceai", "oracle"], str(tiny_checkpoint), "cpu"
    )
    assert set(item.replay["allocators"]) == {"static", "ewma", "sliceai", "oracle"}
    assert item.forecast is not None
    assert item.forecast["forecaster"] == "pool(model, ewma, rolling-quantile)"
    verdict = item.verdict()
    assert 0 < verdict["cost_vs_cheapest"] < 10
    assert 0 < verdict["coverage_95"] <= 1


def test_a_trace_too_short_to_score_is_still_replayed_and_says_why(tiny_checkpoint: Path) -> None:
    item = assess_trace(
        "short", _trace(20), load_policy(POLICY), ["ewma", "sliceai"], str(tiny_checkpoint), "cpu"
    )
    assert item.forecast is None
    assert "needs at least" in item.forecast_error


def test_cli_writes_tables_json_and_the_markdown_section(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_long_csv(_trace(), tmp_path / "a.csv")
    (tmp_path / "manifest.txt").write_text(f"a.csv {POLICY}  # one trace\n", encoding="utf-8")
    md = tmp_path / "B.md"
    md.write_text("# B\n\n<!-- bench:other:start -->\nkept\n<!-- bench:other:end -->\n")
    code = main(
        [
            "assess",
            "--manifest",
            str(tmp_path / "manifest.txt"),
            "--allocator",
            "ewma,static,sliceai",
            "--model",
            str(tiny_checkpoint),
            "--device",
            "cpu",
            "--no-progress",
            "--json",
            str(tmp_path / "a.json"),
            "--markdown",
            str(md),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "cost / cheapest keeping risk" in out
    text = md.read_text()
    assert "kept" in text  # other sections untouched
    assert "<!-- bench:assessment:start -->" in text
    assert "| a " in text
    assert (tmp_path / "a.json").read_text().startswith("[")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["assess", "x.csv"], "--policy"),
        (["assess", "x.csv", "--policy", str(POLICY), "--allocator", "ewma"], "sliceai"),
        (["assess", "nope.csv", "--policy", str(POLICY)], "no such file"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
