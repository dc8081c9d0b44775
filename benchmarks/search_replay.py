"""Replay whole campaigns against the curve table: which search strategy finds the most per CPU-hour.

    python benchmarks/search_replay.py [--table benchmarks/data/curve_table.csv] [--campaigns 50]
    python benchmarks/search_replay.py --synthetic      # a made-up table (the tests' way; no real runs)
    python benchmarks/search_replay.py --rule-only [--margin 4 --min-progress 0.3]   # the stop rule alone

Each campaign is a night of the loop with the **real** proposer (the shipped tuner, ``TunerAgent.propose`` on a
``Context`` built from the campaign's own history), the **real** keep rule (``noise.judge``, the same call the
loop makes) and the **real** stop rule (``prune.Prune`` fed the run's curve point by point). Only the runs are
replayed: a proposal whose constants match a configuration of the table is answered by one of its recorded runs
(a random seed not used yet in this campaign: its verified val_bpb, its curve at every 5 %, its seconds); any
other by a surrogate fitted to the table (:class:`Surrogate`: the baseline plus each changed dial's effect, with
the baseline's seed noise; its leave-one-out error on the table's combinations is printed, and how often it
answered). The clock advances by each run's seconds on the table (a pruned run: its start-up plus the share of
the budget it trained). The campaign ends after 100 experiments' worth of time (100 x the baseline's seconds).

Strategies: ``plain`` (Karpathy: one run each, keep if strictly better), ``unpaired`` (the loop's earlier rule: a
noise floor from 3 baseline runs, keep past 2σ, confirmations), ``paired`` (the default: ``paired.next_step``,
the candidate at the best's seeds, the table's run at that seed where it has one), and each with ``+prune``. Printed per strategy: the median
over campaigns of the best **true** val_bpb (the kept configuration's mean over its table seeds, not the lucky
run) after 25, 50 and 100 experiments' worth of time, experiments run, the share of run-seconds pruning saved,
the false-prune rate (pruned runs whose true mean beat the best at the time), and ``reach``: when a campaign's
true best first got to the plain loop's median 100-experiment best (the goal: the default in half the time).
The run time is printed too.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoresearch_nb.prune import GRID as PRUNE_GRID  # noqa: E402  (light: records only)

TABLE = ROOT / "benchmarks" / "data" / "curve_table.csv"
GRID = list(PRUNE_GRID)  # the stop rule's grid: the table and the replay read curves where it does
MARKS = (25, 50, 100)


@dataclass
class Run:
    """One recorded (or surrogate) run: its verified number, its curve on the grid, its seconds."""

    value: float
    curve: list[float | None]
    seconds: float
    seed: int | None = None


@dataclass
class Config:
    key: tuple
    changes: dict[str, str]
    runs: list[Run] = field(default_factory=list)
    crashed: int = 0

    @property
    def mean(self) -> float | None:
        return statistics.mean(r.value for r in self.runs) if self.runs else None


def source() -> str:
    return (ROOT / "train.py").read_text()


def space_of(text: str):
    from autoresearch_nb.agents.space import discover
    return discover(text, "train.py")


def key_of(space, content: str) -> tuple | None:
    """The configuration a file is: its encoded constants that differ from train.py's defaults."""
    base = space.encoded(source())
    enc = space.encoded(content)
    if enc is None or base is None:
        return None
    return tuple(sorted((n, enc[n]) for n in enc if enc[n] != base.get(n)))


def load_table(path: Path) -> dict[tuple, Config]:
    """The table's configurations by key (rows of the curve table CSV)."""
    import ast
    text = source()
    space = space_of(text)
    out: dict[tuple, Config] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            changes = json.loads(row["changes"])
            values = {n: ast.literal_eval(t) for n, t in changes.items()}
            key = key_of(space, space.render(text, values))
            if key is None:
                continue
            cfg = out.setdefault(key, Config(key, changes))
            if row["status"] != "ok" or not row.get("val_bpb"):
                cfg.crashed += 1
                continue
            curve = [float(row[f"p{int(round(f * 100)):03d}"]) if row.get(f"p{int(round(f * 100)):03d}") else None
                     for f in GRID]
            cfg.runs.append(Run(float(row["val_bpb"]), curve, float(row["run_seconds"] or 0.0), int(row["seed"])))
    return out


def synthetic_table(seed: int = 0) -> dict[tuple, Config]:
    """A made-up table with a known answer: each dial's moves have an effect drawn once; a configuration's value
    is the baseline plus the sum of its dials' effects plus seed noise; curves fall from 4 to the value."""
    rng = random.Random(seed)
    text = source()
    space = space_of(text)
    base = space.encoded(text)
    effects: dict[tuple, float] = {}
    out: dict[tuple, Config] = {}

    def make(key: tuple, changes: dict, n: int) -> None:
        mean = 2.0 + sum(effects.setdefault(kv, rng.gauss(0.02, 0.05)) for kv in key)
        cfg = Config(key, changes)
        for s in range(n):
            v = mean + rng.gauss(0, 0.01)
            curve = [v + (4.0 - v) * (1 - f) ** 2 + rng.gauss(0, 0.005) for f in GRID]
            cfg.runs.append(Run(v, curve, 40.0, s + 1))
        out[key] = cfg

    make((), {}, 5)
    for p in space:
        if not p.active(space.values(text)):
            continue
        for x in _moves(p, base[p.name]):
            make(((p.name, x),), {p.name: str(x)}, 2)
    return out


def _moves(p, x) -> list:
    if p.kind == "choice":
        return [c for c in range(len(p.choices)) if c != x] if isinstance(x, int) else \
            [c for c in p.choices if c != x]
    if p.kind in ("int", "pow2"):
        return [k for k in range(int(p.low), int(p.high) + 1) if k != x]
    lo, hi = float(p.low), float(p.high)
    return [v for v in (lo, (lo + x) / 2, (x + hi) / 2, hi) if v != x]


class Surrogate:
    """The baseline's mean plus each changed dial's effect (from the table's one-dial configurations: the nearest
    recorded value of that dial, interpolated between neighbours for numbers), with the baseline's seed noise."""

    def __init__(self, table: dict[tuple, Config]) -> None:
        self.table = table
        base = table.get(())
        if base is None or len(base.runs) < 2:
            raise SystemExit("the table needs the baseline with at least 2 seeds")
        self.base_mean = base.mean
        self.sigma = statistics.stdev(r.value for r in base.runs)
        self.base_curve = [statistics.mean(c for c in cs if c is not None) if any(c is not None for c in cs)
                           else None for cs in zip(*(r.curve for r in base.runs))]
        self.seconds = statistics.mean(r.seconds for r in base.runs)
        self.single: dict[str, list[tuple[Any, float]]] = {}
        for key, cfg in table.items():
            if len(key) == 1 and cfg.runs:
                name, x = key[0]
                self.single.setdefault(name, []).append((x, cfg.mean - self.base_mean))
        self.answered = 0

    def effect(self, name: str, x: Any) -> float:
        known = self.single.get(name, [])
        exact = [e for v, e in known if v == x]
        if exact:
            return exact[0]
        nums = [(v, e) for v, e in known if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not nums or not isinstance(x, (int, float)):
            return 0.0
        nums.sort()
        below = [(v, e) for v, e in nums if v < x]
        above = [(v, e) for v, e in nums if v > x]
        if below and above:
            (v0, e0), (v1, e1) = below[-1], above[0]
            return e0 + (e1 - e0) * (x - v0) / (v1 - v0)
        return (below[-1] if below else above[0])[1]

    def mean(self, key: tuple) -> float:
        cfg = self.table.get(key)
        if cfg is not None and cfg.runs:
            return cfg.mean  # type: ignore[return-value]
        return self.base_mean + sum(self.effect(n, x) for n, x in key)

    def run(self, key: tuple, rng: random.Random) -> Run:
        self.answered += 1
        m = self.mean(key)
        shift = m - self.base_mean
        value = m + rng.gauss(0.0, self.sigma)
        return Run(value, [None if c is None else c + shift for c in self.base_curve], self.seconds)

    def loo_error(self) -> tuple[float, int]:
        """RMSE of the additive prediction on the table's combinations (which the model never fitted)."""
        errs = [self.base_mean + sum(self.effect(n, x) for n, x in key) - cfg.mean
                for key, cfg in self.table.items() if len(key) > 1 and cfg.runs]
        return (math.sqrt(statistics.mean(e * e for e in errs)) if errs else float("nan")), len(errs)


@dataclass
class Strategy:
    """``baseline_runs``: the baseline's runs (their spread is the noise floor when ``noise_k`` > 0, and the curves'
    spread for pruning); the plain loop with pruning runs the baseline 3 times for the curves only."""

    name: str
    baseline_runs: int
    noise_k: float
    prune: bool
    paired: bool = False   # the paired sequential rule (autoresearch_nb.paired): the loop's default now
    combine: int = 0       # combine_after (autoresearch_nb.combine): near-misses combined after this many misses


STRATEGIES = [Strategy("plain", 1, 0.0, False), Strategy("plain+prune", 3, 0.0, True),
              Strategy("unpaired", 3, 2.0, False), Strategy("unpaired+prune", 3, 2.0, True),
              Strategy("paired", 3, 2.0, False, True), Strategy("paired+prune", 3, 2.0, True, True),
              Strategy("paired+combine", 3, 2.0, False, True, 8),
              Strategy("paired+prune+combine", 3, 2.0, True, True, 8)]


def curve_points(curve: list[float | None], upto: int):
    from autoresearch_nb.records import CurvePoint
    return [CurvePoint(i + 1, 0.0, v, {"progress": GRID[i], "train_bpb": v})
            for i, v in enumerate(curve[:upto]) if v is not None]


def campaign(table: dict[tuple, Config], surrogate: Surrogate, strategy: Strategy, seed: int,
             horizon: float, budget: float) -> dict:
    """One night of the loop on the table; returns the best true value at each mark and the pruning counts."""
    from autoresearch_nb import noise, paired
    from autoresearch_nb.agents.base import Context, Proposal
    from autoresearch_nb.combine import AGENT, combination
    from autoresearch_nb.agents.tuner import TunerAgent
    from autoresearch_nb.config import Config as LoopConfig
    from autoresearch_nb.edits import content_hash
    from autoresearch_nb.prune import Prune, Reference
    from autoresearch_nb.records import Experiment, Status

    rng = random.Random(seed)
    text = source()
    space = space_of(text)
    used: dict[tuple, set[int]] = {}

    def draw_at(key: tuple, seed: int) -> Run:
        """The table's run of ``key`` at ``seed`` (the same seed gives the same run), else the surrogate's."""
        cfg = table.get(key)
        hit = [r for r in (cfg.runs if cfg is not None else []) if r.seed == seed]
        return hit[0] if hit else surrogate.run(key, rng)

    def draw(key: tuple) -> Run:
        cfg = table.get(key)
        if cfg is not None and cfg.runs:
            fresh = [r for r in cfg.runs if r.seed not in used.setdefault(key, set())]
            if fresh:
                r = rng.choice(fresh)
                used[key].add(r.seed)  # type: ignore[arg-type]
                return r
        return surrogate.run(key, rng)

    config = LoopConfig(metric="val_bpb", noise_k=strategy.noise_k, noise_repeats=strategy.baseline_runs,
                        time_budget_s=budget, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        agent = TunerAgent(config, repo=tmp, seed=seed)
        clock = 0.0
        base_runs = [draw_at((), s) for s in range(1, strategy.baseline_runs + 1)] if strategy.paired else \
            [draw(()) for _ in range(strategy.baseline_runs)]
        best_seeds = {r.seed if r.seed is not None else 1 + i: r.value for i, r in enumerate(base_runs)}
        groups: list[list[float]] = []  # the paired rule's pooled differences
        clock += sum(r.seconds for r in base_runs)
        sigma = statistics.stdev(r.value for r in base_runs) if len(base_runs) > 1 and strategy.noise_k else None
        reference = Reference.of(0, curve_points(base_runs[0].curve, 20),
                                 [curve_points(r.curve, 20) for r in base_runs]) if strategy.prune else None
        # the plain loop judges on one run; the others on the mean of the baseline's runs
        best_key = ()
        best_values = [r.value for r in base_runs] if strategy.noise_k else [base_runs[0].value]
        best_curve = base_runs[0].curve
        history = [Experiment(0, "replay", Status.KEEP, "baseline", content=text, content_hash=content_hash(text),
                              metric=statistics.mean(best_values), runs=best_values, agent="baseline", sha="r0")]
        tried = {()}  # the configurations run so far (a combination that equals one is not proposed)
        best_exp = history[0]
        marks, pruned, false_pruned, ran, seconds_saved, seconds_all = {}, 0, 0, 0, 0.0, 0.0
        combos = combos_kept = 0
        unit = surrogate.seconds
        trajectory = [(clock / unit, surrogate.mean(best_key))]  # (experiments' worth of time, true best)
        best_source = text
        while clock < horizon:
            for m in MARKS:
                if m not in marks and clock >= m * unit:
                    marks[m] = surrogate.mean(best_key)
            context = Context(program="", editable="train.py", source=best_source, history=tuple(history),
                              config=config, best=best_exp)
            planned = combination(history, best_source, after=strategy.combine,
                                  known=lambda content: key_of(space, content) in tried, metric="val_bpb")
            try:  # the loop's order (proposals.ask_agent): a due combination first, else the tuner
                proposal = Proposal(planned.description, content=planned.content) if planned else \
                    agent.propose(context)
            except Exception:  # the tuner ran out of ideas
                break
            content = proposal.content
            key = key_of(space, content)
            tried.add(key)
            number = len(history)
            rows = dict(agent=AGENT if planned else "tuner", sha=f"r{number}", parent_sha=best_exp.sha)
            ran += 1
            combos += planned is not None
            if key is None or (key in table and not table[key].runs and table[key].crashed):
                clock += unit * 0.3
                history.append(Experiment(number, "replay", Status.CRASH, proposal.description, content=content,
                                          content_hash=content_hash(content), **rows))
                continue
            run = draw_at(key, min(best_seeds)) if strategy.paired else draw(key)
            stop_at = None
            if reference is not None:  # the real rule, fed the run's curve a grid point at a time
                ref = Reference(best_exp.number, tuple(best_curve), reference.sigma, reference.runs)
                rule = Prune(ref)
                for i in range(len(GRID)):
                    why = rule.check(None, curve_points(run.curve, i + 1), 0.0)
                    if why:
                        stop_at = i
                        break
            overhead = max(run.seconds - budget, 0.0)
            if stop_at is not None:
                cost = overhead + budget * GRID[stop_at]
                seconds_saved += run.seconds - cost
                seconds_all += run.seconds
                clock += cost
                pruned += 1
                if surrogate.mean(key) < surrogate.mean(best_key):
                    false_pruned += 1
                history.append(Experiment(number, "replay", Status.PRUNED, proposal.description, content=content,
                                          content_hash=content_hash(content), **rows))
                continue
            clock += run.seconds
            seconds_all += run.seconds
            if strategy.paired:
                cand = {min(best_seeds): run.value}
                floor = paired.floor(groups, sigma, len(base_runs) - 1)
                while True:
                    step = paired.next_step(cand, best_seeds, floor)
                    if step.action == "decide":
                        break
                    extra = draw_at(best_key if step.action == "best" else key, step.seed)
                    clock += extra.seconds
                    seconds_all += extra.seconds
                    (best_seeds if step.action == "best" else cand)[step.seed] = extra.value
                diffs = [x for _, x in paired.paired(cand, best_seeds)]
                if len(diffs) >= 2:
                    groups.append(diffs)
                d = step.decision
                values = list(cand.values())
                # the loop's decided metric: the best's plus the mean paired difference (repeats.py)
                decided = best_exp.metric + statistics.mean(diffs) if diffs else statistics.mean(values)
            else:
                values = [run.value]
                d = noise.judge(values, statistics.mean(best_values), best_n=len(best_values), sigma=sigma,
                                k=strategy.noise_k)
                while d.verdict == noise.CONFIRM:
                    extra = draw(key)
                    clock += extra.seconds
                    seconds_all += extra.seconds
                    values.append(extra.value)
                    d = noise.judge(values, statistics.mean(best_values), best_n=len(best_values), sigma=sigma,
                                    k=strategy.noise_k)
                decided = statistics.mean(values)
            exp = Experiment(number, "replay", Status.KEEP if d.keep else Status.DISCARD, proposal.description,
                             content=content, content_hash=content_hash(content), metric=decided, runs=values,
                             **rows)
            history.append(exp)
            agent.tell(exp)
            if d.keep:
                combos_kept += planned is not None
                best_key, best_values, best_curve, best_exp, best_source = key, values, run.curve, exp, content
                if strategy.paired:
                    best_seeds = dict(cand)
                trajectory.append((clock / unit, surrogate.mean(best_key)))
        for m in MARKS:
            marks.setdefault(m, surrogate.mean(best_key))
    return {"marks": marks, "ran": ran, "pruned": pruned, "false_pruned": false_pruned,
            "saved": seconds_saved / seconds_all if seconds_all else 0.0, "trajectory": trajectory,
            "combos": combos, "combos_kept": combos_kept}


def reach(trajectory: list[tuple[float, float]], target: float) -> float:
    """When (experiments' worth of time) a campaign's true best first got to ``target``; inf if never."""
    return next((t for t, v in trajectory if v <= target + 1e-12), math.inf)


def rule_only(table: dict[tuple, Config], budget: float, margin: float, min_progress: float) -> None:
    """The stop rule alone on the table's real curves: every run of every configuration against the baseline
    (its first seed's curve as the best's, all its seeds' spread as the noise), as the loop's first experiments
    meet it. A prune is false when the configuration's true mean beats the baseline's."""
    from autoresearch_nb.prune import Prune, Reference
    base = table[()]
    ref = Reference.of(0, curve_points(base.runs[0].curve, 20), [curve_points(r.curve, 20) for r in base.runs])
    if ref is None:
        raise SystemExit("the baseline has too few curves")
    rule = Prune(ref, min_progress=min_progress, margin=margin)
    total = saved = 0.0
    pruned, false, runs = [], [], 0
    for key, cfg in table.items():
        if not key:
            continue
        for run in cfg.runs:
            runs += 1
            total += run.seconds
            for i in range(len(GRID)):
                if rule.check(None, curve_points(run.curve, i + 1), 0.0):
                    saved += budget * (1 - GRID[i])
                    pruned.append((cfg, GRID[i]))
                    if cfg.mean < base.mean:
                        false.append(cfg)
                    break
    print(f"rule alone (margin {margin:g}σ from {min_progress:.0%}): {runs} runs of {len(table) - 1} changes vs the "
          f"baseline ({len(base.runs)} seeds, mean {base.mean:.4f}): {len(pruned)} pruned ({len(pruned) / max(runs, 1):.0%}), "
          f"{saved / max(total, 1):.0%} of run-seconds saved, {len(false)} false ("
          + ", ".join(sorted({'/'.join(f'{n}={v}' for n, v in c.changes.items()) for c in false})) + ")")
    for cfg, at in sorted(pruned, key=lambda t: t[1]):
        print(f"  pruned at {at:.0%}: {config_label(cfg)} (true mean {cfg.mean:.4f})")


def config_label(cfg: Config) -> str:
    return ", ".join(f"{n}={v}" for n, v in sorted(cfg.changes.items())) or "baseline"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--synthetic", action="store_true", help="a made-up table instead of the real one")
    parser.add_argument("--campaigns", type=int, default=50)
    parser.add_argument("--experiments", type=int, default=100, help="the horizon, in experiments' worth of time")
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--strategies", default=",".join(s.name for s in STRATEGIES))
    parser.add_argument("--rule-only", action="store_true", help="only the stop rule on every run of the table")
    parser.add_argument("--margin", type=float, default=3.0)
    parser.add_argument("--min-progress", type=float, default=0.2)
    args = parser.parse_args()
    started = time.monotonic()
    import logging
    logging.getLogger("autoresearch_nb").setLevel(logging.ERROR)
    table = synthetic_table() if args.synthetic else load_table(args.table)
    if args.rule_only:
        rule_only(table, args.budget, args.margin, args.min_progress)
        return
    surrogate = Surrogate(table)
    rmse, n_combos = surrogate.loo_error()
    runs = sum(len(c.runs) for c in table.values())
    print(f"table: {len(table)} configurations, {runs} runs ({'synthetic' if args.synthetic else args.table.name}); "
          f"baseline {surrogate.base_mean:.4f} ± {surrogate.sigma:.4f}; surrogate error on {n_combos} "
          f"combinations (never fitted): RMSE {rmse:.4f}")
    horizon = args.experiments * surrogate.seconds
    wanted = [s for s in STRATEGIES if s.name in args.strategies.split(",")]
    print(f"{'strategy':14} " + " ".join(f"{'best@' + str(m):>9}" for m in MARKS) +
          f" {'runs':>5} {'pruned':>6} {'saved':>6} {'false':>6} {'reach':>6}")
    target: float | None = None  # the plain loop's median best at the horizon
    for strategy in wanted:
        before = surrogate.answered
        results = [campaign(table, surrogate, strategy, seed, horizon, args.budget) for seed in range(args.campaigns)]
        med = {m: statistics.median(r["marks"][m] for r in results) for m in MARKS}
        pruned = sum(r["pruned"] for r in results)
        false = sum(r["false_pruned"] for r in results)
        ran = sum(r["ran"] for r in results)
        if target is None:
            target = med[MARKS[-1]]
        when = statistics.median(reach(r["trajectory"], target) for r in results)
        print(f"{strategy.name:14} " + " ".join(f"{med[m]:9.4f}" for m in MARKS) +
              f" {ran / len(results):5.0f} {pruned / max(ran, 1):6.1%} "
              f"{statistics.mean(r['saved'] for r in results):6.1%} {false / max(pruned, 1):6.1%} {when:6.1f}"
              f"  (surrogate answered {surrogate.answered - before} of {ran} + repeats"
              + (f"; combinations {sum(r['combos'] for r in results)}, kept "
                 f"{sum(r['combos_kept'] for r in results)}" if strategy.combine else "") + ")", flush=True)
    print(f"reach: the median time (in experiments' worth) a campaign's true best first got to the first strategy's "
          f"median best at {MARKS[-1]} ({target:.4f}); inf: half the campaigns or more never did")
    print(f"run time: {time.monotonic() - started:.0f} s for {args.campaigns} campaigns x {len(wanted)} strategies")


if __name__ == "__main__":
    main()
