"""The loop's own overhead per experiment: everything but the subprocess (git, store, parsing, events).

    python benchmarks/loop_overhead.py [--experiments 30]

Runs a trivial target (prints a summary and exits) through Loop.step() with an in-process agent that changes
one constant each time, alternately better and worse (so both keep and discard paths are measured), and
prints the median and p90 overhead and the share of wall time spent inside the subprocess. Goal: median
<= 0.3 s on a 2-core machine.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoresearch_nb import Edit, Loop, Proposal  # noqa: E402

TARGET = """\
X = 100
print("step 1 | loss: 1.0")
print("---")
print(f"score: {abs(X - 37)}")
"""


class Walker:
    """Moves X one unit per proposal, toward 37 on even steps and away on odd ones."""

    name = "walker"

    def __init__(self) -> None:
        self.i = 0

    def propose(self, context):
        current = int(context.source.split("X = ")[1].split("\n")[0])
        self.i += 1
        new = current - 1 if self.i % 2 else current + 1 + self.i  # a fresh value each time: no duplicates
        return Proposal(f"X {current} -> {new}", edits=(Edit(f"X = {current}", f"X = {new}"),))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiments", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for cmd in (["init", "-q"], ["config", "user.email", "b@b"], ["config", "user.name", "b"]):
            subprocess.run(["git", *cmd], cwd=root, check=True)
        (root / "train.py").write_text(TARGET)
        subprocess.run(["git", "add", "."], cwd=root, check=True)
        subprocess.run(["git", "commit", "-qm", "init"], cwd=root, check=True)
        loop = Loop.open(root, tag="bench", agent=Walker(), metric="score", time_budget_s=5)
        loop.baseline()
        overheads, walls, insides = [], [], []
        for _ in range(args.experiments):
            t0 = time.perf_counter()
            exp = loop.step()
            wall = time.perf_counter() - t0
            inside = exp.wall_seconds or 0.0
            overheads.append(wall - inside)
            walls.append(wall)
            insides.append(inside)
        statuses = [e.status.value for e in loop.experiments[1:]]
        loop.close()
    overheads.sort()
    print(f"experiments: {len(overheads)} (keep {statuses.count('keep')}, discard {statuses.count('discard')})")
    print(f"overhead per experiment: median {statistics.median(overheads):.3f} s, "
          f"p90 {overheads[int(0.9 * (len(overheads) - 1))]:.3f} s, max {overheads[-1]:.3f} s (goal <= 0.300 s)")
    print(f"subprocess time per experiment: median {statistics.median(insides):.3f} s")
    print(f"share of wall time inside the subprocess: {sum(insides) / sum(walls):.1%}")


if __name__ == "__main__":
    main()
