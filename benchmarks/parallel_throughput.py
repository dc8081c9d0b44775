"""Experiments per hour with 1 and 2 workers: the easy case (sleep, nothing kept) beside the honest one.

    python benchmarks/parallel_throughput.py [--experiments 8] [--sleep 2.0] [--no-ray]
    python benchmarks/parallel_throughput.py --no-ray --work 300      # small scale, about 5 minutes on 2 cores

Easy case (the upper bound): the target sleeps (two workers do not fight for the cores) and the agent
proposes changes that never improve, so no keep makes the others stale and every worker stays busy. Each
configuration first runs one untimed experiment per worker (Ray's worker processes start and import on first
use). Goal: a speed-up of 2 workers over 1 of >= 1.8x.

Honest case (what a user gets): a CPU-bound target (``--work`` float32 matmuls with numpy, a fixed amount of
work, so a core shared by two workers shows as a slower run; each worker gets its share of OMP threads), the
queue agent with a prepared queue.json of 12 changes (4 improve by ``--effect`` σ, 5 are null, 3 make it
worse), the default noise rule (3 baseline repeats, k = 2, confirmation runs), timed from the baseline to the
end of the queue. So CPU contention, stale results re-applied onto the new best and re-run, and confirmation
runs all count. Columns: wall, proposals decided per hour (the queue's 12, re-applied rows excluded), training
runs (repeats, confirmations and re-applied rows included), s/run (median seconds of matmuls in a run: the
contention itself; one worker gets every core's OMP threads, two get one each), keeps, stale results, re-applied rows,
confirmation runs, and how many of the 4 real gains the final best truly has (the target's code is known).
Prints Ray's start-up time and the memory of its processes when Ray runs.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoresearch_nb import Edit, Loop, Proposal, Status  # noqa: E402

TARGET = """\
import time
SLEEP = {sleep}
X = 0
time.sleep(SLEEP)
print("step 1 | loss: 1.0")
print("---")
print(f"score: {{1 + abs(X)}}")
"""


class Worse:
    """Every proposal makes X a new nonzero value: a valid run that is never kept."""

    name = "worse"

    def __init__(self) -> None:
        self.i = 0

    def propose(self, context):
        self.i += 1
        return Proposal(f"X = {self.i}", edits=(Edit("X = 0", f"X = {self.i}"),))


def _repo(tmp: str, files: dict[str, str]) -> Path:
    root = Path(tmp)
    for cmd in (["init", "-q"], ["config", "user.email", "b@b"], ["config", "user.name", "b"]):
        subprocess.run(["git", *cmd], cwd=root, check=True)
    for name, text in files.items():
        (root / name).write_text(text)
    subprocess.run(["git", "add", "train.py"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=root, check=True)
    return root


def measure(workers: int, executor: str, n: int, sleep: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        root = _repo(tmp, {"train.py": TARGET.format(sleep=sleep)})
        loop = Loop.open(root, tag="b", agent=Worse(), metric="score", time_budget_s=5, noise_repeats=1,
                         noise_k=0, workers=workers, executor=executor)
        loop.baseline()
        loop.optimize(n=workers)  # warm-up, untimed: Ray starts and imports its worker processes (~3 s each)
        t0 = time.perf_counter()
        loop.optimize(n=n)
        took = time.perf_counter() - t0
        loop.close()
    return n / took * 3600


# -- the honest case ---------------------------------------------------------------------------------------
CPU_TARGET = """\
import os
import random
import time
import numpy as np

WORK = {work}            # float32 matmuls of 256x256: a fixed amount of work, not a fixed time
SIGMA = 0.01
NOISE_SALT = {salt}
{dials}
seed = int(os.environ.get("AUTORESEARCH_SEED", "42"))
rng = np.random.default_rng(0)
m = rng.standard_normal((256, 256)).astype(np.float32) / 16
x = np.eye(256, dtype=np.float32)
t0 = time.perf_counter()
for i in range(1, WORK + 1):
    x = np.tanh(x @ m + 0.01)
    if i % max(1, WORK // 5) == 0:
        print(f"step {{i}} | loss: {{float(np.abs(x).mean()):.4f}}", flush=True)
gain = {effect} * (G1 + G2 + G3 + G4) - {effect} * (W1 + W2 + W3)
dials = (G1, G2, G3, G4, N1, N2, N3, N4, N5, W1, W2, W3)
noise = random.Random(f"{{NOISE_SALT}}/{{dials}}/{{seed}}").gauss(0.0, SIGMA)
print("---")
print(f"val_bpb: {{1.0 - gain * SIGMA + noise:.9f}}")
print(f"compute_s: {{time.perf_counter() - t0:.3f}}")
"""
GAINS, NULLS, WORSE = ("G1", "G2", "G3", "G4"), ("N1", "N2", "N3", "N4", "N5"), ("W1", "W2", "W3")
# Interleaved as an agent would propose them: a real gain now and then among nulls and regressions.
ORDER = ("N1", "G1", "W1", "N2", "G2", "N3", "W2", "G3", "N4", "W3", "G4", "N5")


def cpu_repo(tmp: str, work: int, effect: float, salt: int = 7) -> Path:
    dials = "\n".join(f"{d} = 0" for d in (*GAINS, *NULLS, *WORSE))
    queue = [{"description": f"{'gain' if d in GAINS else 'null' if d in NULLS else 'worse'} {d}",
              "edits": [{"search": f"{d} = 0", "replace": f"{d} = 1"}]} for d in ORDER]
    return _repo(tmp, {"train.py": CPU_TARGET.format(work=work, dials=dials, effect=effect, salt=salt),
                       "queue.json": json.dumps(queue, indent=1)})


def measure_honest(workers: int, executor: str, work: int, effect: float, salt: int,
                   threads: str | None = None) -> dict:
    """One campaign over the whole queue, baseline repeats included, timed from start to end.

    ``threads`` caps a single worker's OMP threads through the environment the runs inherit (unset, two
    workers get their share of the cores from the loop: ``boundary.thread_env``)."""
    saved = os.environ.get("OMP_NUM_THREADS")
    if threads:
        os.environ["OMP_NUM_THREADS"] = threads
    try:
        return _campaign(workers, executor, work, effect, salt)
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved


def _campaign(workers: int, executor: str, work: int, effect: float, salt: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = cpu_repo(tmp, work, effect, salt)
        loop = Loop.open(root, tag="h", agent="queue", time_budget_s=60, timeout_s=600, workers=workers,
                         executor=executor)
        t0 = time.perf_counter()
        loop.baseline()
        loop.optimize()
        took = time.perf_counter() - t0
        exps = loop.experiments
        best = loop.best
        floor = (loop.noise or {}).get("sigma") or 0.0
        loop.close()
    proposals = [e for e in exps[1:] if not e.description.startswith("re-applied")]
    decided = [e for e in proposals if e.status in (Status.KEEP, Status.DISCARD, Status.CRASH)]
    content = best.content or ""
    true_gains = sum(bool(re.search(rf"^{d} = 1$", content, re.M)) for d in GAINS)
    compute = [e.summary.get("compute_s") for e in exps if e.summary and e.summary.get("compute_s")]
    return {"wall": took, "compute_s": statistics.median(compute) if compute else float("nan"), "per_hour": len(decided) / took * 3600, "proposals": len(decided),
            "runs": sum(max(len(e.runs), 1) for e in exps if e.status != Status.PROPOSED),
            "keeps": sum(e.status == Status.KEEP for e in exps[1:]),
            "stale": sum("stale parent" in (e.reason or "") for e in exps),
            "reapplied": sum(e.description.startswith("re-applied") for e in exps),
            "confirmations": sum(max(len(e.runs) - 1, 0) for e in exps[1:]),
            "true_gains": true_gains, "sigma_ratio": floor / 0.01, "nulls_kept": sum(bool(re.search(rf"^{d} = 1$", content, re.M))
                                                       for d in (*NULLS, *WORSE))}


def ray_memory_mb() -> float:
    import psutil
    total = 0
    for p in psutil.process_iter(["name", "cmdline", "memory_info"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "ray" in (p.info["name"] or "") or "/ray/" in cmd or "raylet" in cmd or "gcs_server" in cmd:
            total += p.info["memory_info"].rss if p.info["memory_info"] else 0
    return total / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiments", type=int, default=8)
    ap.add_argument("--sleep", type=float, default=2.0)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--work", type=int, default=600, help="matmuls per run in the honest case")
    ap.add_argument("--effect", type=float, default=4.0, help="size of each real gain, in noise σ")
    ap.add_argument("--only", choices=("easy", "honest"), help="run one case only")
    ap.add_argument("--noise-salt", type=int, default=7,
                    help="the honest target's noise draws; 7: the baseline's 3 runs give a floor of 1.0σ. "
                         "0 gives 0.11σ, and the rule then keeps nulls: the floor from 3 runs is rough")
    args = ap.parse_args()
    rows, honest = [], []
    for executor in ("local",) + (() if args.no_ray else ("ray",)):
        if executor == "ray":
            from autoresearch_nb.ray_executor import start_ray
            t0 = time.perf_counter()
            start_ray(num_cpus=2)
            startup = time.perf_counter() - t0
            print(f"ray: start-up {startup:.1f} s, memory of its processes {ray_memory_mb():.0f} MB RSS")
        if args.only != "honest":
            one = measure(1, executor, args.experiments, args.sleep)
            two = measure(2, executor, args.experiments, args.sleep)
            rows.append((executor, one, two))
        if args.only != "easy":
            # One worker as the loop runs it (its run may use every core), one worker held to one thread (the
            # fair reference for the speed-up), two workers (one thread each, from the executor).
            for workers, threads in ((1, None), (1, "1"), (2, None)):
                r = measure_honest(workers, executor, args.work, args.effect, args.noise_salt, threads)
                honest.append((executor, f"{workers}" + (f" ({threads} thr)" if threads else ""), r))
    if rows:
        print(f"\neasy case: sleep-bound, nothing kept ({args.experiments} experiments of {args.sleep:g} s)")
        print(f"{'executor':<10}{'1 worker':>14}{'2 workers':>14}{'speed-up':>10}   (experiments/hour)")
        for executor, one, two in rows:
            print(f"{executor:<10}{one:>14.0f}{two:>14.0f}{two / one:>9.2f}x")
    if honest:
        print(f"\nhonest case: CPU-bound ({args.work} matmuls/run), queue of 12 (4 gains of {args.effect:g}σ, "
              f"5 null, 3 worse), default noise rule, {os.cpu_count()} cores; measured floor "
              f"{honest[0][2]['sigma_ratio']:.2f}σ")
        print(f"{'executor':<10}{'workers':>12}{'wall s':>9}{'s/run':>7}{'prop/h':>9}{'runs':>6}{'keeps':>6}{'stale':>6}"
              f"{'re-appl':>8}{'confirm':>8}{'gains':>7}{'bad kept':>9}{'speed-up':>10}")
        base = {ex: r["per_hour"] for ex, w, r in honest if w == "1 (1 thr)"}
        for executor, workers, r in honest:
            print(f"{executor:<10}{workers:>12}{r['wall']:>9.1f}{r['compute_s']:>7.2f}{r['per_hour']:>9.0f}{r['runs']:>6}{r['keeps']:>6}"
                  f"{r['stale']:>6}{r['reapplied']:>8}{r['confirmations']:>8}{r['true_gains']:>5}/4"
                  f"{r['nulls_kept']:>9}{r['per_hour'] / base[executor]:>9.2f}x")
        print("  speed-up: against one worker held to one thread")


if __name__ == "__main__":
    main()
