# python -m pytest tests/test_noise.py -q
"""The noise floor's statistics and the keep rule, as pure functions."""
from __future__ import annotations

import math
import random

import pytest

from autoresearch_nb.noise import CONFIRM, DISCARD, KEEP, cumulative, judge, pool, spread, threshold_sigmas


def test_spread_std_and_mad_agree_on_gaussian_repeats():
    rng = random.Random(0)
    s = spread([rng.gauss(1.0, 0.01) for _ in range(2000)])
    assert s.n == 2000 and s.df == 1999
    assert s.std == pytest.approx(0.01, rel=0.05)
    assert s.mad_sigma == pytest.approx(0.01, rel=0.08)


def test_mad_ignores_one_outlier_that_std_does_not():
    s = spread([1.00, 1.01, 0.99, 1.00, 1.01, 0.99, 1.50])
    assert s.std > 0.15
    assert s.mad_sigma < 0.02


def test_one_value_has_no_spread():
    s = spread([1.0])
    assert (s.n, s.mean, s.std, s.mad_sigma, s.sigma) == (1, 1.0, None, None, None)
    with pytest.raises(ValueError):
        spread([])


def test_pool_ignores_differences_between_groups():
    # Two commits a whole unit apart, each with the same small spread: the floor is the small spread.
    p = pool([[1.0, 1.2], [2.0, 2.2], [3.0]])
    assert p.std == pytest.approx(math.sqrt(0.02))
    assert p.df == 2 and p.n == 5
    assert pool([[1.0], [2.0]]) is None


def test_threshold_is_k_sigma_of_the_difference():
    assert threshold_sigmas(2.0) == pytest.approx(2 * math.sqrt(2))
    assert threshold_sigmas(2.0, n=1, best_n=3) == pytest.approx(2 * math.sqrt(4 / 3))
    assert threshold_sigmas(0.0, 5, 5) == 0.0


def test_inside_the_noise_is_discarded_with_its_evidence():
    d = judge([0.995], best=1.0, best_n=1, sigma=0.005)       # 1σ better, threshold 2.83σ
    assert d.verdict == DISCARD
    assert d.effect_sigma == pytest.approx(1.0)
    assert d.threshold == pytest.approx(0.005 * 2 * math.sqrt(2))
    assert "within the noise" in d.reason and "threshold 2.83σ" in d.reason


def test_clearly_worse_says_so():
    d = judge([1.05], best=1.0, sigma=0.005)
    assert d.verdict == DISCARD and d.reason.startswith("worse")


def test_a_wide_pass_is_kept_without_confirmation():
    d = judge([0.97], best=1.0, sigma=0.005, margin=1.0)      # 6σ > 2.83σ + 1σ
    assert d.verdict == KEEP and d.keep and "confirmed" not in d.reason


def test_a_marginal_pass_asks_for_confirmation_then_is_judged_on_the_mean():
    first = judge([0.984], best=1.0, sigma=0.005, margin=1.0, confirm_runs=1)   # 3.2σ
    assert first.verdict == CONFIRM and not first.keep
    kept = judge([0.984, 0.986], best=1.0, sigma=0.005, margin=1.0, confirm_runs=1)
    assert kept.verdict == KEEP and kept.n == 2 and kept.mean == pytest.approx(0.985)
    assert "(confirmed)" in kept.reason and "mean of 2 runs" in kept.reason
    # Threshold for a mean of two runs vs one: 2·sqrt(1/2 + 1) = 2.45σ.
    assert kept.threshold == pytest.approx(0.005 * 2 * math.sqrt(1.5))
    lucky = judge([0.984, 1.002], best=1.0, sigma=0.005, margin=1.0, confirm_runs=1)
    assert lucky.verdict == DISCARD


def test_a_near_miss_asks_for_confirmation_and_a_far_miss_or_a_loss_does_not():
    near = judge([0.99], best=1.0, sigma=0.005, confirm_runs=1, below=1.0)          # 2.0σ, under 2.83σ by 0.83
    assert near.verdict == CONFIRM and "misses by less than 1σ" in near.reason
    assert judge([0.99], best=1.0, sigma=0.005, confirm_runs=1, below=0.0).verdict == DISCARD   # turned off
    assert judge([0.992], best=1.0, sigma=0.005, confirm_runs=1, below=1.0).verdict == DISCARD  # 1.6σ: too far
    assert judge([0.99], best=1.0, sigma=0.005, confirm_runs=0, below=1.0).verdict == DISCARD   # no runs left
    # the mean of two clears the lower bar of two runs (2·sqrt(1/2 + 1) = 2.45σ), or it does not
    assert judge([0.99, 0.984], best=1.0, sigma=0.005, confirm_runs=1, below=1.0).verdict == KEEP
    assert judge([0.99, 0.996], best=1.0, sigma=0.005, confirm_runs=1, below=1.0).verdict == DISCARD


def test_confirming_near_misses_keeps_the_null_rate_under_one_test_at_k():
    # Two looks instead of one: null changes are kept more often than with passes confirmed alone, but still
    # less often than a single unconfirmed 2σ test (2.3%).
    def rate(below: float) -> float:
        rng, sigma, keeps = random.Random(5), 0.01, 0
        for _ in range(20000):
            best, runs = 1.0 + rng.gauss(0, sigma), [1.0 + rng.gauss(0, sigma)]
            while (d := judge(runs, best=best, sigma=sigma, confirm_runs=1, below=below)).verdict == CONFIRM:
                runs.append(1.0 + rng.gauss(0, sigma))
            keeps += d.keep
        return keeps / 20000

    without, with_near = rate(0.0), rate(1.0)
    assert without < with_near < 0.0228
    assert with_near == pytest.approx(0.021, abs=0.004)


def test_no_confirmation_when_confirm_runs_is_zero():
    assert judge([0.984], best=1.0, sigma=0.005, confirm_runs=0).verdict == KEEP


def test_confirmation_stops_when_runs_are_spent():
    d = judge([0.984, 0.985, 0.985], best=1.0, sigma=0.005, confirm_runs=2)
    assert d.verdict == KEEP


def test_k_zero_is_the_plain_rule():
    assert judge([0.9999], best=1.0, sigma=0.005, k=0).verdict == KEEP
    assert judge([1.0], best=1.0, sigma=0.005, k=0).verdict == DISCARD       # strictly better only
    d = judge([1.0001], best=1.0, sigma=0.005, k=0)
    assert d.verdict == DISCARD and "plain rule: noise_k=0" in d.reason and d.threshold == 0.0


def test_plain_rule_when_the_floor_is_unknown_or_zero():
    assert "noise floor not measured" in judge([0.99], best=1.0, sigma=None).reason
    d = judge([0.99], best=1.0, sigma=0.0)
    assert d.keep and "noise floor is 0" in d.reason


def test_maximize_flips_the_sign():
    d = judge([0.75], best=0.70, sigma=0.005, maximize=True)
    assert d.keep and d.improvement == pytest.approx(0.05)
    assert judge([0.65], best=0.70, sigma=0.005, maximize=True).verdict == DISCARD


def test_first_result_and_no_metric():
    assert judge([1.0], best=None, sigma=0.01).keep
    assert judge([], best=1.0, sigma=0.01).verdict == DISCARD


def test_null_changes_pass_at_the_expected_rate():
    # One-sided: a null change's first run passes the 2σ threshold about 2.3% of the time (σ known).
    rng = random.Random(1)
    sigma, trials = 0.01, 20000
    passes = sum(judge([1.0 + rng.gauss(0, sigma)], best=1.0 + rng.gauss(0, sigma), sigma=sigma,
                       confirm_runs=0).keep for _ in range(trials))
    assert passes / trials == pytest.approx(0.0228, abs=0.004)
    plain = sum(judge([1.0 + rng.gauss(0, sigma)], best=1.0 + rng.gauss(0, sigma), sigma=sigma, k=0).keep
                for _ in range(trials))
    assert plain / trials == pytest.approx(0.5, abs=0.02)


def test_cumulative_improvement_has_a_band_that_starts_at_zero():
    rows = cumulative([(0, "keep", 1.00, 3), (1, "discard", 1.01, 1), (2, "keep", 0.97, 2),
                       (3, "crash", None, 0)], sigma=0.01, k=2.0)
    assert [r["number"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["low"] == rows[0]["high"] == 0.0
    assert rows[2]["improvement"] == pytest.approx(0.03)
    half = 2 * 0.01 * math.sqrt(1 / 3 + 1 / 2)
    assert (rows[2]["low"], rows[2]["high"]) == (pytest.approx(0.03 - half), pytest.approx(0.03 + half))
    assert rows[3]["improvement"] == pytest.approx(0.03)


def _settle(rng: random.Random, effect: float, repeats: int = 3) -> tuple[bool, int]:
    """One proposal against a fresh baseline of ``repeats`` runs (σ = 1, estimated from them), with the
    confirmation runs judge() asks for. Returns (kept, runs of the candidate)."""
    base = [rng.gauss(0, 1) for _ in range(repeats)]
    sigma = math.sqrt(sum((b - sum(base) / repeats) ** 2 for b in base) / (repeats - 1))
    runs = [-effect + rng.gauss(0, 1)]
    while True:
        d = judge(runs, sum(base) / repeats, best_n=repeats, sigma=sigma)
        if d.verdict != CONFIRM:
            return d.keep, len(runs)
        runs.append(-effect + rng.gauss(0, 1))


def test_with_the_floor_from_three_runs_a_null_change_rarely_passes_and_3_sigma_mostly_does():
    # σ estimated from 3 runs has 2 degrees of freedom, so the false-pass rate is above the 2.3% of a known σ:
    # about 6.7% (10 repeats: 1.8%). A 3σ change passes about 72% of the time, at about 1.2 runs.
    rng = random.Random(2)
    null = [_settle(rng, 0.0) for _ in range(5000)]
    real = [_settle(rng, 3.0) for _ in range(5000)]
    assert sum(k for k, _ in null) / 5000 == pytest.approx(0.067, abs=0.015)
    assert sum(k for k, _ in real) / 5000 == pytest.approx(0.72, abs=0.03)
    assert sum(n for _, n in real) / 5000 == pytest.approx(1.2, abs=0.05)


def test_overfit_rules_name_both_numbers_and_spare_a_followed_gain():
    from autoresearch_nb.noise import overfit
    assert overfit(None, None, 2.0, 0.1, 0.02) is None and overfit(2.0, 0.1, None, None, 0.02) is None
    worse = overfit(2.05, 0.1, 2.0, 0.1, 0.02, best_label="#3")
    assert worse.startswith("holdout bpb worse") and "2.05" in worse and "#3's 2" in worse
    assert overfit(2.015, 0.1, 2.0, 0.1, 0.02) is None                     # within the threshold
    # val fell 0.3, the holdout stayed: the gap widened by 0.3 > 0.02 + 0.15
    assert overfit(2.0, 0.3, 2.0, 0.0, 0.02).startswith("holdout gap widened")
    # val fell 0.3, the holdout 0.2 (it followed two thirds): 0.1 < 0.02 + 0.15
    assert overfit(1.8, 0.1, 2.0, 0.0, 0.02) is None
