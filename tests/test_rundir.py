# Run: python -m pytest tests/test_rundir.py -q
"""Run directories: exports with no .git, refreshed cheaply, compared by content; real git in temp dirs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch_nb import rundir as R
from autoresearch_nb.errors import SandboxError


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str = "c") -> str:
    for rel, text in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitignore").write_text("data/\n")
    (repo / "data").mkdir()
    (repo / "data" / "big.bin").write_text("gitignored data\n")
    return repo


@pytest.fixture
def first(repo):
    return commit(repo, {"train.py": "X = 1\n", "pkg/knobs.py": "K = 1\n", "run.sh": "echo hi\n"})


def test_export_has_the_commit_and_no_git(repo, first, tmp_path):
    run = R.run_dir_for(repo, "t", 0, root=tmp_path / "runs")
    done = R.refresh(repo, first, run)
    assert sorted(done.written) == [".gitignore", "pkg/knobs.py", "run.sh", "train.py"]
    assert (run / "pkg" / "knobs.py").read_text() == "K = 1\n"
    assert not (run / ".git").exists() and not (run / "data").exists()
    assert R.changes(repo, first, run) == []
    r = subprocess.run(["git", "status"], cwd=run, capture_output=True, text=True,
                       env={**os.environ, "GIT_CEILING_DIRECTORIES": str(run.parent)})
    assert r.returncode != 0  # no repository reachable from the run


def test_run_dir_is_outside_the_checkout(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    run = R.run_dir_for(repo, "a/b", 2)
    assert repo not in run.parents and run.name == "w2" and "a_b" in run.parts
    with pytest.raises(SandboxError):
        R.run_dir_for(repo, "t", 0, root=repo / ".autoresearch")


def test_refresh_rewrites_only_what_differs_and_deletes_extras(repo, first, tmp_path):
    run = tmp_path / "run"
    R.refresh(repo, first, run)
    second = commit(repo, {"train.py": "X = 2\n"})
    (run / "out.txt").write_text("a run's output\n")
    (run / "pkg" / "__pycache__").mkdir()
    (run / "pkg" / "__pycache__" / "knobs.cpython-311.pyc").write_bytes(b"stale")
    knobs_inode = (run / "pkg" / "knobs.py").stat().st_ino
    done = R.refresh(repo, second, run)
    assert done.written == ("train.py",)
    assert set(done.deleted) == {"out.txt", "pkg/__pycache__"}
    assert (run / "train.py").read_text() == "X = 2\n" and not (run / "out.txt").exists()
    assert (run / "pkg" / "knobs.py").stat().st_ino == knobs_inode  # untouched
    assert R.refresh(repo, second, run) == R.Refreshed(written=(), deleted=())


def test_refresh_restores_what_a_run_broke(repo, first, tmp_path):
    run = tmp_path / "run"
    R.refresh(repo, first, run)
    outside = tmp_path / "outside"
    outside.mkdir()
    (run / "train.py").unlink()
    os.symlink(outside, run / "train.py")          # a planted link must be replaced, never written through
    (run / "pkg" / "knobs.py").unlink()
    os.mkfifo(run / "pkg" / "knobs.py")            # a FIFO would block a reader forever
    os.chmod(run / "run.sh", 0o755)                # a mode change is a change
    (run / ".git").write_text("gitdir: /nonexistent\n")
    assert R.changes(repo, first, run) == ["pkg/knobs.py", "run.sh", "train.py"]
    assert R.changes(repo, first, run, added=True) == [".git", "pkg/knobs.py", "run.sh", "train.py"]
    R.refresh(repo, first, run)
    assert R.changes(repo, first, run, added=True) == []
    assert list(outside.iterdir()) == [] and (run / "train.py").read_text() == "X = 1\n"


def test_planted_directory_symlink_is_not_followed(repo, first, tmp_path):
    run = tmp_path / "run"
    R.refresh(repo, first, run)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "knobs.py").write_text("the user's file\n")
    import shutil
    shutil.rmtree(run / "pkg")
    os.symlink(victim, run / "pkg")
    assert "pkg/knobs.py" in R.changes(repo, first, run)
    R.refresh(repo, first, run)
    assert (victim / "knobs.py").read_text() == "the user's file\n"
    assert not (run / "pkg").is_symlink() and (run / "pkg" / "knobs.py").read_text() == "K = 1\n"


def test_caches_are_not_changes(repo, first, tmp_path):
    # Fault 15: a run that imports a module leaves __pycache__ (no .gitignore needed to ignore it).
    run = tmp_path / "run"
    R.refresh(repo, first, run)
    (run / ".gitignore").unlink()
    subprocess.run([sys.executable, "-c", "import pkg.knobs"], cwd=run, check=True,
                   env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})
    (run / ".pytest_cache").mkdir()
    assert (run / "pkg" / "__pycache__").is_dir()
    assert R.changes(repo, first, run) == [".gitignore"]
    assert R.changes(repo, first, run, added=True) == [".gitignore"]


def test_changes_finds_edits_deletions_and_commits_a_run_made(repo, first, tmp_path):
    # A run that commits (in a repository of its own) cannot hide its edits: the tree is the reference.
    run = tmp_path / "run"
    R.refresh(repo, first, run)
    (run / "pkg" / "knobs.py").write_text("K = 99\n")
    (run / "run.sh").unlink()
    subprocess.run("git init -q && git add -A && git -c user.name=x -c user.email=x@x commit -qm x", shell=True,
                   cwd=run, check=True, capture_output=True)
    assert R.changes(repo, first, run) == ["pkg/knobs.py", "run.sh"]
    assert git(repo, "rev-parse", "HEAD") == first


def test_include_exposes_gitignored_paths_as_links(repo, first, tmp_path):
    run = tmp_path / "run"
    R.refresh(repo, first, run, include=("data",))
    assert (run / "data").is_symlink() and (run / "data" / "big.bin").read_text() == "gitignored data\n"
    assert R.changes(repo, first, run, include=("data",), added=True) == []
    assert R.refresh(repo, first, run, include=("data",)).deleted == ()
    with pytest.raises(SandboxError, match="tracked"):
        R.refresh(repo, first, run, include=("pkg",))
    with pytest.raises(SandboxError, match="inside the repository"):
        R.refresh(repo, first, run, include=("../elsewhere",))
    R.refresh(repo, first, run)  # no longer included: the link goes
    assert not (run / "data").exists()


def test_symlinks_and_modes_of_the_tree_are_kept(repo, tmp_path):
    (repo / "tool.sh").write_text("#!/bin/sh\necho ok\n")
    os.chmod(repo / "tool.sh", 0o755)
    os.symlink("tool.sh", repo / "alias.sh")
    sha = commit(repo, {"train.py": "X = 3\n"})
    run = tmp_path / "run"
    R.refresh(repo, sha, run)
    assert os.readlink(run / "alias.sh") == "tool.sh" and os.access(run / "tool.sh", os.X_OK)
    assert subprocess.run(["./alias.sh"], cwd=run, capture_output=True, text=True).stdout == "ok\n"
    assert R.changes(repo, sha, run) == []


def test_unreadable_directory_left_by_a_run_is_replaced(repo, first, tmp_path):
    run = tmp_path / "run"
    R.refresh(repo, first, run)
    os.chmod(run / "pkg", 0o000)
    try:
        R.refresh(repo, first, run)
    finally:
        if (run / "pkg").exists():
            os.chmod(run / "pkg", 0o755)
    assert R.changes(repo, first, run, added=True) == []


def test_bad_commit_is_a_git_error(repo, first, tmp_path):
    from autoresearch_nb.errors import GitError
    with pytest.raises(GitError):
        R.refresh(repo, "0" * 40, tmp_path / "run")


def test_same_size_rewrite_with_forged_mtime_is_still_a_change(repo, first, tmp_path):
    run = tmp_path / "run"
    R.refresh(repo, first, run)
    assert R.changes(repo, first, run) == []       # remembers the files' stat
    knobs = run / "pkg" / "knobs.py"
    before = knobs.stat()
    knobs.write_text("K = 7\n")                    # same size
    os.utime(knobs, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert R.changes(repo, first, run) == ["pkg/knobs.py"]


def test_refresh_empties_the_private_tmp(repo, first, tmp_path):
    run = tmp_path / "run"
    R.refresh(repo, first, run)
    tmp = R.tmp_for(run)
    assert tmp.is_dir() and tmp.parent == run.parent
    (tmp / "leftover").write_text("x")
    R.refresh(repo, first, run)
    assert list(tmp.iterdir()) == []


def test_diff_tree_works_from_a_shipped_listing(repo, first, tmp_path):
    # A Ray worker gets the listing (JSON turns its pairs into lists) instead of the repository.
    import json
    run = tmp_path / "run"
    R.refresh(repo, first, run)
    shipped = json.loads(json.dumps(R.tree(repo, first)))
    assert R.diff_tree(shipped, run) == []
    (run / "train.py").write_text("X = 5\n")
    assert R.diff_tree(shipped, run) == ["train.py"]


SPARSE = """X = 2.0
with open("sparse.bin", "wb") as f:
    f.truncate(3 << 30)  # 3 GB of holes: no disk used, but a whole read takes 3 GB of memory
print("step 1 | loss: 0.5")
print("---")
print(f"score: {(X - 1) ** 2:.6f}")
"""


def test_a_huge_sparse_file_is_hashed_in_bounded_memory(tmp_path: Path) -> None:
    """Issue 22: a 1.4 GB sparse file in the run directory made the loop read it whole (RSS 2.9 GB)."""
    from research_repo import make_repo

    root = make_repo(tmp_path / "r", {"train.py": "X = 3.0\n" + SPARSE.split("\n", 1)[1]})
    (root / "queue.toml").write_text('[[experiment]]\ndescription = "X to 2 with a sparse file"\n'
                                     'edits = [{ search = "X = 3.0", replace = "X = 2.0" }]\n')
    driver = ("import resource, subprocess, sys\n"
              "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
              "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
              "sys.stderr.write(done.stderr)\n")
    cli = [sys.executable, "-m", "autoresearch_nb.cli", "run", "--tag", "a", "--repo", str(root), "--agent", "queue",
           "--metric", "score", "--time-budget", "5", "--noise-repeats", "1"]
    done = subprocess.run([sys.executable, "-c", driver, *cli], capture_output=True, text=True, timeout=300)
    code, max_rss_kb = map(int, done.stdout.split())
    assert code == 0, done.stderr
    assert max_rss_kb < 1_000_000, f"the loop's largest process held {max_rss_kb // 1024} MB"
    from autoresearch_nb.view import load_results
    df = load_results(root, "a")
    assert list(df["status"]) == ["keep", "keep"]  # a new file is no change of the commit's files
    from autoresearch_nb.rundir import run_dir_for
    (run_dir_for(root, "a", 0) / "sparse.bin").unlink(missing_ok=True)
