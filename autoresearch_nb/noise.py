"""Honest decisions under noise: how far apart identical runs land, and whether a change beat that.

Two runs of the same ``train.py`` with different seeds do not give the same ``val_bpb``. The spread of such
repeats is the *noise floor* σ. A change is kept only when its improvement over the best is larger than the
noise can explain:

- ``threshold = k · σ · sqrt(1/n + 1/n_best)``: ``k`` standard deviations of the *difference* between the
  candidate's mean of ``n`` runs and the best's mean of ``n_best`` runs. For two single runs that is
  ``k·√2·σ`` ("2σ of the difference of two runs" at the default ``k = 2``); a best measured three times (the
  baseline) gives ``k·1.15·σ``. Everything is reported in units of σ, so ``effect 3.1σ > threshold 2.3σ``.
- A first run that passes, but by less than ``margin`` σ over the threshold, gets confirmation runs and is
  judged on the mean; a mean that falls under the threshold is discarded at once.
- A first run that misses, but by less than ``below`` σ under the threshold, gets confirmation runs too:
  the threshold for a mean of ``n`` runs is lower (``√(1/n + 1/n_best)`` shrinks), so a real but small gain
  that one run could not show gets a second look instead of being lost. ``below = 0`` turns this off.
- ``k = 0`` (or no measured floor) is Karpathy's plain rule: keep iff strictly better.

σ is the sample standard deviation of the repeats (pooled over every group of repeats of one commit). A
MAD-based robust σ is computed beside it: a std much larger than the robust σ says one repeat was an outlier.
With three repeats σ is itself rough (two degrees of freedom); :func:`pool` adds later measurements.

>>> floor = spread([1.002, 0.998, 1.000]); round(floor.std, 4)
0.002
>>> judge([0.990], best=1.000, best_n=3, sigma=floor.std).verdict
'keep'
>>> judge([0.997], best=1.000, best_n=3, sigma=floor.std).verdict
'discard'
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Any

MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution is 0.6745 σ
KEEP, DISCARD, CONFIRM = "keep", "discard", "confirm"


@dataclass(frozen=True)
class Spread:
    """The spread of repeated runs: ``std`` (sample, n-1) and ``mad_sigma`` (1.4826 · median |x - median|)."""

    n: int
    mean: float
    std: float | None        # None for fewer than two values
    mad_sigma: float | None
    df: int = 0              # degrees of freedom behind std (n - 1, or summed over pooled groups)

    @property
    def sigma(self) -> float | None:
        """The floor the rule uses: the sample std (conservative when one repeat is off)."""
        return self.std

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def spread(values: Iterable[float]) -> Spread:
    """Mean, sample std and MAD-based σ of repeated runs.

    >>> s = spread([1.0, 1.1, 1.2, 5.0]); round(s.std, 2), round(s.mad_sigma, 2)
    (1.95, 0.15)
    """
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("spread() needs at least one value")
    n = len(xs)
    mean = sum(xs) / n
    if n < 2:
        return Spread(n, mean, None, None, 0)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    med = _median(xs)
    mad = MAD_TO_SIGMA * _median([abs(x - med) for x in xs])
    return Spread(n, mean, std, mad, n - 1)


def pool(groups: Iterable[Sequence[float]]) -> Spread | None:
    """One σ from several groups of repeats (each group: one commit run with different seeds).

    The within-group variances are pooled, weighted by their degrees of freedom, so a commit that is simply
    better does not widen the floor. Groups of one value add nothing. None when no group has two values.

    >>> round(pool([[1.0, 1.2], [2.0, 2.2]]).std, 4)
    0.1414
    """
    ss = 0.0
    df = 0
    n = 0
    robust: list[tuple[float, int]] = []
    means: list[float] = []
    for g in groups:
        s = spread(g) if len(g) else None
        if s is None:
            continue
        n += s.n
        means.append(s.mean)
        if s.std is None:
            continue
        ss += s.std ** 2 * s.df
        df += s.df
        robust.append((s.mad_sigma or 0.0, s.df))
    if df == 0:
        return None
    mad = sum(m * d for m, d in robust) / df
    return Spread(n, sum(means) / len(means), math.sqrt(ss / df), mad, df)


def threshold_sigmas(k: float, n: int = 1, best_n: int = 1) -> float:
    """The threshold in units of σ: ``k`` standard deviations of the difference of two means.

    >>> round(threshold_sigmas(2.0), 4)   # two single runs: 2·√2
    2.8284
    """
    return k * math.sqrt(1.0 / max(n, 1) + 1.0 / max(best_n, 1))


@dataclass(frozen=True)
class Decision:
    """A verdict (``keep``, ``discard`` or ``confirm``), the reason in words, and the evidence behind it."""

    verdict: str
    reason: str
    mean: float | None            # the candidate's mean over its runs
    n: int                         # how many runs it is judged on
    improvement: float | None      # best - mean when minimizing (mean - best when maximizing): > 0 is better
    threshold: float | None        # in metric units; 0 under the plain rule
    effect_sigma: float | None     # improvement / σ
    noise_sigma: float | None

    @property
    def keep(self) -> bool:
        return self.verdict == KEEP


def judge(values: Sequence[float], best: float | None, *, best_n: int = 1, sigma: float | None = None,
          k: float = 2.0, margin: float = 1.0, confirm_runs: int = 1, maximize: bool = False,
          best_label: str = "the best", below: float = 0.0) -> Decision:
    """Judge a candidate's runs ``values`` against the best metric (a mean of ``best_n`` runs).

    Returns ``confirm`` when the candidate has fewer than ``1 + confirm_runs`` runs and either passes by less
    than ``margin`` σ over the threshold or misses it by less than ``below`` σ (and is better than the best);
    the caller runs it again (another seed) and calls this again.

    >>> judge([0.99], best=1.0, sigma=0.005, k=2.0, margin=1.0).verdict   # 2.0σ < 2.83σ
    'discard'
    >>> judge([0.982], best=1.0, sigma=0.005, k=2.0, margin=1.0).verdict  # 3.6σ, inside 2.83σ + 1σ
    'confirm'
    >>> judge([0.99], best=1.0, sigma=0.005, k=2.0, below=1.0).verdict     # 2.0σ, within 1σ under 2.83σ
    'confirm'
    >>> judge([0.99], best=1.0, sigma=None, k=2.0).reason                  # no floor: plain rule
    'improves on the best (1) by -0.01 (plain rule: noise floor not measured)'
    """
    xs = [float(v) for v in values]
    if not xs:
        return Decision(DISCARD, "no metric", None, 0, None, None, None, sigma)
    n = len(xs)
    mean = sum(xs) / n
    what = f"mean of {n} runs {mean:.6g}" if n > 1 else f"{mean:.6g}"
    if best is None:
        return Decision(KEEP, "first result with a metric", mean, n, None, 0.0, None, sigma)
    improvement = (mean - best) if maximize else (best - mean)
    delta = mean - best
    plain = k <= 0 or sigma is None or sigma <= 0
    if plain:
        why = ("noise_k=0" if k <= 0 else "noise floor not measured" if sigma is None
               else "noise floor is 0: runs are identical; does train.py take its seed from the harness?")
        word = "improves" if improvement > 0 else "does not improve"
        effect = improvement / sigma if sigma else None
        return Decision(KEEP if improvement > 0 else DISCARD,
                        f"{word} on {best_label} ({best:.6g}) by {delta:+.6g} (plain rule: {why})",
                        mean, n, improvement, 0.0, effect, sigma)
    t_sig = threshold_sigmas(k, n, best_n)
    effect = improvement / sigma
    evidence = f"{what} vs {best_label} {best:.6g}: {delta:+.6g} = {effect:+.2f}σ, threshold {t_sig:.2f}σ " \
               f"(σ={sigma:.3g})"
    decision = dict(mean=mean, n=n, improvement=improvement, threshold=t_sig * sigma, effect_sigma=effect,
                    noise_sigma=sigma)
    if effect <= t_sig:
        if n < 1 + confirm_runs and below > 0 and effect > 0 and effect > t_sig - below:
            return Decision(CONFIRM, f"misses by less than {below:g}σ, confirming: {evidence}", **decision)
        word = "within the noise" if abs(effect) <= t_sig else "worse"
        return Decision(DISCARD, f"{word}: {evidence}", **decision)
    if n < 1 + confirm_runs and effect < t_sig + margin:
        return Decision(CONFIRM, f"passes by less than {margin:g}σ over the threshold, confirming: {evidence}",
                        **decision)
    confirmed = " (confirmed)" if n > 1 else ""
    return Decision(KEEP, f"beats the noise{confirmed}: {evidence}", **decision)


HOLDOUT_FOLLOW = 0.5  # share of a val gain the holdout must follow (beyond the noise) for a keep


def overfit(holdout: float | None, gap: float | None, best_holdout: float | None, best_gap: float | None,
            threshold: float, best_label: str = "the best") -> str | None:
    """Why a would-be keep is ``overfit``, or None. Two rules in bpb (lower is better), each with ``threshold``
    (the noise threshold of two single runs, ``k·√2·σ``, or a set tolerance without a floor) as its slack:

    - its holdout bpb is worse than the best's by more than the threshold (it fits val, not the task);
    - its holdout gap (holdout − val) widened past the best's by more than the threshold plus
      ``1 − HOLDOUT_FOLLOW`` of its val gain: val dropped and the holdout did not follow, which is what training
      on the validation split looks like. The share keeps a large honest gain, which widens the gap by itself
      (val and holdout are different text), from reading as overfitting; for a small gain it is the threshold.

    No holdout on either side: no rule (None).

    >>> overfit(2.00, 0.05, 2.01, 0.04, 0.02) is None
    True
    >>> overfit(2.00, 0.30, 2.01, 0.04, 0.02)[:26]   # val fell 0.27, the holdout 0.01
    'holdout gap widened: 0.3 v'
    >>> overfit(1.50, 0.30, 4.00, 0.04, 0.02) is None  # val fell 2.76, the holdout 2.5: it followed
    True
    """
    if holdout is None or best_holdout is None:
        return None
    if holdout - best_holdout > threshold:
        return (f"holdout bpb worse: {holdout:.6g} vs {best_label}'s {best_holdout:.6g} "
                f"({holdout - best_holdout:+.6g}, threshold {threshold:.3g}); val improved, the holdout did not")
    if gap is None or best_gap is None:
        return None
    val_gain = (best_holdout - best_gap) - (holdout - gap)
    allowed = threshold + (1 - HOLDOUT_FOLLOW) * max(val_gain, 0.0)
    if gap - best_gap > allowed:
        return (f"holdout gap widened: {gap:.6g} vs {best_label}'s {best_gap:.6g} ({gap - best_gap:+.6g}, more "
                f"than {allowed:.3g} = threshold {threshold:.3g} + {1 - HOLDOUT_FOLLOW:g} of the val gain; holdout "
                f"{holdout:.6g} vs {best_holdout:.6g}): val dropped, the holdout did not follow, as when training "
                f"on the validation data")
    return None


def band(improvement: float, sigma: float | None, n_base: int, n_best: int, k: float = 2.0) -> tuple[float, float]:
    """A ±k·σ_diff band around a cumulative improvement (best vs baseline, each a mean of its runs)."""
    if not sigma:
        return improvement, improvement
    half = k * sigma * math.sqrt(1.0 / max(n_base, 1) + 1.0 / max(n_best, 1))
    return improvement - half, improvement + half


def cumulative(points: Sequence[tuple[int, str, float | None, int]], sigma: float | None, k: float = 2.0,
               maximize: bool = False) -> list[dict[str, Any]]:
    """The cumulative improvement over the baseline after each experiment, with a ±k·σ band.

    ``points`` are ``(number, status, metric, n_runs)`` in order; the first kept one is the baseline.
    Improvement is positive when better. Pure, for the analysis notebook's plot.

    >>> [round(r["improvement"], 6) for r in cumulative([(0, "keep", 1.0, 3), (1, "discard", 1.1, 1),
    ...                                         (2, "keep", 0.9, 2)], sigma=0.01)]
    [0.0, 0.0, 0.1]
    """
    out: list[dict[str, Any]] = []
    base: tuple[float, int] | None = None
    best: tuple[float, int] | None = None
    for number, status, metric, n_runs in points:
        if status == KEEP and metric is not None:
            if base is None:
                base = (metric, n_runs)
            best = (metric, n_runs)
        if base is None or best is None:
            continue
        imp = (best[0] - base[0]) if maximize else (base[0] - best[0])
        # The baseline against itself has no uncertainty to show.
        low, high = (imp, imp) if best == base else band(imp, sigma, base[1], best[1], k)
        out.append({"number": number, "best": best[0], "improvement": imp, "low": low, "high": high})
    return out


# -- Student's t and Fisher's F, from the regularized incomplete beta (no scipy in the loop process) -----------
def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz), for x < (a + 1) / (a + b + 2)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
                    -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def beta_inc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b).

    >>> round(beta_inc(2.0, 3.0, 0.4), 6)   # 1 - (1-x)^3 (1 + 3x) for a=2, b=3
    0.5248
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom.

    >>> round(t_cdf(2.0, 4), 4)
    0.9419
    """
    tail = 0.5 * beta_inc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


@lru_cache(maxsize=1024)
def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (bisection on :func:`t_cdf`); the normal quantile for df >= 1e6.

    >>> round(t_quantile(0.975, 2), 3), round(t_quantile(0.975, 30), 3)
    (4.303, 2.042)
    """
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    if df >= 1e6:
        return NormalDist().inv_cdf(p)
    lo, hi = -1e4, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return (lo + hi) / 2.0


def f_sf(f: float, d1: float, d2: float) -> float:
    """P(F > f) for Fisher's F with (d1, d2) degrees of freedom.

    >>> round(f_sf(4.0, 2, 10), 4)
    0.0529
    """
    if f <= 0:
        return 1.0
    return beta_inc(d2 / 2.0, d1 / 2.0, d2 / (d2 + d1 * f))


__all__ = ["Spread", "Decision", "spread", "pool", "judge", "overfit", "threshold_sigmas", "band", "cumulative",
           "KEEP", "DISCARD", "CONFIRM", "HOLDOUT_FOLLOW", "beta_inc", "t_cdf", "t_quantile", "f_sf"]
