"""The tuner against random search, on cheap noisy targets; optionally, the tuner on the real train.py.

    python benchmarks/tuner_vs_random.py                    # the bowl, then the held-out set: a few minutes
    python benchmarks/tuner_vs_random.py --seeds 20 --experiments 40 --problems 8
    python benchmarks/tuner_vs_random.py --train            # + 10 experiments of train.py at 60 s (~15 min, CPU)

The bowl: a Python file whose CAPS hyperparameters set a noisy separable quadratic bowl (in log units for
learning rates and sizes), with its optimum away from the file's starting values. The tuner's probe mix was
tuned on this very bowl, and its optimum lies on the probe grid, so it flatters the tuner.

The held-out set (``--problems``, generated from a seed; the tuner never saw them): another file with other
constants, and on each problem a rotated, non-separable quadratic (a random rotation, curvatures 10x apart), an
optimum off the probe grid (between the powers of two, away from x2 / x1.5 steps), a categorical dial
(OPTIMIZER) that moves the best learning rate and has its own cost, and a crash region (a learning rate 4x past
the optimizer's best diverges; a model x batch too large runs out of memory): such a run is a CRASH with no
metric, as the loop records it. Printed per strategy: the median over problems and seeds of the share of the
baseline's gap to the optimum closed, and the crashes per run.

Each strategy gets the same space (discovered from the file), the same number of experiments (the baseline
included) and the same seeds; a small loop keeps an experiment when it beats the best so far, as the real
loop's plain rule does. For the bowl: the median over seeds of the best's true, noise-free value (and the best
as the loop saw it).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoresearch_nb.agents.base import Context  # noqa: E402
from autoresearch_nb.agents.space import discover  # noqa: E402
from autoresearch_nb.agents.tuner import TunerAgent  # noqa: E402
from autoresearch_nb.config import Config  # noqa: E402
from autoresearch_nb.edits import content_hash  # noqa: E402
from autoresearch_nb.records import Experiment, Status  # noqa: E402

def stand_in(what: str, constants: str) -> str:
    """A stand-in for train.py: a docstring, ``constants`` under the hyperparameter banner, an empty main()."""
    return f'"""{what}"""\n\n# Hyperparameters\n{constants}\n\ndef main():\n    print("---")\n'


TARGET = stand_in("A stand-in for train.py: the constants below decide the score (see benchmarks/tuner_vs_random.py).",
                  """\
LEARNING_RATE = 0.01
EMBED_LR = 0.05
DEPTH = 4
WIDTH = 2**7
BATCH_SIZE = 2**5
WARMUP_RATIO = 0.1
WEIGHT_DECAY = 0.1
USE_NORM = True
ACTIVATION = "relu"  # choices: relu, gelu, tanh
""")
OPTIMUM = dict(LEARNING_RATE=0.003, EMBED_LR=0.1, DEPTH=6, WIDTH=2**9, BATCH_SIZE=2**4, WARMUP_RATIO=0.05,
               WEIGHT_DECAY=0.02, USE_NORM=False, ACTIVATION="gelu")
NOISE = 0.01
SPACE = discover(TARGET)


def true_metric(content: str) -> float:
    v, o = SPACE.values(content), OPTIMUM
    d = (math.log(v["LEARNING_RATE"] / o["LEARNING_RATE"]) / math.log(4)) ** 2
    d += (math.log(v["EMBED_LR"] / o["EMBED_LR"]) / math.log(4)) ** 2
    d += ((v["DEPTH"] - o["DEPTH"]) / 3) ** 2
    d += (math.log2(v["WIDTH"] / o["WIDTH"]) / 2) ** 2 + (math.log2(v["BATCH_SIZE"] / o["BATCH_SIZE"]) / 2) ** 2
    d += ((v["WARMUP_RATIO"] - o["WARMUP_RATIO"]) / 0.2) ** 2
    d += (math.log(v["WEIGHT_DECAY"] / o["WEIGHT_DECAY"]) / math.log(4)) ** 2
    d += 0.3 * (v["USE_NORM"] != o["USE_NORM"]) + {"relu": 0.3, "gelu": 0.0, "tanh": 0.6}[v["ACTIVATION"]]
    return 1.0 + 0.1 * d


def run_once(strategy: dict, seed: int, n: int, target: str = TARGET,
             metric_of: Callable[[str], float | None] = true_metric) -> list[tuple[float, float, int]]:
    """One run of ``n`` experiments (baseline first): (best seen, its true value, crashes so far) after each.

    ``metric_of`` gives the true metric of a file's content, or None for a run that crashes."""
    config = Config(editable="target.py", seed=seed)
    agent = TunerAgent(config, ROOT, **strategy)
    noise = random.Random(seed)
    source, history, best = target, [], None
    trace, crashes = [], 0
    for i in range(n):
        if i == 0:
            content, description = target, "baseline"
        else:
            ctx = Context(program="", editable="target.py", source=source, history=tuple(history), config=config,
                          best=best)
            p = agent.propose(ctx)
            content, description = p.content, p.description
        true = metric_of(content)
        if true is None:
            crashes += 1
            metric, status = None, Status.CRASH
        else:
            metric = true + noise.gauss(0, NOISE)
            status = Status.KEEP if best is None or metric < best.metric else Status.DISCARD
        e = Experiment(number=i, tag="bench", status=status, description=description, metric=metric,
                       content=content, content_hash=content_hash(content), agent="baseline" if i == 0 else "tuner")
        history.append(e)
        agent.tell(e)
        if status == Status.KEEP:
            best, source = e, content
        trace.append((best.metric, metric_of(best.content), crashes))
    return trace


# -- the held-out set ----------------------------------------------------------------------------------------
HELD_OUT = stand_in("Another stand-in for train.py, with other constants (see benchmarks/tuner_vs_random.py, "
                    "held-out set).", "".join(f"{line}\n" for line in (
                        "PEAK_LR = 0.0006", "WARMUP_RATIO = 0.05", "N_LAYER = 6", "N_EMBD = 2**8", "BATCH_SIZE = 2**6",
                        "WEIGHT_DECAY = 0.1", "DROPOUT = 0.1", "GRAD_CLIP = 1.0",
                        'OPTIMIZER = "adamw"  # choices: adamw, lion, sgd')))
HELD_SPACE = discover(HELD_OUT)
_START = HELD_SPACE.values(HELD_OUT)
_LOG4 = ("PEAK_LR", "WEIGHT_DECAY", "GRAD_CLIP")  # log units: a factor of 4 is one unit
_POW2 = ("N_EMBD", "BATCH_SIZE")                  # exponent units: a factor of 4 is one unit
_LINEAR = {"N_LAYER": 3.0, "WARMUP_RATIO": 0.2, "DROPOUT": 0.2}
NUMERIC = (*_LOG4, *_POW2, *_LINEAR)
_LR_SHIFT = {"adamw": 0.0, "lion": math.log(1 / 3) / math.log(4), "sgd": math.log(3.0) / math.log(4)}


def _off_grid(rng: random.Random, lo: float, hi: float, grid: float) -> float:
    """A value in [lo, hi] at least a fifth of a grid step away from every multiple of ``grid``."""
    while True:
        x = rng.uniform(lo, hi)
        if abs(x / grid - round(x / grid)) > 0.2:
            return x


@dataclass(frozen=True)
class Problem:
    """One held-out problem: the metric is 1 + 0.1 · (zᵀ·A·z + cost of the optimizer), z the offset from the
    optimum in the units above, A = Qᵀ·diag(curvatures)·Q with Q a random rotation; None inside the crash
    region."""

    optimum: dict[str, float]       # in coordinate units: log4 of the value, log2/2 of a power of two, linear/scale
    a: tuple[tuple[float, ...], ...]
    cost: dict[str, float]          # per OPTIMIZER choice; the best choice costs 0
    diverge_at: float               # a learning rate this many log4 units past the optimizer's best crashes
    memory: float                   # N_LAYER * N_EMBD * BATCH_SIZE above this runs out of memory

    @property
    def best_choice(self) -> str:
        return min(self.cost, key=self.cost.get) if self.cost else "adamw"

    def coords(self, v: dict) -> dict[str, float]:
        c = {n: math.log(v[n]) / math.log(4) for n in _LOG4}
        c.update({n: math.log2(v[n]) / 2 for n in _POW2})
        c.update({n: v[n] / scale for n, scale in _LINEAR.items()})
        return c

    def offsets(self, v: dict) -> list[float]:
        """z: the offsets from the optimum, the learning rate's from the best one of this file's optimizer."""
        c = self.coords(v)
        z = [c[n] - self.optimum[n] for n in NUMERIC]
        choice = str(v["OPTIMIZER"]).strip("'\"")
        z[0] -= _LR_SHIFT[choice] - _LR_SHIFT[self.best_choice]   # each optimizer has its own best learning rate
        return z

    def metric(self, content: str) -> float | None:
        v = HELD_SPACE.values(content)
        choice = str(v["OPTIMIZER"]).strip("'\"")
        z = self.offsets(v)
        if z[0] > self.diverge_at or v["N_LAYER"] * v["N_EMBD"] * v["BATCH_SIZE"] > self.memory:
            return None
        quad = sum(z[i] * self.a[i][j] * z[j] for i in range(len(z)) for j in range(len(z)))
        return 1.0 + 0.1 * (quad + self.cost[choice])


def make_problem(seed: int) -> Problem:
    """A held-out problem from ``seed``: rotation, curvatures, an off-grid optimum, the optimizers' costs, and a
    crash region that the baseline stays out of and the optimum too."""
    rng = random.Random(f"held-out/{seed}")
    start = Problem({}, (), {}, 0.0, 0.0).coords(_START)
    # Inside the space the tuner searches (10 % in from its bounds); off the probe grid: x2 steps are 0.5 log4
    # units from the start and powers of two 0.5 exponent units, so those optima sit between grid points. The
    # linear dials step by x1.5 or ±25 %, which lands on no fixed grid; they are drawn anywhere in range.
    optimum = {}
    for param in HELD_SPACE:
        if param.name not in NUMERIC:
            continue
        lo, hi = (param.low / 2, param.high / 2) if param.name in _POW2 else (
            (math.log(param.low) / math.log(4), math.log(param.high) / math.log(4)) if param.name in _LOG4
            else (param.low / _LINEAR[param.name], param.high / _LINEAR[param.name]))
        lo, hi = lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo)
        if param.name in _LINEAR:
            optimum[param.name] = rng.uniform(lo, hi)
        else:
            optimum[param.name] = start[param.name] + _off_grid(rng, lo - start[param.name], hi - start[param.name],
                                                                0.5)
    n = len(NUMERIC)
    # A random rotation (Gram-Schmidt on Gaussian vectors) and curvatures from 0.3 to 3 (10x apart).
    q: list[list[float]] = []
    while len(q) < n:
        v = [rng.gauss(0, 1) for _ in range(n)]
        for u in q:
            d = sum(a * b for a, b in zip(v, u))
            v = [a - d * b for a, b in zip(v, u)]
        norm = math.sqrt(sum(a * a for a in v))
        if norm > 1e-6:
            q.append([a / norm for a in v])
    curv = [0.3 * 10 ** (i / (n - 1)) for i in range(n)]
    rng.shuffle(curv)
    a = tuple(tuple(sum(q[k][i] * curv[k] * q[k][j] for k in range(n)) for j in range(n)) for i in range(n))
    best_choice = rng.choice(["adamw", "lion", "sgd"])
    cost = {c: 0.0 if c == best_choice else rng.uniform(0.2, 0.8) for c in ("adamw", "lion", "sgd")}
    opt_size = 2 ** (2 * optimum["N_EMBD"]) * 2 ** (2 * optimum["BATCH_SIZE"]) * optimum["N_LAYER"] * 3
    base_size = _START["N_LAYER"] * _START["N_EMBD"] * _START["BATCH_SIZE"]
    memory = max(opt_size, base_size) * 2.5   # room past both: the tuner can still step into it
    problem = Problem(optimum, a, cost, 1.0, memory)
    lr_offset = problem.offsets(_START)[0]
    if lr_offset > 0.5:   # the baseline must run: the crash edge half a unit (x2) past its learning rate
        problem = Problem(optimum, a, cost, lr_offset + 0.5, memory)
    return problem


def held_out(seeds: int, n: int, problems: int) -> None:
    strategies = {"tuner (probes + TPE)": {}, "tuner (TPE, local)": {"probes": False},
                  "tuner (TPE, global)": {"mode": "global", "probes": False},
                  "random search": {"sampler": "random", "mode": "global"}}
    marks = sorted({m for m in (6, 12, 20) if m < n} | {n})
    set_ = [make_problem(p) for p in range(problems)]
    print(f"\nheld-out set: {problems} problems x {seeds} seeds, {len(HELD_SPACE)} constants, {n} experiments per "
          f"run; rotated quadratic, optimum off the probe grid, a categorical dial, a crash region")
    print("  median share of the baseline's gap to the optimum closed after N experiments "
          "[problems' medians min-max]; crashes per run")
    print(f"  {'strategy':22s} " + "  ".join(f"{'N=' + str(m):>20s}" for m in marks) + "  crashes    time")
    for name, kw in strategies.items():
        t = time.perf_counter()
        per_problem: list[list[list[float]]] = []   # problem -> mark -> shares over seeds
        crashes = []
        for prob in set_:
            base = prob.metric(HELD_OUT) - 1.0
            shares: list[list[float]] = [[] for _ in marks]
            for seed in range(seeds):
                trace = run_once(kw, seed, n, HELD_OUT, prob.metric)
                for k, m in enumerate(marks):
                    shares[k].append((base - (trace[m - 1][1] - 1.0)) / base)
                crashes.append(trace[-1][2])
            per_problem.append(shares)
        cells = []
        for k in range(len(marks)):
            medians = [statistics.median(pp[k]) for pp in per_problem]
            overall = statistics.median(x for pp in per_problem for x in pp[k])
            cells.append(f"{overall:.2f} [{min(medians):.2f}-{max(medians):.2f}]")
        print(f"  {name:22s} " + "  ".join(f"{c:>20s}" for c in cells)
              + f"  {statistics.mean(crashes):7.1f}  {time.perf_counter() - t:5.1f} s")


def synthetic(seeds: int, n: int) -> None:
    strategies = {"tuner (probes + TPE)": {}, "tuner (TPE, local)": {"probes": False},
                  "tuner (TPE, global)": {"mode": "global", "probes": False},
                  "random search": {"sampler": "random", "mode": "global"}}
    marks = sorted({m for m in (6, 12, 20) if m < n} | {n})
    print(f"synthetic target: {len(SPACE)} constants, {n} experiments per run (baseline included), "
          f"{seeds} seeds, noise sd {NOISE}; baseline true metric {true_metric(TARGET):.4f}, optimum 1.0000")
    print("  median over seeds of the best's true metric after N experiments (the best as the loop saw it)")
    print(f"  {'strategy':22s} " + "  ".join(f"{'N=' + str(m):>17s}" for m in marks) + "    time")
    for name, kw in strategies.items():
        t = time.perf_counter()
        traces = [run_once(kw, seed, n) for seed in range(seeds)]  # the bowl never crashes
        cells = []
        for m in marks:
            seen = statistics.median(tr[m - 1][0] for tr in traces)
            true = statistics.median(tr[m - 1][1] for tr in traces)
            cells.append(f"{true:.4f} ({seen:.4f})")
        print(f"  {name:22s} " + "  ".join(f"{c:>17s}" for c in cells) + f"  {time.perf_counter() - t:5.1f} s")


def train(experiments: int, budget: float) -> None:
    """The tuner on the real train.py through the CLI (needs the lead's CLI and a prepared corpus)."""
    tag = f"bench-tuner-{time.strftime('%Y%m%d-%H%M%S')}"
    cmd = ["autoresearch-nb", "run", "--tag", tag, "--agent", "tuner", "--max-experiments", str(experiments),
           "--time-budget", str(budget)]
    print("$", " ".join(cmd), flush=True)
    t = time.perf_counter()
    code = subprocess.call(cmd, cwd=ROOT)
    print(f"exit {code} after {time.perf_counter() - t:.0f} s")
    out = subprocess.run(["autoresearch-nb", "results", "--tag", tag, "--format", "json"], cwd=ROOT,
                         capture_output=True, text=True)
    try:
        rows = json.loads(out.stdout)
    except ValueError:
        print(out.stdout, out.stderr)
        return
    rows = rows if isinstance(rows, list) else rows.get("experiments", rows.get("data", []))
    ran = [r for r in rows if r.get("metric") is not None]
    if not ran:
        print("no experiment produced a metric")
        return
    base = min(ran, key=lambda r: r.get("number", 0))
    best = min((r for r in ran if r.get("status") == "keep"), key=lambda r: r["metric"], default=base)
    print(f"train.py, {len(rows)} experiments at {budget:g} s: baseline val_bpb {base['metric']:.4f}, "
          f"best {best['metric']:.4f} (#{best.get('number')}: {best.get('description')})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--experiments", type=int, default=30)
    ap.add_argument("--problems", type=int, default=4, help="held-out problems (0: the bowl only)")
    ap.add_argument("--train", action="store_true", help="also run the tuner on train.py through the CLI")
    ap.add_argument("--train-experiments", type=int, default=10)
    ap.add_argument("--time-budget", type=float, default=60.0)
    args = ap.parse_args()
    synthetic(args.seeds, args.experiments)
    if args.problems:
        held_out(args.seeds, args.experiments, args.problems)
    if args.train:
        train(args.train_experiments, args.time_budget)


if __name__ == "__main__":
    main()
