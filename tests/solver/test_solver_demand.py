"""DemandForecast: construction, validation, quantiles and expected shortfall."""

from __future__ import annotations

import math

import numpy as np
import pytest
from solver_helpers import make_policy, slice_spec

from sliceai.policy import Policy
from sliceai.solver import DemandForecast, SliceSolver, SolverError, allocate

LEVELS = (0.1, 0.5, 0.9)


def _two_slices() -> Policy:
    return make_policy([slice_spec("a"), slice_spec("b")], [("l", 1e9, ["a", "b"])])


@pytest.mark.parametrize(
    ("levels", "values", "message"),
    [
        (LEVELS, np.full((2, 2, 3), np.nan), "NaN"),
        (LEVELS, -np.ones((2, 2, 3)), "negative"),
        (LEVELS, np.ones((2, 3, 3)), "shape"),
        (LEVELS, np.ones((2, 2)), "shape"),
        ((0.0, 0.5, 0.9), np.ones((2, 2, 3)), "inside (0, 1)"),
        ((0.1, 0.5, 1.0), np.ones((2, 2, 3)), "inside (0, 1)"),
        ((0.5, 0.1, 0.9), np.ones((2, 2, 3)), "increasing"),
        (LEVELS, np.array([[[3.0, 2.0, 4.0]] * 2] * 2), "not monotone"),
        (LEVELS, np.full((2, 2, 3), np.inf), "infinite"),
        (LEVELS, "lots", "not numeric"),
    ],
)
def test_bad_quantiles_raise(levels: object, values: object, message: str) -> None:
    with pytest.raises(SolverError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DemandForecast.from_quantiles(levels, values)


def test_non_monotone_message_names_slice_and_direction() -> None:
    values = np.ones((2, 2, 3))
    values[1, 1] = [5.0, 4.0, 6.0]
    with pytest.raises(SolverError, match=r"slice #1 UL"):
        DemandForecast.from_quantiles(LEVELS, values)


def test_bad_samples_and_points_raise() -> None:
    with pytest.raises(SolverError, match="n_samples >= 2"):
        DemandForecast.from_samples(np.ones((2, 2, 1)))
    with pytest.raises(SolverError, match="negative"):
        DemandForecast.from_samples(-np.ones((2, 2, 5)))
    with pytest.raises(SolverError, match="shape"):
        DemandForecast.point(np.ones(3))


def test_wrong_number_of_slices_raises() -> None:
    policy = _two_slices()
    with pytest.raises(SolverError, match="demand has 3 slices"):
        allocate(policy, DemandForecast.point(np.ones((3, 2))))


def test_mapping_by_slice_name() -> None:
    policy = _two_slices()
    demand = DemandForecast.from_mapping(policy, {"b": (5e6, 1e6)})
    np.testing.assert_array_equal(demand.quantiles[:, :, 0], [[0, 0], [5e6, 1e6]])
    q = DemandForecast.from_mapping(policy, {"a": [[1, 2, 3], [4, 5, 6]]}, LEVELS)
    np.testing.assert_array_equal(q.quantiles[0, 1], [4, 5, 6])
    with pytest.raises(SolverError, match=r"unknown slice.*ghost"):
        DemandForecast.from_mapping(policy, {"ghost": (1, 1)})
    with pytest.raises(SolverError, match="shape"):
        DemandForecast.from_mapping(policy, {"a": (1, 2, 3)})


def test_bad_reserved_and_previous_raise() -> None:
    policy = _two_slices()
    solver = SliceSolver(policy)
    demand = DemandForecast.point(np.ones((2, 2)))
    with pytest.raises(SolverError, match="reserved_bps"):
        solver.solve(demand, reserved_bps=np.ones((3, 2)))
    with pytest.raises(SolverError, match="reserved_bps"):
        solver.solve(demand, reserved_bps=-np.ones((2, 2)))
    other = make_policy([slice_spec("x")], [("l", 1e9, ["x"])])
    with pytest.raises(SolverError, match="previous plan"):
        solver.solve(demand, previous=allocate(other, DemandForecast.point(np.ones((1, 2)))))


def test_samples_give_empirical_quantiles() -> None:
    samples = np.broadcast_to(np.arange(101.0), (1, 2, 101))
    demand = DemandForecast.from_samples(samples, levels=(0.25, 0.5, 0.75))
    np.testing.assert_allclose(demand.quantiles[0, 0], [25, 50, 75])


def test_quantile_interpolates_and_extrapolates_the_tail() -> None:
    demand = DemandForecast.from_quantiles(LEVELS, np.tile([10.0, 20.0, 30.0], (1, 2, 1)))
    assert demand.quantile(0.3)[0, 0] == pytest.approx(15.0)
    beta = 10 / math.log(5)
    assert demand.quantile(0.99)[0, 1] == pytest.approx(30 + beta * math.log(10))
    assert demand.quantile(0.05)[0, 0] == pytest.approx(10.0)


def test_expected_shortfall_matches_numeric_integral() -> None:
    # E[(D - x)+] = integral of the survival function from x to infinity.
    demand = DemandForecast.from_quantiles(LEVELS, np.tile([10.0, 20.0, 30.0], (1, 2, 1)))
    grid = np.linspace(0.0, 400.0, 400_001)
    beta = 10 / math.log(5)

    def survival(t: np.ndarray) -> np.ndarray:
        s = np.where(t < 10, 1.0, 0.0)
        s = np.where((t >= 10) & (t < 20), 0.9 - 0.4 * (t - 10) / 10, s)
        s = np.where((t >= 20) & (t < 30), 0.5 - 0.4 * (t - 20) / 10, s)
        return np.where(t >= 30, 0.1 * np.exp(-(t - 30) / beta), s)

    for x in (0.0, 5.0, 15.0, 25.0, 35.0):
        t = grid[grid >= x]
        numeric = float(np.trapezoid(survival(t), t))
        got = demand.expected_shortfall(np.array([[x, x]]))[0, 0]
        assert got == pytest.approx(numeric, rel=1e-4)
