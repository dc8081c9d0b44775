"""What does the live dashboard cost the science? The kernel's own CPU seconds (this process: the loop, the
event bus, the dashboard's handlers and its render thread; never the training subprocess) per second of
training, with the widget dashboard attached to a real run of the default train.py, against the same run with no
dashboard, measured side by side (alternating) on this machine.

Goal (issue 16): the dashboard's share under 2 % of one core per core the training run uses. No browser is
counted: the widgets are built and updated as in a kernel, with no frontend drawing them.

    python benchmarks/dashboard_cost.py                # 2 pairs of 20 s runs
    python benchmarks/dashboard_cost.py --budget 30 --pairs 3
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from autoresearch_nb import Loop  # noqa: E402


def _repo(path: Path) -> Path:
    path.mkdir(parents=True)
    shutil.copy(ROOT / "train.py", path / "train.py")
    (path / "program.md").write_text("# Program\n\nLower val_bpb.\n")
    (path / ".gitignore").write_text(".autoresearch/\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    for args in (["init", "-q", "-b", "main"], ["config", "user.name", "bench"],
                 ["config", "user.email", "bench@example.invalid"], ["add", "-A"], ["commit", "-qm", "target"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True)
    return path


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class TreeCPU:
    """The CPU seconds of every process below this one, sampled 4 times a second while a run goes. getrusage's
    children count only what was reaped up to us, and a run in the sandbox is reaped by bubblewrap's own init:
    the training's CPU never reached it (a run reading 0.08 cores)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.25):
            for child in me.children(recursive=True):
                try:
                    with child.oneshot():
                        t = child.cpu_times()
                        self.seen[(child.pid, child.create_time())] = t.user + t.system
                except psutil.Error:
                    continue

    def __enter__(self) -> "TreeCPU":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        return sum(self.seen.values())


def one_run(base: Path, name: str, budget: float, dashboard: bool) -> dict[str, float]:
    """Run the baseline of a fresh run; returns own CPU s, child CPU s and training seconds."""
    repo = _repo(base / name)
    me = psutil.Process()
    loop = Loop.open(repo, tag="bench", agent="queue", time_budget_s=budget, noise_repeats=1)
    dash = None
    try:
        if dashboard:
            from autoresearch_nb.dashboard.widgets import Dashboard

            dash = Dashboard(loop, live=True)   # render thread on, as in JupyterLab
        own0, kids0, t0 = sum(me.cpu_times()[:2]), _children_cpu(), time.monotonic()
        with TreeCPU() as tree:
            exp = loop.baseline()
        own, wall = sum(me.cpu_times()[:2]) - own0, time.monotonic() - t0
        # the larger of the two: the sampler misses each process's last quarter second, rusage what bwrap reaped
        kids = max(_children_cpu() - kids0, tree.seconds)
    finally:
        if dash is not None:
            dash.close()
        loop.close()
    train_s = float(exp.summary.get("training_seconds") or exp.wall_seconds or budget)
    if exp.metric is None:
        raise SystemExit(f"the run did not finish: {exp.status} {exp.reason}")
    return {"own": own, "kids": kids, "wall": wall, "train": train_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=20.0, help="training seconds per run")
    parser.add_argument("--pairs", type=int, default=2, help="runs with and without the dashboard, alternating")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="dashcost-"))
    rows: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    try:
        for i in range(args.pairs):
            for with_dash in (False, True):
                r = one_run(base, f"r{i}{int(with_dash)}", args.budget, with_dash)
                rows[with_dash].append(r)
                print(f"{'dashboard' if with_dash else 'bare     '} run {i}: kernel CPU {r['own']:.2f} s, "
                      f"training subprocess CPU {r['kids']:.1f} s, wall {r['wall']:.1f} s, "
                      f"training {r['train']:.1f} s", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    def per_train_s(key: str, with_dash: bool) -> float:
        return sum(r[key] for r in rows[with_dash]) / sum(r["wall"] for r in rows[with_dash])

    bare, dash = per_train_s("own", False), per_train_s("own", True)
    cores = per_train_s("kids", False)   # cores the run keeps busy (its CPU seconds per wall second)
    extra = dash - bare
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; no browser counted")
    print(f"kernel CPU s per wall second of the run (startup, training, eval): bare {bare:.4f}, with dashboard {dash:.4f} "
          f"(ratio {dash / bare if bare else float('nan'):.2f}x)")
    print(f"dashboard's own cost: {100 * extra:.2f} % of one core; the run uses {cores:.2f} cores; "
          f"per core used: {100 * extra / max(cores, 1e-9):.2f} % (goal < 2 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
