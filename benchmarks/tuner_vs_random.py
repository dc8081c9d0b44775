"""The tuner against random search, on a cheap noisy target; optionally, the tuner on the real train.py.

    python benchmarks/tuner_vs_random.py                    # synthetic target: seconds
    python benchmarks/tuner_vs_random.py --seeds 20 --experiments 40
    python benchmarks/tuner_vs_random.py --train            # + 10 experiments of train.py at 60 s (~15 min, CPU)

The synthetic target is a Python file whose CAPS hyperparameters set a noisy quadratic bowl (in log units for
learning rates and sizes), with its optimum away from the file's starting values. Each strategy gets the same
space (discovered from the file), the same number of experiments (the baseline included) and the same seeds;
a small loop keeps an experiment when it beats the best so far, as the real loop does. Printed: the median over
seeds of the best metric found (noisy, as the loop saw it) and of its true, noise-free value.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoresearch_nb.agents.base import Context  # noqa: E402
from autoresearch_nb.agents.space import discover  # noqa: E402
from autoresearch_nb.agents.tuner import TunerAgent  # noqa: E402
from autoresearch_nb.config import Config  # noqa: E402
from autoresearch_nb.edits import content_hash  # noqa: E402
from autoresearch_nb.records import Experiment, Status  # noqa: E402

TARGET = '''\
"""A stand-in for train.py: the constants below decide the score (see benchmarks/tuner_vs_random.py)."""

# Hyperparameters
LEARNING_RATE = 0.01
EMBED_LR = 0.05
DEPTH = 4
WIDTH = 2**7
BATCH_SIZE = 2**5
WARMUP_RATIO = 0.1
WEIGHT_DECAY = 0.1
USE_NORM = True
ACTIVATION = "relu"  # choices: relu, gelu, tanh


def main():
    print("---")
'''
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


def run_once(strategy: dict, seed: int, n: int) -> list[tuple[float, float]]:
    """One run of ``n`` experiments (baseline first): (best seen, its true value) after each experiment."""
    config = Config(editable="target.py", seed=seed)
    agent = TunerAgent(config, ROOT, **strategy)
    noise = random.Random(seed)
    source, history, best = TARGET, [], None
    trace = []
    for i in range(n):
        if i == 0:
            content, description = TARGET, "baseline"
        else:
            ctx = Context(program="", editable="target.py", source=source, history=tuple(history), config=config,
                          best=best)
            p = agent.propose(ctx)
            content, description = p.content, p.description
        metric = true_metric(content) + noise.gauss(0, NOISE)
        status = Status.KEEP if best is None or metric < best.metric else Status.DISCARD
        e = Experiment(number=i, tag="bench", status=status, description=description, metric=metric,
                       content=content, content_hash=content_hash(content), agent="baseline" if i == 0 else "tuner")
        history.append(e)
        agent.tell(e)
        if status == Status.KEEP:
            best, source = e, content
        trace.append((best.metric, true_metric(best.content)))
    return trace


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
        traces = [run_once(kw, seed, n) for seed in range(seeds)]
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
    ap.add_argument("--train", action="store_true", help="also run the tuner on train.py through the CLI")
    ap.add_argument("--train-experiments", type=int, default=10)
    ap.add_argument("--time-budget", type=float, default=60.0)
    args = ap.parse_args()
    synthetic(args.seeds, args.experiments)
    if args.train:
        train(args.train_experiments, args.time_budget)


if __name__ == "__main__":
    main()
