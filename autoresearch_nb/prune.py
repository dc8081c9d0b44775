"""Stop a run that cannot win (``prune = auto | off``): its curve against the best's at the same progress.

Every harness run prints its smoothed training loss in bits per byte of the training split (``train_bpb``, a unit
that survives a change of tokenizer) and the share of its budget done (``(40.0%)``). Only equal progress is
comparable: train.py's schedules depend on ``training_time / TIME_BUDGET``, so a learning-rate or warm-down change
looks worse mid-run and may still win. The rule (:class:`Prune`, a :class:`~.pipeline.StopRule`):

* the **reference** is the best experiment's own curve when the run starts (with workers: the best at the run's own
  start), read at a grid of progress fractions (:data:`GRID`);
* the **noise** at each fraction is the spread of the baseline's repeat curves there (its own run and its noise
  repeats, :meth:`Store.repeat_curves`), floored by the median spread over the grid so one lucky fraction cannot
  make it tiny;
* after ``min_progress``, a run whose curve stays above the reference by more than ``margin`` σ at every grid
  fraction over the last ``patience`` of progress is stopped and recorded ``pruned``, with the evidence in its
  reason ("at 40 %: train_bpb 3.91 vs the best's 3.62 (#5), 4.1σ") and its partial curve kept.

Never pruned: the baseline, noise and confirmation repeats, re-validations (only an experiment's own run carries
the rule); a run without ``train_bpb`` or progress in its lines (a generic command); a session without a measured
spread (``noise_repeats`` < 2). ``auto`` prunes harness runs when both exist; ``off`` never.

The defaults are calibrated on the replay of real curves (``benchmarks/search_replay.py`` over
``benchmarks/data/curve_table.csv``): see docs/decisions.md for the figures.
"""
from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .records import CurvePoint, Status

GRID = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 5 %, 10 %, ... 100 % of the budget
UNIT = "train_bpb"
# Calibrated on the curve table (benchmarks/search_replay.py --rule-only, 70 runs of 35 changes at 30 CPU s):
# 3σ from 20 % pruned 20 % of the runs and saved 12 % of run-seconds with no false prune; 2.5σ prunes
# GRAD_ACCUM=2, which looks worse mid-run and ends better (4σ from 30 %, the earlier default: 8 % saved).
MIN_PROGRESS = 0.2   # no verdict before this share of the budget
MARGIN = 3.0         # in σ of the baseline repeats' spread at that progress
PATIENCE = 0.1       # the run must stay past the margin over this share of the budget (two grid points)


def at_grid(points: Iterable[CurvePoint], grid: Sequence[float] = GRID) -> list[float | None]:
    """A curve's ``train_bpb`` at each grid fraction: the last point at or before it (None before any)."""
    pairs = sorted((p.values["progress"], p.values[UNIT]) for p in points
                   if isinstance(p.values.get("progress"), (int, float)) and isinstance(p.values.get(UNIT), (int, float)))
    out: list[float | None] = []
    i, last = 0, None
    for f in grid:
        while i < len(pairs) and pairs[i][0] <= f + 1e-9:
            last = pairs[i][1]
            i += 1
        out.append(last)
    return out


@dataclass(frozen=True)
class Reference:
    """The best's curve and the baseline repeats' spread on :data:`GRID` (plain tuples: it travels with a Ray
    task)."""

    number: int
    best: tuple[float | None, ...]
    sigma: tuple[float | None, ...]
    runs: int  # how many baseline curves the spread came from

    @classmethod
    def of(cls, number: int, best_curve: Iterable[CurvePoint], repeats: Sequence[Iterable[CurvePoint]]
           ) -> "Reference | None":
        """The reference for runs started now, or None when the best's curve or two repeat curves lack the unit."""
        best = at_grid(best_curve)
        curves = [at_grid(c) for c in repeats]
        curves = [c for c in curves if any(v is not None for v in c)]
        if len(curves) < 2 or all(v is None for v in best):
            return None
        spread: list[float | None] = []
        for i in range(len(GRID)):
            values = [c[i] for c in curves if c[i] is not None]
            spread.append(statistics.stdev(values) if len(values) >= 2 else None)
        known = [s for s in spread if s is not None and s > 0]
        if not known:
            return None
        floor = statistics.median(known)
        return cls(number, tuple(best), tuple(None if s is None else max(s, floor) for s in spread), len(curves))


@dataclass(frozen=True)
class Prune:
    """The stop rule; ``status`` tells the pipeline the run is ``pruned``, not crashed."""

    reference: Reference
    min_progress: float = MIN_PROGRESS
    margin: float = MARGIN
    patience: float = PATIENCE
    status: Any = Status.PRUNED

    def check(self, job: Any, points: Sequence[CurvePoint], elapsed_s: float) -> str | None:
        if getattr(job, "purpose", "experiment") != "experiment" or getattr(job, "repeat", 0):
            return None
        mine = at_grid(points)
        done = max((p.values.get("progress", 0.0) for p in points[-20:]
                    if isinstance(p.values.get("progress"), (int, float))), default=0.0)
        if done < self.min_progress:
            return None
        window = [i for i, f in enumerate(GRID) if done - self.patience - 1e-9 <= f <= done + 1e-9]
        if len(window) < 2:
            return None
        worst: tuple[float, int] | None = None
        for i in window:
            ref, sigma, value = self.reference.best[i], self.reference.sigma[i], mine[i]
            if ref is None or not sigma or value is None:
                return None
            z = (value - ref) / sigma
            if z <= self.margin:
                return None
            worst = (z, i) if worst is None or z < worst[0] else worst
        assert worst is not None  # the window's weakest evidence is the one reported
        z, i = worst
        # said at the progress where the run stops; the evidence is the weakest point of the window behind it
        return (f"pruned at {done:.0%}: {UNIT} {mine[i]:.4f} vs the best's {self.reference.best[i]:.4f} "
                f"(#{self.reference.number}) at {GRID[i]:.0%}, {z:.1f}σ, the least of its last {self.patience:.0%} "
                f"(σ {self.reference.sigma[i]:.4f} from the baseline's {self.reference.runs} curves; the rule: over "
                f"{self.margin:g}σ for {self.patience:.0%} of the budget, stopping from {self.min_progress:.0%} on)")


def reference_of(store: Any, tag: str, experiments: Sequence[Any], best: Any) -> Reference | None:
    """The reference for a run starting now: ``best``'s own curve and the spread of the baseline's curves (its
    own run and its noise repeats) from the store; None when either is missing."""
    from .records import is_baseline
    if best is None:
        return None
    base = next((e for e in experiments if is_baseline(e)), None)
    if base is None:
        return None
    repeats = [c for (_, run), c in store.repeat_curves(tag, base.number).items() if run.startswith("noise:")]
    own = [p for _, p in store.points(tag, base.number)]
    return Reference.of(best.number, [p for _, p in store.points(tag, best.number)], [own, *repeats])


__all__ = ["GRID", "MARGIN", "MIN_PROGRESS", "PATIENCE", "Prune", "Reference", "UNIT", "at_grid", "reference_of"]
