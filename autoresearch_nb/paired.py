"""Paired decisions: a candidate against the best **at the same seeds**, one seed at a time, on a pooled floor.

What a seed does (data order, initialisation) moves related versions of train.py alike, so the difference of two
configurations at one seed, ``d_s = metric(candidate, s) - metric(best, s)``, varies much less than either
metric does (common random numbers). The rule, for a candidate with paired seeds ``s_1..s_n``:

- **Floor of differences** σ_d: the spread of ``d_s`` within each candidate that got two or more paired seeds,
  pooled over the run (:func:`floor`), the candidate's own differences included (a paired t test on the pooled
  variance). Until it has :data:`MIN_PAIRS_DF` degrees of freedom the floor is ``√2 σ`` from the repeats of
  one configuration, which assumes no correlation: the careful side.
- **Statistic** ``t = mean(gain) / (σ_d / √n)``, the gain being ``-d`` when lower is better.
- **Keep** when ``t`` passes the ``1 - alpha / max_seeds`` quantile of Student's t on the floor's degrees of
  freedom, and the candidate has at least :data:`MIN_KEEP_SEEDS` paired seeds. Looking up to ``max_seeds``
  times at ``alpha / max_seeds`` each bounds the false-keep rate of the whole sequence by ``alpha``
  (Bonferroni: valid for any continuation rule). An uncertain floor (few degrees of freedom) raises the bar.
- **Own spread**: with two or more seeds, a candidate whose differences spread more than the floor explains
  (F test, p < :data:`OWN_SPREAD_P`) is judged on its own spread and degrees of freedom instead; a change that
  breaks the pairing is thereby never kept on a lucky draw; one that gives the same number at every seed
  (``SEED = 137`` in train.py) is discarded outright: a seed change is never kept.
- **Stop for futility**: below ``z·√(n/max_seeds) - futility`` (z the normal quantile of the keep level; the
  path a just-detectable gain follows on average, less ``futility`` standard errors) the candidate is
  discarded; a clearly worse one stops after its first run. In between: one more paired seed, up to
  ``max_seeds``.

:func:`next_step` is the policy as a pure function (what to run next, or the decision), so the loop
(:mod:`autoresearch_nb.repeats`) and the benchmark (``benchmarks/decision_power.py``) run the very same rule.

>>> best = {42: 2.00, 43: 2.05, 44: 1.98}
>>> f = floor([[0.010, 0.012], [-0.020, -0.018], [0.000, 0.004]], single_sigma=0.03, single_df=2)
>>> f.source, round(f.sigma, 4), f.df
('pairs', 0.002, 3)
>>> next_step({42: 1.95}, best, f).action          # passes at one seed: needs a second paired seed
'candidate'
>>> next_step({42: 1.95, 43: 2.00}, best, f).decision.verdict
'keep'
>>> next_step({42: 2.03}, best, f).decision.verdict   # clearly worse: stops after one run
'discard'
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

from .noise import CONFIRM, DISCARD, KEEP, Decision, f_sf, pool, t_quantile

MIN_PAIRS_DF = 2       # below this, the floor of differences falls back to √2 σ of one configuration
MIN_KEEP_SEEDS = 2     # a keep needs its own spread of differences (a seed change must not win on one draw)
OWN_SPREAD_P = 0.05    # F test: a candidate's differences spread more than the floor -> judged on its own
ALPHA, MAX_SEEDS, FUTILITY = 0.05, 5, 1.5


@dataclass(frozen=True)
class DiffFloor:
    """σ of a paired difference, its degrees of freedom, how many differences it is pooled from (0 for the
    fallback) and where it comes from: ``pairs`` (pooled differences) or ``single`` (√2 σ of one configuration)."""

    sigma: float
    df: int
    pairs: int
    source: str

    def describe(self) -> str:
        if self.source == "pairs":
            return f"floor σ_d={self.sigma:.3g} from {self.pairs} pairs, {self.df} df"
        return f"floor √2σ={self.sigma:.3g} ({self.df} df, no pairs yet)"


def floor(groups: Iterable[Sequence[float]], single_sigma: float | None = None,
          single_df: int = 0) -> DiffFloor | None:
    """The floor of differences from ``groups`` (each: one earlier candidate's paired differences), else
    ``√2 · single_sigma`` (the spread of one configuration's repeats), else None (no floor: the plain rule)."""
    groups = [list(g) for g in groups if len(g) >= 2]
    pooled = pool(groups) if groups else None
    if pooled is not None and pooled.df >= MIN_PAIRS_DF and pooled.std:
        return DiffFloor(pooled.std, pooled.df, sum(len(g) for g in groups), "pairs")
    if single_sigma is not None and single_df > 0:
        return DiffFloor(math.sqrt(2.0) * single_sigma, int(single_df), 0, "single")  # 0: identical repeats
    return None


def paired(candidate: Mapping[int, float], best: Mapping[int, float]) -> list[tuple[int, float]]:
    """``(seed, candidate - best)`` at every seed both have, in seed order."""
    return [(s, candidate[s] - best[s]) for s in sorted(candidate) if s in best]


def judge(diffs: Sequence[float], diff_floor: DiffFloor | None, *, mean: float | None = None,
          alpha: float = ALPHA, max_seeds: int = MAX_SEEDS, futility: float = FUTILITY,
          maximize: bool = False, best_label: str = "the best") -> Decision:
    """Keep, discard or ``confirm`` (one more paired seed) from the paired differences ``diffs``."""
    n = len(diffs)
    if n == 0:
        return Decision(DISCARD, "no paired metric", mean, 0, None, None, None, None)
    gains = [(d if maximize else -d) for d in diffs]
    gain = sum(gains) / n
    delta = sum(diffs) / n
    seeds = f"{n} paired seed{'s' if n > 1 else ''}"
    if diff_floor is None or diff_floor.sigma <= 0:  # Karpathy's rule on the paired mean
        why = ("noise floor not measured" if diff_floor is None else
               "noise floor is 0: runs are identical; does train.py take its seed from the harness?")
        word = "improves on" if gain > 0 else "does not improve on"
        return Decision(KEEP if gain > 0 else DISCARD, f"{word} {best_label} by {delta:+.6g} over {seeds} "
                        f"(plain rule: {why})", mean, n, gain, 0.0, None, None)
    sigma, df, note = diff_floor.sigma, diff_floor.df, diff_floor.describe()
    if n >= 2:  # the candidate's own differences join the floor (a paired t test on the pooled variance)
        own_ss = sum((g - gain) ** 2 for g in gains)
        own = math.sqrt(own_ss / (n - 1))
        if diff_floor.source != "pairs":
            if n - 1 >= MIN_PAIRS_DF:
                sigma, df, note = own, n - 1, f"floor σ_d={own:.3g} from its own {n} pairs, {n - 1} df"
        elif own > sigma and f_sf((own / sigma) ** 2, n - 1, df) < OWN_SPREAD_P:
            sigma, df = own, n - 1
            note = (f"its own spread σ_d={own:.3g} ({df} df): its differences spread more than the "
                    f"{diff_floor.describe()} explains")
        else:
            df = diff_floor.df + n - 1
            sigma = math.sqrt((diff_floor.sigma ** 2 * diff_floor.df + own_ss) / df)
            note = f"floor σ_d={sigma:.3g} from {diff_floor.pairs + n} pairs, {df} df"
    se = sigma / math.sqrt(n)
    t = gain / se
    level = 1.0 - alpha / max(max_seeds, 1)
    critical = t_quantile(level, df)
    z = NormalDist().inv_cdf(level)
    stop_below = z * math.sqrt(n / max(max_seeds, 1)) - futility
    evidence = f"{seeds}, {delta:+.4g} ± {se:.2g} vs {best_label} (t = {t:+.2f}, bar {critical:.2f}; {note})"
    fields = dict(mean=mean, n=n, improvement=gain, threshold=critical * se, effect_sigma=gain / sigma,
                  noise_sigma=sigma)
    if t > critical and n >= MIN_KEEP_SEEDS:
        return Decision(KEEP, f"beats the noise: {evidence}", **fields)
    if t > critical or (n < max_seeds and t >= stop_below):
        return Decision(CONFIRM, f"promising, another paired seed: {evidence}", **fields)
    word = "worse" if t < -z else "within the noise"
    return Decision(DISCARD, f"{word}: {evidence}", **fields)


@dataclass(frozen=True)
class Step:
    """What the policy wants next: ``run`` a ``who`` (``candidate`` or ``best``) at ``seed``, or ``decide``."""

    action: str                      # "candidate" | "best" | "decide"
    seed: int | None = None
    decision: Decision | None = None


def next_step(candidate: Mapping[int, float], best: Mapping[int, float], diff_floor: DiffFloor | None, *,
              alpha: float = ALPHA, max_seeds: int = MAX_SEEDS, futility: float = FUTILITY,
              maximize: bool = False, best_label: str = "the best") -> Step:
    """The sequential policy: pair every candidate seed with a run of the best, judge, and ask for another
    paired seed while the decision is open. ``candidate`` and ``best`` map seed -> metric."""
    unpaired = [s for s in sorted(candidate) if s not in best]
    if unpaired:
        return Step("best", unpaired[0])  # the best's new seed serves every later comparison too
    pairs = paired(candidate, best)
    mean = sum(candidate.values()) / len(candidate) if candidate else None
    mine, theirs = {candidate[s] for s, _ in pairs}, {best[s] for s, _ in pairs}
    if len(pairs) >= 2 and len(mine) == 1 and len(theirs) > 1:
        return Step("decide", None, Decision(
            DISCARD, f"ignores its seed: the same {mean:.6g} at seeds {', '.join(str(s) for s, _ in pairs)}, where "
            f"{best_label} moved with the seed; train.py does not take its seed from the harness (H.seed()), and a "
            "seed change is never kept", mean, len(pairs), None, None, None, None))
    d = judge([x for _, x in pairs], diff_floor, mean=mean, alpha=alpha, max_seeds=max_seeds, futility=futility,
              maximize=maximize, best_label=best_label)
    if d.verdict != CONFIRM:
        return Step("decide", None, d)
    spare = [s for s in sorted(best) if s not in candidate]
    return Step("candidate", spare[0] if spare else max([*best, *candidate]) + 1, d)


__all__ = ["DiffFloor", "Step", "floor", "paired", "judge", "next_step", "ALPHA", "MAX_SEEDS", "FUTILITY",
           "MIN_PAIRS_DF", "MIN_KEEP_SEEDS"]
