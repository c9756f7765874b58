"""``research.forecast.default_model`` (``make model``): its training traces, and the
bundled checkpoint is what the recipe builds."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from research.forecast.default_model import (
    FAMILIES,
    FAST_BELOW_S,
    FAST_CLOCKS_ONCE,
    FAST_FAMILIES,
    FAST_RECURRENT_WINDOW,
    FAST_SEEDS,
    FAST_WEIGHTS_FP16,
    MAX_LOG_STD,
    MEMBERS,
    SEASONAL_MIN_INTERVAL_S,
    TRAINING_REPEATS,
    VARIANTS,
    training_specs,
)
from research.forecast.traces import DEV_SEED_BASE, HELD_OUT_SEED_BASE, TRAINING_SCENARIOS
from sliceai.forecast import ForecastPipeline
from sliceai.forecast.checkpoint import CONFIG_FILE, FAST_DIR, WEIGHTS_FILE, default_checkpoint


def test_every_training_trace_has_its_own_seed_below_the_evaluation_ones() -> None:
    """Campus includes slices of the other scenarios: a seed used twice would train on
    the same traffic twice; a seed from the dev or held-out range would leak them."""
    specs = training_specs(variants=True)
    seeds = [seed for _, seed, _, _, _ in specs]
    assert len(seeds) == len(set(seeds)) == 2 * len(TRAINING_SCENARIOS) * 3 * TRAINING_REPEATS
    assert max(seeds) < HELD_OUT_SEED_BASE < DEV_SEED_BASE
    assert {name for name, *_ in specs} == set(TRAINING_SCENARIOS)


def test_fast_clock_networks_train_on_fast_clocks_only() -> None:
    specs = training_specs(variants=True, fast=True)
    seeds = [seed for _, seed, _, _, _ in specs]
    per_scenario = len(FAST_CLOCKS_ONCE) * TRAINING_REPEATS
    assert len(seeds) == len(set(seeds)) == 2 * len(TRAINING_SCENARIOS) * per_scenario
    assert max(seeds) < HELD_OUT_SEED_BASE
    assert all(interval < FAST_BELOW_S for *_, interval, _ in specs)
    assert {name for name, *_ in specs} == set(TRAINING_SCENARIOS)


def test_the_bundled_checkpoint_is_the_recipes() -> None:
    pipe = ForecastPipeline.load(device="cpu")
    assert pipe.config.members == len(pipe.members) == MEMBERS
    assert pipe.config.seasonal_min_interval_s == SEASONAL_MIN_INTERVAL_S
    assert pipe.config.max_log_std == MAX_LOG_STD
    assert pipe.config.fast_below_s == FAST_BELOW_S
    assert pipe.fast is not None
    fast_members = FAST_SEEDS * (2 if VARIANTS else 1)
    assert pipe.fast.config.members == len(pipe.fast.members) == fast_members
    assert pipe.fast.config.recurrent_window == FAST_RECURRENT_WINDOW
    assert pipe.fast.config.max_log_std == MAX_LOG_STD
    fast_dir = default_checkpoint() / FAST_DIR
    fast_weights = load_file(str(fast_dir / WEIGHTS_FILE))
    fp16 = {v.dtype for v in fast_weights.values()} == {torch.float16}
    assert fp16 is FAST_WEIGHTS_FP16
    assert pipe.fast.half_weights is FAST_WEIGHTS_FP16
    for directory, families in ((default_checkpoint(), FAMILIES), (fast_dir, FAST_FAMILIES)):
        labels = json.loads((directory / CONFIG_FILE).read_text())["trained_on"]
        assert any("variant with families" in label for label in labels) is families
