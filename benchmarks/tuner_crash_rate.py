"""The tuner's crash rate over a real campaign, train.py before and after the width rounding (``model_dim``).

Before, a width that was not a multiple of HEAD_DIM (DEPTH * ASPECT_RATIO) crashed with a tensor size mismatch,
and tuner campaigns hit such shapes. For each version this makes a throwaway git repository holding that
train.py and program.md, runs ``autoresearch-nb run --agent tuner`` through the real CLI for a number of
experiments at a short budget (same tuner seed for both, verification off: the old file does not export), and
counts the experiments whose status is ``crash``, with the first line of each crash's reason.

    python benchmarks/tuner_crash_rate.py                        # 20 experiments, 2 s budgets, 5b8046b^ vs now
    python benchmarks/tuner_crash_rate.py --experiments 30 --seeds 1 2
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BEFORE = "5b8046b^"  # train.py just before its width was rounded to whole heads (5b8046b)


def source(rev: str) -> str:
    """train.py at ``rev`` ('worktree': the file as it is now)."""
    if rev == "worktree":
        return (ROOT / "train.py").read_text()
    return subprocess.run(["git", "show", f"{rev}:train.py"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def campaign(train_py: str, experiments: int, budget: float, seed: int, work: Path) -> list[dict]:
    """One tuner campaign through the CLI; its experiments as dicts (status, reason, description)."""
    from autoresearch_nb.view import load_results

    repo = work / "repo"
    repo.mkdir(parents=True)
    (repo / "train.py").write_text(train_py)
    (repo / "program.md").write_text((ROOT / "program.md").read_text())
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "baseline"], cwd=repo, check=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "autoresearch_nb.cli", "run", "--tag", "crashes", "--repo", str(repo),
           "--agent", "tuner", "--max-experiments", str(experiments), "--time-budget-s", str(budget),
           "--seed", str(seed), "--verify", "off", "--noise-repeats", "1", "--noise-k", "0"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the campaign failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    df = load_results(repo, "crashes")
    return [{"status": str(s), "reason": str(r or ""), "description": str(d or "")}
            for s, r, d in zip(df["status"], df["reason"], df["description"])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=20, help="experiments per campaign, baseline included")
    parser.add_argument("--budget", type=float, default=2.0, help="training seconds per experiment")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="tuner seeds (one campaign each)")
    parser.add_argument("--before", default=BEFORE, help="git revision of the older train.py")
    parser.add_argument("--after", default="worktree", help="git revision of the newer one (default: the file now)")
    args = parser.parse_args()
    totals = {}
    for label, rev in (("before", args.before), ("after", args.after)):
        text = source(rev)
        rows = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory(prefix="crash-rate-") as tmp:
                rows += campaign(text, args.experiments, args.budget, seed, Path(tmp))
        crashes = [r for r in rows if r["status"] == "crash"]
        totals[label] = (len(crashes), len(rows))
        counts = Counter(r["status"] for r in rows)
        print(f"{label:>6} ({rev}): {len(crashes)} of {len(rows)} experiments crashed "
              f"({100 * len(crashes) / max(1, len(rows)):.0f} %) | statuses: "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), flush=True)
        for r in crashes:
            print(f"         crash: {r['description'][:60]} | {r['reason'].splitlines()[0][:100] if r['reason'] else ''}")
    (b, nb), (a, na) = totals["before"], totals["after"]
    print(f"crash rate: before {b}/{nb} ({100 * b / max(1, nb):.0f} %), after {a}/{na} ({100 * a / max(1, na):.0f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
