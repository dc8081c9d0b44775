"""Decision quality under noise: Karpathy's plain rule vs the noise-floor rule, on simulated campaigns.

    python benchmarks/decision_quality.py                  # two scenarios, 200 proposals x 20 campaigns, ~2 s
    python benchmarks/decision_quality.py --share 0.1 --mean-effect 0.5 --harmful 0.3 --campaigns 50

The synthetic target: a run of the current code measures its true metric plus Gaussian noise of σ = 1 (all
numbers here are in units of the noise σ). Each proposal is either null (the true metric does not move; think
"change the seed from 42 to 137") or, with probability ``--share``, a real improvement whose size is drawn
from an exponential distribution with mean ``--mean-effect`` σ: many small, a few large. With ``--harmful``
that share of proposals makes the code truly worse by the same distribution (agents propose plenty of
those; the default scenario list shows the issue's setting, no harmful ones, and one with). Both rules see the
same noise draws (common random numbers), and decide with :func:`autoresearch_nb.noise.judge`, the very
function the loop uses; only the loop's git and subprocess work is left out.

Columns (mean over campaigns, [min-max] where it helps):
  false keeps   null changes kept (each one makes the recorded best luckier than the code is)
  harmful keeps changes that truly made the code worse, kept because one run looked good
  true keeps    real improvements kept, of how many were proposed
  true gain     how much better the final code truly is than the baseline (σ)
  claimed gain  what the records say (best recorded metric vs the baseline's), the gap is overclaiming
  runs          training runs spent, baseline repeats and confirmations included
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoresearch_nb.noise import CONFIRM, judge  # noqa: E402


@dataclass(frozen=True)
class Rule:
    name: str
    k: float
    repeats: int = 1
    confirm_runs: int = 0
    margin: float = 1.0
    below: float = 0.0          # near misses within this many σ under the threshold are confirmed too


RULES = (
    Rule("karpathy (keep iff better)", k=0.0),
    Rule("k=2, 3 repeats, passes confirmed", k=2.0, repeats=3, confirm_runs=1),
    Rule("k=2, 3 repeats, + near misses (default)", k=2.0, repeats=3, confirm_runs=1, below=1.0),
    Rule("k=2, 3 repeats, + near misses, 2 confirms", k=2.0, repeats=3, confirm_runs=2, below=1.0),
    Rule("noise k=2, 5 repeats", k=2.0, repeats=5, confirm_runs=1),
    Rule("noise k=1, 3 repeats", k=1.0, repeats=3, confirm_runs=1),
)


@dataclass
class Outcome:
    false_keeps: int = 0
    harmful_keeps: int = 0
    true_keeps: int = 0
    real: int = 0
    true_gain: float = 0.0
    claimed_gain: float = 0.0
    runs: int = 0


def campaign(rule: Rule, effects: list[float], noise: list[list[float]], base_noise: list[float]) -> Outcome:
    """Run one campaign: ``effects[i]`` is proposal i's true improvement (0 null, < 0 harmful), ``noise[i][j]`` the
    noise of its j-th run, ``base_noise`` the baseline's runs. The true baseline metric is 0."""
    out = Outcome(real=sum(1 for e in effects if e > 0))
    base_runs = base_noise[:rule.repeats]
    out.runs = len(base_runs)
    sigma = statistics.stdev(base_runs) if len(base_runs) > 1 else None
    base_metric = best_metric = statistics.mean(base_runs)
    best_n = len(base_runs)
    true_best = 0.0
    for effect, draws in zip(effects, noise):
        true = true_best - effect
        runs = [true + draws[0]]
        while True:
            d = judge(runs, best_metric, best_n=best_n, sigma=sigma, k=rule.k, margin=rule.margin,
                      confirm_runs=rule.confirm_runs, below=rule.below)
            if d.verdict != CONFIRM:
                break
            runs.append(true + draws[len(runs)])
        out.runs += len(runs)
        if d.keep:
            best_metric, best_n, true_best = d.mean, len(runs), true
            if effect > 0:
                out.true_keeps += 1
            elif effect < 0:
                out.harmful_keeps += 1
            else:
                out.false_keeps += 1
    out.true_gain = -true_best
    out.claimed_gain = base_metric - best_metric
    return out


def _effect(rng: random.Random, share: float, harmful: float, mean_effect: float) -> float:
    u = rng.random()
    if u < share:
        return rng.expovariate(1 / mean_effect)
    if u < share + harmful:
        return -rng.expovariate(1 / mean_effect)
    return 0.0


def simulate(proposals: int, share: float, mean_effect: float, campaigns: int, seed: int,
             harmful: float = 0.0) -> dict[str, list[Outcome]]:
    results: dict[str, list[Outcome]] = {r.name: [] for r in RULES}
    for c in range(campaigns):
        rng = random.Random(seed * 100_003 + c)
        effects = [_effect(rng, share, harmful, mean_effect) for _ in range(proposals)]
        max_runs = 1 + max(r.confirm_runs for r in RULES)
        noise = [[rng.gauss(0, 1) for _ in range(max_runs)] for _ in range(proposals)]
        base_noise = [rng.gauss(0, 1) for _ in range(max(r.repeats for r in RULES))]
        for rule in RULES:
            results[rule.name].append(campaign(rule, effects, noise, base_noise))
    return results


def table(results: dict[str, list[Outcome]]) -> str:
    def cell(values: list[float], fmt: str = "{:.1f}", spread: bool = True) -> str:
        text = fmt.format(statistics.mean(values))
        return f"{text} [{fmt.format(min(values))}-{fmt.format(max(values))}]" if spread else text

    head = ("rule", "false keeps", "harmful keeps", "true keeps", "true gain σ", "claimed gain σ", "runs")
    rows = [head]
    for name, outs in results.items():
        rows.append((name, cell([o.false_keeps for o in outs]), cell([o.harmful_keeps for o in outs]),
                     f"{cell([o.true_keeps for o in outs], spread=False)} of "
                     f"{cell([o.real for o in outs], spread=False)}",
                     cell([o.true_gain for o in outs]), cell([o.claimed_gain for o in outs], spread=False),
                     cell([o.runs for o in outs], "{:.0f}", spread=False)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--proposals", type=int, default=200)
    p.add_argument("--share", type=float, default=0.2, help="share of proposals with a real improvement")
    p.add_argument("--mean-effect", type=float, default=1.0, help="mean real improvement, in units of σ")
    p.add_argument("--harmful", type=float, default=None,
                   help="share of proposals that truly hurt (default: two scenarios, 0 and 0.4)")
    p.add_argument("--campaigns", type=int, default=20, help="independent campaigns (seeds)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    for harmful in ((0.0, 0.4) if a.harmful is None else (a.harmful,)):
        results = simulate(a.proposals, a.share, a.mean_effect, a.campaigns, a.seed, harmful)
        print(f"{a.campaigns} campaigns x {a.proposals} proposals: {a.share:.0%} improve, {harmful:.0%} hurt "
              f"(sizes ~ Exponential, mean {a.mean_effect:g}σ), the rest null; noise σ = 1")
        print(table(results) + "\n")


if __name__ == "__main__":
    main()
