"""Pareto logic on hand-made tables with known fronts, and seed aggregation against hand-computed numbers."""

import math

import pandas as pd
import pytest

from ela.analysis.pareto import DOMINATED, DOMINATED_NO_CI, FRONT, TIE, Objective, classify, knee
from ela.analysis.stats import aggregate

LAT_E = [Objective("lat"), Objective("e")]


def table(rows, ci=None):
    """rows: name -> (lat, e); ci: half-width applied to both objectives (None = one seed, no CI)."""
    df = pd.DataFrame([{"config": k, "lat": v[0], "e": v[1]} for k, v in rows.items()]).set_index("config")
    for c in ("lat", "e"):
        df[f"{c}_lo"] = df[c] - ci if ci is not None else math.nan
        df[f"{c}_hi"] = df[c] + ci if ci is not None else math.nan
    return df


def test_one_dominant_point():
    df = table({"a": (1, 1), "b": (2, 2), "c": (3, 1.5)}, ci=0.1)
    assert classify(df, LAT_E).to_dict() == {"a": FRONT, "b": DOMINATED, "c": DOMINATED}


def test_trade_off_front_keeps_both_ends():
    df = table({"fast": (1, 3), "frugal": (3, 1), "middle": (2, 2), "bad": (3, 3)}, ci=0.1)
    s = classify(df, LAT_E)
    assert [k for k, v in s.items() if v == FRONT] == ["fast", "frugal", "middle"]
    assert s["bad"] == DOMINATED


def test_domination_within_overlapping_cis_is_a_tie():
    df = table({"a": (1.0, 1.0), "b": (1.05, 1.05)}, ci=0.2)
    assert classify(df, LAT_E).to_dict() == {"a": FRONT, "b": TIE}


def test_exact_ties_are_both_on_the_front():
    df = table({"a": (1.0, 2.0), "b": (1.0, 2.0)}, ci=0.1)
    assert set(classify(df, LAT_E)) == {FRONT}


def test_single_seed_domination_is_marked_as_without_ci():
    df = table({"a": (1, 1), "b": (2, 2)})
    assert classify(df, LAT_E).to_dict() == {"a": FRONT, "b": DOMINATED_NO_CI}


def test_maximised_objective():
    df = pd.DataFrame({"e": [1.0, 1.0], "acc": [0.9, 0.8]}, index=["good", "worse"])
    assert classify(df, [Objective("e"), Objective("acc", minimize=False)])["good"] == FRONT


def test_knee_is_closest_to_utopia_after_scaling():
    front = pd.DataFrame({"lat": [1.0, 2.0, 10.0], "e": [10.0, 2.0, 1.0]}, index=["x", "y", "z"])
    assert knee(front, "lat", "e") == "y"


def test_aggregate_against_hand_computed_numbers():
    runs = pd.DataFrame({"cfg": ["a", "a", "a", "b"], "m": [1.0, 2.0, 3.0, 5.0]})
    out = aggregate(runs, ["cfg"], ["m"]).set_index("cfg")
    assert out.loc["a", "n_seeds"] == 3 and out.loc["a", "m"] == 2.0 and out.loc["a", "m_sd"] == 1.0
    # t(0.975, 2) = 4.302653 -> half-width 4.302653 * 1 / sqrt(3) = 2.484138
    assert out.loc["a", "m_ci"] == pytest.approx(2.484138, rel=1e-6)
    assert out.loc["a", "m_lo"] == pytest.approx(2.0 - 2.484138, rel=1e-6)
    assert out.loc["b", "n_seeds"] == 1 and math.isnan(out.loc["b", "m_ci"])
