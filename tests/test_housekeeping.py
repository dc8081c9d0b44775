# python -m pytest tests/test_housekeeping.py -q
"""autoresearch-nb gc on real runs: what goes, what stays (kept, recent, open runs), and that a run resumes."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from autoresearch_nb.housekeeping import human, retained
from autoresearch_nb.records import Experiment, Status
from autoresearch_nb.rundir import run_dir_for

sys.path.insert(0, str(Path(__file__).parent))  # research_repo.py sits beside this file
from research_repo import cli, git, make_repo, queue, run_queue, target  # noqa: E402

# Writes a 200 KB "checkpoint" into its worktree (ignored by the repo's .gitignore), like a training script.
TARGET = target('open("model.pt", "wb").write(b"w" * 200_000)')
QUEUE = queue(("3.0", "2.0"), ("2.0", "9.0"), ("2.0", "5.0"), ("2.0", "4.0"))


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A finished run "a": #0 baseline and #1 kept, #2..#4 discarded."""
    root = make_repo(tmp_path / "r", {"train.py": TARGET, "queue.toml": QUEUE, ".gitignore": "*.pt\n"})
    r = run_queue(root)
    assert r.returncode == 0, r.stderr
    return root


def refs(root: Path) -> set[str]:
    return set(git(root, "for-each-ref", "--format=%(refname)", "refs/autoresearch/a/").split())


def logs(root: Path) -> set[str]:
    return {p.name for p in (root / ".autoresearch" / "logs" / "a").iterdir()}


def test_a_dry_run_lists_and_removes_nothing(repo: Path) -> None:
    before = (refs(repo), logs(repo))
    r = cli("gc", "--repo", str(repo), "--dry-run", "--keep-last", "1", "--keep-days", "0")
    assert r.returncode == 0, r.stderr
    assert "would remove log: " in r.stdout and "would free" in r.stdout
    # 2 experiments' refs and the session's checkout snapshot; the worktree and the run directories
    assert "2 logs" in r.stdout and "3 refs" in r.stdout and "1 worktrees" in r.stdout and "1 run dirs" in r.stdout
    assert (refs(repo), logs(repo)) == before
    assert (run_dir_for(repo, "a", 0) / "model.pt").exists()  # what runs wrote is in their run directory


def test_gc_frees_old_discards_and_the_worktree_and_the_run_resumes(repo: Path) -> None:
    kept = git(repo, "rev-parse", "refs/autoresearch/a/1")
    rows = cli("results", "--repo", str(repo), "--format", "csv").stdout
    r = cli("gc", "--repo", str(repo), "--keep-last", "1", "--keep-days", "0")
    assert r.returncode == 0, r.stderr
    assert refs(repo) == {"refs/autoresearch/a/0", "refs/autoresearch/a/1", "refs/autoresearch/a/4"}
    assert logs(repo) == {"0000.log", "0001.log", "0004.log"}
    assert not (repo / ".autoresearch" / "worktrees" / "a").exists()
    assert "freed " in r.stdout and "2 logs" in r.stdout and "1 worktrees" in r.stdout
    size = re.search(r"1 run dirs \(([\d.]+) KB\)", r.stdout)
    assert size and float(size.group(1)) >= 200_000 / 1024, r.stdout  # the checkpoint in it was counted
    assert not run_dir_for(repo, "a", 0).exists()
    assert git(repo, "rev-parse", "autoresearch/a") == kept  # the branch and the kept commit stay
    assert cli("results", "--repo", str(repo), "--format", "csv").stdout == rows  # the store is untouched
    resumed = run_queue(repo)
    assert resumed.returncode == 0, resumed.stderr
    assert (repo / ".autoresearch" / "worktrees" / "a" / "train.py").exists()
    assert "X = 2.0" in (repo / ".autoresearch" / "worktrees" / "a" / "train.py").read_text()


def test_recent_runs_are_kept_by_default(repo: Path) -> None:
    before = (refs(repo), logs(repo))
    r = cli("gc", "--repo", str(repo))
    assert r.returncode == 0 and "freed 0 B" in r.stdout
    assert (refs(repo), logs(repo)) == before


def test_kept_experiments_stay_even_with_no_retention(repo: Path) -> None:
    r = cli("gc", "--repo", str(repo), "--tag", "a", "--keep-last", "0", "--keep-days", "0")
    assert r.returncode == 0, r.stderr
    assert refs(repo) == {"refs/autoresearch/a/0", "refs/autoresearch/a/1"}
    assert logs(repo) == {"0000.log", "0001.log"}


def test_an_open_run_is_never_touched(repo: Path) -> None:
    from autoresearch_nb.loop import Loop

    loop = Loop.open(repo, tag="a", agent="queue", metric="score")
    try:
        before = (refs(repo), logs(repo))
        r = cli("gc", "--repo", str(repo), "--keep-last", "0", "--keep-days", "0")
        assert r.returncode == 0, r.stderr
        assert "run a: open" in r.stdout and "freed 0 B" in r.stdout
        assert (refs(repo), logs(repo)) == before and (repo / ".autoresearch" / "worktrees" / "a").exists()
    finally:
        loop.close()


def test_an_unknown_tag_is_a_clear_error(repo: Path) -> None:
    r = cli("gc", "--repo", str(repo), "--tag", "nope")
    assert r.returncode == 1 and "no run tagged 'nope'" in r.stderr


def test_human_sizes() -> None:
    assert (human(0), human(1536), human(3 * 1024 ** 3)) == ("0 B", "1.5 KB", "3.0 GB")


def exp(number: int, status: Status, metric: float | None, ended_at: float) -> Experiment:
    return Experiment(number=number, tag="a", status=status, metric=metric, ended_at=ended_at)


def test_retained_keeps_kept_best_last_and_recent() -> None:
    day = 86400.0
    exps = [exp(0, Status.KEEP, 3.0, 0), exp(1, Status.DISCARD, 2.5, 0), exp(2, Status.KEEP, 2.0, 0),
            exp(3, Status.CRASH, None, 0), exp(4, Status.DISCARD, 2.2, 9 * day), exp(5, Status.DISCARD, 2.1, 0),
            exp(6, Status.RUNNING, None, 0)]
    assert retained(exps, keep_last=0, keep_days=2, maximize=False, now=10 * day) == {0, 2, 4, 6}
    assert retained(exps, keep_last=2, keep_days=0, maximize=False, now=10 * day) == {0, 2, 5, 6}
