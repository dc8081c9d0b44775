"""The noise floor of the baseline on each budget clock, quiet and beside a CPU-bound neighbour, across seeds
and at one fixed seed.

    python benchmarks/clock_noise.py [--budget 30] [--runs 10] [--out benchmarks/data/clock_noise.csv]
    python benchmarks/clock_noise.py --budget 20 --clocks flops --seeding fixed,varied \
        --out benchmarks/data/clock_repeat.csv --context "curve_table.py running beside"
    python benchmarks/clock_noise.py --report          # the figures from the saved rows only

``--seeding fixed``: every run at seed 42 (what repeats a run exactly: the machine's part of the spread);
``varied``: seed i for run i (the seed's part added). ``--context`` is stored with each row: say what else ran.

Runs the repository's train.py as the loop does (``autoresearch_nb.runner.Run``: the loop's own measure of the
process tree on the clock), ``--runs`` seeds x 4 conditions: ``wall`` or ``cpu`` clock, quiet or beside one
neighbour. The neighbour is fixed: one single-threaded process multiplying 512x512 float32 matrices with numpy
(``OMP_NUM_THREADS=1``) for the whole run, i.e. one of this machine's cores busy with a memory-touching load. Seeds
are paired across conditions (seed i in every condition) and run seed by seed, so an interrupted measurement
stays balanced. Each finished run is appended to the CSV at once; a second call skips what is there (resumable).

Prints per condition: runs, σ of val_bpb (sample std), mean steps and their spread, mean wall seconds; then
σ(neighbour)/σ(quiet) per clock with a 90 % bootstrap interval (10 runs cannot tell a 2x ratio of σ from noise
without one). The goal (issue 24): on the cpu clock the ratio is within 2x.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIELDS = ("clock", "neighbour", "seed", "val_bpb", "num_steps", "training_seconds", "run_seconds", "wall_s",
          "budget", "threads", "torch", "machine", "seeding", "context")
FIXED_SEED = 42
NEIGHBOUR = ("import numpy as np\na = np.random.rand(512, 512).astype('float32')\n"
             "while True:\n    a = (a @ a) / 512.0\n")


def start_neighbour() -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", NEIGHBOUR], env=env, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def one_run(clock: str, seed: int, budget: float, threads: int) -> dict:
    from autoresearch_nb.runner import Run, scrub_env
    env = {**scrub_env(), "AUTORESEARCH_BUDGET_CLOCK": clock, "AUTORESEARCH_THREADS": str(threads),
           "AUTORESEARCH_SEED": str(seed), "AUTORESEARCH_TIME_BUDGET": f"{budget:g}", "AUTORESEARCH_DEVICE": "cpu",
           "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="clock-noise-") as cwd:
        result = Run(f"python {ROOT / 'train.py'}", cwd, Path(cwd) / "run.log", timeout_s=budget * 4 + 120,
                     env=env, clock=clock, threads=threads).wait()
        if result.exit_code != 0:
            raise SystemExit(f"train.py failed ({result.error}):\n{Path(cwd, 'run.log').read_text()[-3000:]}")
    s = result.summary
    return {"val_bpb": s["val_bpb"], "num_steps": s["num_steps"], "training_seconds": s["training_seconds"],
            "run_seconds": result.run_seconds, "wall_s": round(result.wall_s, 2)}


def load(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:  # rows from before the fixed-seed condition: seeds varied
        r["seeding"] = r.get("seeding") or "varied"
        r["context"] = r.get("context") or ""
    return rows


def bootstrap_ratio(a: list[float], b: list[float], rounds: int = 4000, seed: int = 0) -> tuple[float, float]:
    """90 % interval of std(a) / std(b), resampling each group."""
    import random
    rng = random.Random(seed)
    ratios = []
    for _ in range(rounds):
        ra = [rng.choice(a) for _ in a]
        rb = [rng.choice(b) for _ in b]
        sb = statistics.stdev(rb) if len(set(rb)) > 1 else 0.0
        if sb > 0:
            ratios.append(statistics.stdev(ra) / sb)
    ratios.sort()
    if not ratios:
        return float("nan"), float("nan")
    return ratios[int(0.05 * len(ratios))], ratios[int(0.95 * len(ratios)) - 1]


def report(rows: list[dict]) -> None:
    if not rows:
        print("no rows yet")
        return
    first = rows[0]
    print(f"machine: {first['machine']} | torch {first['torch']} | budget {first['budget']} s | threads "
          f"{first['threads']} | neighbour: one numpy 512x512 float32 matmul loop, 1 thread")
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["clock"], r["neighbour"], r["seeding"]), []).append(r)
    contexts = sorted({r["context"] for r in rows if r["context"]})
    if contexts:
        print("context: " + "; ".join(contexts))
    print(f"{'clock':5} {'neighbour':9} {'seeds':6} {'runs':>4} {'sigma':>8} {'range':>7} {'mean bpb':>9} "
          f"{'steps':>11} {'wall s':>7}")
    for (clock, nb, seeding), rs in sorted(groups.items()):
        bpb = [float(r["val_bpb"]) for r in rs]
        steps = [float(r["num_steps"]) for r in rs]
        sigma = statistics.stdev(bpb) if len(bpb) > 1 else float("nan")
        spread = statistics.stdev(steps) if len(steps) > 1 else 0.0
        print(f"{clock:5} {nb:9} {seeding:6} {len(rs):4d} {sigma:8.4f} {max(bpb) - min(bpb):7.4f} "
              f"{statistics.mean(bpb):9.4f} "
              f"{statistics.mean(steps):6.0f}±{spread:<4.0f} {statistics.mean(float(r['wall_s']) for r in rs):7.1f}")
    for clock, seeding in sorted({(c, sd) for c, _, sd in groups}):
        quiet = [float(r["val_bpb"]) for r in groups.get((clock, "quiet", seeding), [])]
        busy = [float(r["val_bpb"]) for r in groups.get((clock, "busy", seeding), [])]
        if len(quiet) > 1 and len(busy) > 1 and statistics.stdev(quiet) > 0:
            lo, hi = bootstrap_ratio(busy, quiet)
            print(f"{clock} clock, {seeding} seeds: sigma beside the neighbour / quiet = "
                  f"{statistics.stdev(busy) / statistics.stdev(quiet):.2f} (90 % bootstrap {lo:.2f}-{hi:.2f}), "
                  f"mean val_bpb moves {statistics.mean(busy) - statistics.mean(quiet):+.4f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "data" / "clock_noise.csv")
    parser.add_argument("--report", action="store_true", help="print the figures of the saved rows only")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop after this long (resume later)")
    parser.add_argument("--clocks", default="cpu,wall", help="comma-separated: cpu, wall, flops")
    parser.add_argument("--seeding", default="varied", help="comma-separated: varied (seed i), fixed (seed 42)")
    parser.add_argument("--neighbours", default="quiet,busy", help="comma-separated: quiet, busy")
    parser.add_argument("--context", default="", help="what else ran on the machine (stored with each row)")
    args = parser.parse_args()
    clocks, seedings = args.clocks.split(","), args.seeding.split(",")
    neighbours = args.neighbours.split(",")
    rows = load(args.out)
    if args.report:
        report(rows)
        return
    import torch
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["clock"], r["neighbour"], r["seeding"], int(r["seed"])) for r in rows}
    started = time.monotonic()
    new = not args.out.is_file()
    if not new and "seeding" not in open(args.out).readline():  # an older file: rewrite it with the new columns
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    with open(args.out, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        for seed in range(1, args.runs + 1):
            for clock, nb, seeding in [(c, n, sd) for c in clocks for n in neighbours for sd in seedings]:
                if True:
                    if (clock, nb, seeding, seed) in done:
                        continue
                    if args.max_minutes and time.monotonic() - started > 60 * args.max_minutes:
                        print("time's up: run again to go on")
                        report(load(args.out))
                        return
                    neighbour = start_neighbour() if nb == "busy" else None
                    try:
                        time.sleep(1.0 if neighbour else 0.0)  # the neighbour is up before the run starts
                        got = one_run(clock, FIXED_SEED if seeding == "fixed" else seed, args.budget, args.threads)
                    finally:
                        if neighbour is not None:
                            stop(neighbour)
                    row = {"clock": clock, "neighbour": nb, "seed": seed, **got, "budget": args.budget,
                           "threads": args.threads, "torch": torch.__version__,
                           "machine": f"{platform.machine()} {os.cpu_count()} cpus", "seeding": seeding,
                           "context": args.context}
                    writer.writerow(row)
                    f.flush()
                    print(f"{clock:5} {nb:5} {seeding:6} run {seed:2d}: val_bpb {got['val_bpb']:.4f} steps {got['num_steps']} "
                          f"wall {got['wall_s']:.1f}s", flush=True)
    report(load(args.out))


if __name__ == "__main__":
    main()
