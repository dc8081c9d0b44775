"""Experiments per hour with 1 and 2 workers, local executor and Ray, on a sleep-bound target.

    python benchmarks/parallel_throughput.py [--experiments 8] [--sleep 2.0] [--no-ray]

The target sleeps (so two workers are not fighting for this machine's 2 cores) and prints a score; the agent
proposes changes that never improve, so no keep makes the others stale and every worker stays busy. Each
configuration first runs one untimed experiment per worker (Ray's worker processes start and import on first
use). Prints experiments/hour per configuration, the speed-up of 2 workers over 1 (goal >= 1.8x), and Ray's
start-up time and the memory of its processes. "ray, 1 worker" runs through the Ray executor too.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoresearch_nb import Edit, Loop, Proposal  # noqa: E402

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


def measure(workers: int, executor: str, n: int, sleep: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for cmd in (["init", "-q"], ["config", "user.email", "b@b"], ["config", "user.name", "b"]):
            subprocess.run(["git", *cmd], cwd=root, check=True)
        (root / "train.py").write_text(TARGET.format(sleep=sleep))
        subprocess.run(["git", "add", "."], cwd=root, check=True)
        subprocess.run(["git", "commit", "-qm", "init"], cwd=root, check=True)
        loop = Loop.open(root, tag="b", agent=Worse(), metric="score", time_budget_s=5, noise_repeats=1,
                         noise_k=0, workers=workers, executor=executor)
        loop.baseline()
        loop.optimize(n=workers)  # warm-up, untimed: Ray starts and imports its worker processes (~3 s each)
        t0 = time.perf_counter()
        loop.optimize(n=n)
        took = time.perf_counter() - t0
        loop.close()
    return n / took * 3600


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
    args = ap.parse_args()
    rows = []
    for executor in ("local",) + (() if args.no_ray else ("ray",)):
        if executor == "ray":
            from autoresearch_nb.ray_executor import start_ray
            t0 = time.perf_counter()
            start_ray(num_cpus=2)
            startup = time.perf_counter() - t0
            print(f"ray: start-up {startup:.1f} s, memory of its processes {ray_memory_mb():.0f} MB RSS")
        one = measure(1, executor, args.experiments, args.sleep)
        two = measure(2, executor, args.experiments, args.sleep)
        rows.append((executor, one, two))
    print(f"{'executor':<10}{'1 worker':>14}{'2 workers':>14}{'speed-up':>10}   (experiments/hour, "
          f"{args.experiments} experiments of {args.sleep:g} s)")
    for executor, one, two in rows:
        print(f"{executor:<10}{one:>14.0f}{two:>14.0f}{two / one:>9.2f}x")


if __name__ == "__main__":
    main()
