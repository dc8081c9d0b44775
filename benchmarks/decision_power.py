"""Decision power: today's unpaired rule vs the paired sequential rule, with a seed effect shared across configs.

    python benchmarks/decision_power.py                       # ρ = 0, 0.5, 0.9 (+ --rho-measured), ~1 min
    python benchmarks/decision_power.py --rho-measured 0.62 --campaigns 100
    python benchmarks/decision_power.py --table benchmarks/data/curve_table.csv   # ρ measured on train.py

Extends ``decision_quality.py``: a run of configuration c at seed s measures
``μ_c + √ρ·u_s + √(1-ρ)·e_(c,s)`` (seed σ = 1, all numbers in seed-σ): ``u_s`` is what the seed does to every
configuration alike (data order, initialisation), ``e`` what it does to this one alone; ρ is the correlation of
two configurations' results across seeds. Each campaign starts with the baseline's 3 runs (seeds 42-44, the
loop's default) and then judges proposals whose true gain is drawn from {0 (null), 0.25, 0.5, 2/3, 1, 2} seed-σ;
the best stays the baseline (a keep is counted, not adopted), so every share below is the chance a gain of that
size is kept against a fixed best, with the pooled floor growing over the campaign as it does in the loop.

Both rules are the loop's own code: today's :func:`autoresearch_nb.noise.judge` with the confirmation policy of
``repeats.Repeats.judge`` (first run at seed 42, confirmations at 43, 44..., against the mean of the best's
runs), and the paired :func:`autoresearch_nb.paired.next_step` (the policy ``Repeats`` runs: the candidate at
the best's seeds, the best run at a new seed when needed, the floor of differences pooled over candidates).

Columns: the share kept for each true gain (null: the false-keep rate), runs per proposal over this mix (the
best's new seed runs included) and runs per null proposal (most of what a real search proposes).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoresearch_nb import paired  # noqa: E402
from autoresearch_nb.noise import CONFIRM, judge  # noqa: E402

GAINS = (0.0, 0.25, 0.5, 2 / 3, 1.0, 2.0)
FIRST_SEED, BASE_RUNS = 42, 3


class World:
    """Seeded draws: the shared seed effect u_s and each configuration's own e_(c,s)."""

    def __init__(self, rho: float, rng: random.Random) -> None:
        self.rho, self.rng = rho, rng
        self.u: dict[int, float] = {}
        self.e: dict[tuple[int, int], float] = {}

    def run(self, config: int, true: float, seed: int) -> float:
        if seed not in self.u:
            self.u[seed] = self.rng.gauss(0, 1)
        if (config, seed) not in self.e:
            self.e[(config, seed)] = self.rng.gauss(0, 1)
        return true + self.rho ** 0.5 * self.u[seed] + (1 - self.rho) ** 0.5 * self.e[(config, seed)]


def today(world: World, gains: list[float]) -> list[tuple[float, bool, int]]:
    """The unpaired rule as the loop runs it (k=2, confirm_runs=1, margin=1, below=1)."""
    base = [world.run(0, 0.0, FIRST_SEED + i) for i in range(BASE_RUNS)]
    sigma, best = statistics.stdev(base), statistics.mean(base)
    out = []
    for c, g in enumerate(gains, start=1):
        runs = [world.run(c, -g, FIRST_SEED)]
        while True:
            d = judge(runs, best, best_n=BASE_RUNS, sigma=sigma, k=2.0, margin=1.0, confirm_runs=1, below=1.0)
            if d.verdict != CONFIRM:
                break
            runs.append(world.run(c, -g, FIRST_SEED + len(runs)))
        out.append((g, d.keep, len(runs)))
    return out


def paired_rule(world: World, gains: list[float], alpha: float, max_seeds: int,
                futility: float) -> list[tuple[float, bool, int]]:
    """The paired sequential rule through ``paired.next_step``, the floor pooled as ``Repeats`` pools it."""
    best = {FIRST_SEED + i: world.run(0, 0.0, FIRST_SEED + i) for i in range(BASE_RUNS)}
    single = statistics.stdev(best.values())
    groups: list[list[float]] = []
    out = []
    for c, g in enumerate(gains, start=1):
        cand = {FIRST_SEED: world.run(c, -g, FIRST_SEED)}
        runs = 1
        diff_floor = paired.floor(groups, single, BASE_RUNS - 1)
        while True:
            step = paired.next_step(cand, best, diff_floor, alpha=alpha, max_seeds=max_seeds, futility=futility)
            if step.action == "decide":
                break
            runs += 1
            if step.action == "best":
                best[step.seed] = world.run(0, 0.0, step.seed)
            else:
                cand[step.seed] = world.run(c, -g, step.seed)
        diffs = [d for _, d in paired.paired(cand, best)]
        if len(diffs) >= 2:
            groups.append(diffs)
        out.append((g, step.decision.keep, runs))
    return out


def table_rho(path: Path) -> tuple[float, float, int, float, int]:
    """ρ of train.py from the curve table: each configuration against the baseline at the same seeds.

    ``var(d) = 2σ²(1 - ρ)`` for the paired difference d of two configurations at one seed, with σ the spread of
    one configuration across seeds (pooled within configurations) and var(d) pooled within configurations too.
    Returns (ρ, σ, its df, σ_d, its df)."""
    import csv
    by: dict[str, dict[int, float]] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["status"] == "ok" and r["val_bpb"]:
                by.setdefault(r["config"], {})[int(r["seed"])] = float(r["val_bpb"])
    base = by["baseline"]
    ss = ssd = 0.0
    df = dfd = 0
    for config, runs in by.items():
        if len(runs) >= 2:
            m = statistics.mean(runs.values())
            ss += sum((x - m) ** 2 for x in runs.values())
            df += len(runs) - 1
        diffs = [runs[s] - base[s] for s in runs if s in base] if config != "baseline" else []
        if len(diffs) >= 2:
            m = statistics.mean(diffs)
            ssd += sum((d - m) ** 2 for d in diffs)
            dfd += len(diffs) - 1
    sigma, sigma_d = (ss / df) ** 0.5, (ssd / dfd) ** 0.5
    return 1 - sigma_d ** 2 / (2 * sigma ** 2), sigma, df, sigma_d, dfd


def measure(rho: float, campaigns: int, proposals: int, seed: int, alpha: float, max_seeds: int,
            futility: float) -> dict[str, dict]:
    results: dict[str, list[tuple[float, bool, int]]] = {"today": [], "paired": []}
    for k in range(campaigns):
        rng = random.Random(seed * 7919 + k)
        gains = [rng.choice(GAINS) for _ in range(proposals)]
        w = rng.randrange(1 << 30)
        results["today"] += today(World(rho, random.Random(w)), gains)
        results["paired"] += paired_rule(World(rho, random.Random(w)), gains, alpha, max_seeds, futility)
    table = {}
    for name, rows in results.items():
        kept = {g: [keep for gg, keep, _ in rows if gg == g] for g in GAINS}
        table[name] = {"kept": {g: sum(v) / len(v) for g, v in kept.items() if v},
                       "runs": statistics.mean(r for _, _, r in rows),
                       "null_runs": statistics.mean(r for g, _, r in rows if g == 0)}
    return table


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--campaigns", type=int, default=60)
    p.add_argument("--proposals", type=int, default=60)
    p.add_argument("--rho", type=float, nargs="*", default=[0.0, 0.5, 0.9])
    p.add_argument("--rho-measured", type=float, default=None, help="ρ measured on train.py (curve table)")
    p.add_argument("--table", type=Path, default=None, help="a curve table CSV: ρ measured on train.py from it")
    p.add_argument("--alpha", type=float, default=paired.ALPHA)
    p.add_argument("--max-seeds", type=int, default=paired.MAX_SEEDS)
    p.add_argument("--futility", type=float, default=paired.FUTILITY)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    rhos = [*a.rho, *([a.rho_measured] if a.rho_measured is not None else [])]
    started = time.time()
    if a.table is not None:
        rho, sigma, df, sigma_d, dfd = table_rho(a.table)
        print(f"measured on train.py ({a.table.name}): σ of one configuration across seeds {sigma:.4f} ({df} df), "
              f"σ of a paired difference {sigma_d:.4f} ({dfd} df): ρ = {rho:.2f}")
        rhos.append(round(rho, 2))
    print(f"{a.campaigns} campaigns x {a.proposals} proposals, gains drawn from "
          f"{', '.join(f'{g:.2g}' for g in GAINS)} seed-σ; paired: alpha {a.alpha:g}, up to {a.max_seeds} seeds, "
          f"futility {a.futility:g}")
    head = ["ρ", "rule", *[("null" if g == 0 else f"{g:.2g}σ") for g in GAINS], "runs/exp", "null runs"]
    print("  ".join(f"{h:>8}" for h in head))
    for rho in rhos:
        table = measure(rho, a.campaigns, a.proposals, a.seed, a.alpha, a.max_seeds, a.futility)
        for name, row in table.items():
            cells = [f"{rho:8.2f}", f"{name:>8}", *[f"{row['kept'].get(g, float('nan')):8.1%}" for g in GAINS],
                     f"{row['runs']:8.2f}", f"{row['null_runs']:8.2f}"]
            print("  ".join(cells))
    print(f"({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
