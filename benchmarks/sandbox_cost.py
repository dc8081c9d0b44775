"""The sandbox's cost per experiment, against the git-worktree way it replaces, measured side by side.

    python benchmarks/sandbox_cost.py [--experiments 30]

On a clone of this repository, each experiment commits a one-line change to train.py, then measures:
- ours: ``rundir.refresh`` to the new commit + ``rundir.changes`` after the "run" + the exec wrapper's own
  start-up (``wrap(["true"])`` minus ``true`` alone) in each sandbox mode that works here (bubblewrap with
  Landlock inside, Landlock alone), side by side in the same loop;
- reference: ``git checkout --detach -f`` of the commit in a worktree + ``git status --porcelain`` (what the
  loop did before).
Prints medians and p90s in ms and the ratio ours / reference. Goals: under 50 ms an experiment with Landlock,
under 100 ms with bubblewrap.

    python benchmarks/sandbox_cost.py --train-budget 60 [--pairs 2] [--mode auto]

also runs the default train.py (CPU, a corpus of this package's sources) inside and outside the sandbox,
alternating, and prints each val_bpb: the same within noise means the boundary does not change the result.
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

from autoresearch_nb import rundir, sandbox  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def stats(values: list[float]) -> str:
    values = sorted(values)
    return f"median {statistics.median(values):6.1f} ms  p90 {values[int(0.9 * (len(values) - 1))]:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=30)
    parser.add_argument("--train-budget", type=float, default=0, help="also compare train.py's val_bpb (s)")
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--mode", default="auto", choices=sandbox.MODES, help="the mode of --train-budget's runs")
    args = parser.parse_args()
    if args.train_budget:
        compare_val_bpb(args.train_budget, args.pairs, args.mode)
        return
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        repo = tmp / "repo"
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(repo)], check=True)
        git(repo, "config", "user.name", "bench")
        git(repo, "config", "user.email", "bench@example.com")
        files = len(git(repo, "ls-files").splitlines())
        worktree = tmp / "wt"
        git(repo, "worktree", "add", "-q", "--detach", str(worktree))
        run = rundir.run_dir_for(repo, "bench", 0, root=tmp / "runs")
        (tmp / "runs" / "w0.tmp").mkdir(parents=True)
        policies = {}
        for mode in ("bubblewrap", "landlock"):
            try:
                policies[mode] = sandbox.policy_for(run, repo=repo, tmp=tmp / "runs" / "w0.tmp", network=False,
                                                    compile_caches=False, mode=mode)
                subprocess.run(sandbox.wrap(["true"], policies[mode]), check=True)
            except (sandbox.SandboxError, subprocess.CalledProcessError) as e:
                print(f"{mode}: not measured ({e})")
                policies.pop(mode, None)
        rundir.refresh(repo, git(repo, "rev-parse", "HEAD").strip(), run)
        ours, refs, build, interp = [], [], [], []
        wrapper: dict[str, list[float]] = {mode: [] for mode in policies}
        for i in range(args.experiments):
            train = repo / "train.py"
            train.write_text(train.read_text() + f"# experiment {i}\n")
            git(repo, "commit", "-qam", f"experiment {i}")
            sha = git(repo, "rev-parse", "HEAD").strip()
            # alternate the order so neither side always runs on a warmer cache
            pair = [("ours", lambda: (rundir.refresh(repo, sha, run), rundir.changes(repo, sha, run))),
                    ("ref", lambda: (git(worktree, "checkout", "-q", "--detach", "-f", sha),
                                     git(worktree, "status", "--porcelain", "-z", "--untracked-files=all")))]
            for name, fn in pair if i % 2 else reversed(pair):
                (ours if name == "ours" else refs).append(timed(fn))
            bare = timed(lambda: subprocess.run(["true"], check=True))
            for mode, policy in policies.items():
                wrapped = timed(lambda: subprocess.run(sandbox.wrap(["true"], policy), check=True))
                wrapper[mode].append(wrapped - bare)
            interp.append(timed(lambda: subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True)) - bare)
            build.append(timed(lambda: sandbox.policy_for(run, repo=repo, network=False, compile_caches=False)))
        print(f"repo: {files} tracked files; {args.experiments} experiments")
        print(f"refresh + changes      {stats(ours)}")
        print(f"a bare `python -I -S -c pass` {stats(interp)}  (the wrapper is one)")
        print(f"reference (checkout + status) {stats(refs)}")
        for mode, times in wrapper.items():
            total = [a + b for a, b in zip(ours, times)]
            goal = 100 if mode == "bubblewrap" else 50
            print(f"{mode:10s} wrapper start-up {stats(times)}; per experiment {stats(total)} (goal < {goal} ms);"
                  f" ratio to reference {statistics.median(total) / statistics.median(refs):.2f}"
                  f"  [{sandbox.describe(policies[mode])}]")
        print(f"policy_for (once per worker, not per experiment) {stats(build)}")


def compare_val_bpb(budget: float, pairs: int, mode: str) -> None:
    import os
    import re
    import shutil
    from autoresearch_nb.harness.corpus import prepare_folder
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        src = tmp / "src"
        shutil.copytree(ROOT / "autoresearch_nb", src, ignore=shutil.ignore_patterns("__pycache__"))
        corpus = prepare_folder(src, tmp / "corpus")
        run = tmp / "runs" / "w0"
        run.mkdir(parents=True)
        (run / "train.py").write_text((ROOT / "train.py").read_text())
        policy = sandbox.policy_for(run, repo=ROOT, tmp=rundir.tmp_for(run), network=False, data=corpus.path,
                                    mode=mode)
        env = {**os.environ, "AUTORESEARCH_TIME_BUDGET": str(budget), "AUTORESEARCH_DATA": str(corpus.path),
               "AUTORESEARCH_DEVICE": "cpu", "PYTHONPATH": str(ROOT)}
        print(f"{sandbox.label(policy)}: {sandbox.describe(policy)}")
        for i in range(pairs):
            for name, argv in (("outside", [sys.executable, "train.py"]),
                               ("inside", sandbox.wrap(["python", "train.py"], policy)))[:: 1 if i % 2 else -1]:
                rundir.tmp_for(run).mkdir(exist_ok=True)
                out = subprocess.run(argv, cwd=run, env=env, capture_output=True, text=True)
                found = re.search(r"^val_bpb:\s+(\S+)", out.stdout, re.M)
                steps = re.search(r"^num_steps:\s+(\S+)", out.stdout, re.M)
                print(f"{name:8s} val_bpb {found.group(1) if found else 'FAILED'}  steps "
                      f"{steps.group(1) if steps else '?'}  (exit {out.returncode})")


if __name__ == "__main__":
    main()
