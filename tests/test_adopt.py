# python -m pytest tests/test_adopt.py -q
"""Adopting a run's best file onto a user's branch: real runs through the CLI, real git, plumbing only."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from autoresearch_nb.adopt import adopt
from autoresearch_nb.errors import StateError

sys.path.insert(0, str(Path(__file__).parent))  # research_repo.py sits beside this file
from research_repo import cli, git, make_repo, queue, run_queue, target  # noqa: E402

QUEUE = queue(("3.0", "2.0"), ("2.0", "9.0"))


def make_run(tmp_path: Path, queue_text: str = QUEUE) -> Path:
    root = make_repo(tmp_path / "r", {"train.py": target(), "queue.toml": queue_text, "notes.md": "mine\n"})
    r = run_queue(root)
    assert r.returncode == 0, r.stderr
    return root


def snapshot(root: Path) -> tuple[str, str, str, bytes]:
    """The user's checkout as they see it: HEAD, its branch, status and the editable file's bytes."""
    return (git(root, "rev-parse", "HEAD"), git(root, "symbolic-ref", "HEAD"),
            git(root, "status", "--porcelain"), (root / "train.py").read_bytes())


def test_a_new_branch_gets_the_best_file_and_the_evidence(tmp_path: Path) -> None:
    root = make_run(tmp_path)
    before = snapshot(root)
    base = git(root, "rev-parse", "HEAD")
    done = adopt(root, "a", "tuned")
    assert done.changed and done.previous is None and done.best == 1
    assert git(root, "rev-parse", "refs/heads/tuned") == done.sha
    assert git(root, "rev-parse", "tuned^") == base  # starts from the run's base commit
    assert "X = 2.0" in git(root, "show", "tuned:train.py")
    assert git(root, "show", "tuned:notes.md") == "mine"
    message = git(root, "log", "-1", "--format=%B", "tuned")
    assert "Adopt autoresearch run a: score 4.000000 -> 1.000000 (-3.000000)" in message
    assert "#1 X to 2" in message and "X to 9" not in message  # only kept changes
    assert "score 1.000000, 1 run" in message and "why kept: improves on #0" in message
    assert snapshot(root) == before  # the user's checkout is untouched


def test_an_existing_branch_keeps_its_other_files(tmp_path: Path) -> None:
    root = make_run(tmp_path)
    git(root, "branch", "work")
    git(root, "worktree", "add", "-q", str(tmp_path / "other"), "-b", "scratch")
    (tmp_path / "other" / "extra.txt").write_text("extra\n")
    git(tmp_path / "other", "add", "extra.txt")
    git(tmp_path / "other", "commit", "-qm", "extra")
    tip = git(root, "rev-parse", "scratch")
    git(root, "worktree", "remove", str(tmp_path / "other"))
    done = adopt(root, "a", "scratch")
    assert done.previous == tip and git(root, "rev-parse", "scratch^") == tip
    assert git(root, "show", "scratch:extra.txt") == "extra"
    assert "X = 2.0" in git(root, "show", "scratch:train.py")
    again = adopt(root, "a", "scratch")  # nothing new: no empty commit
    assert not again.changed and git(root, "rev-parse", "scratch") == done.sha


def test_the_checked_out_branch_is_refused_through_the_cli(tmp_path: Path) -> None:
    root = make_run(tmp_path)
    before = snapshot(root)
    r = cli("adopt", "--tag", "a", "--branch", "main", "--repo", str(root))
    assert r.returncode == 1
    assert "checked out" in r.stderr and "--force-current" in r.stderr
    assert snapshot(root) == before


def test_force_current_moves_the_branch_and_keeps_the_checkout_clean(tmp_path: Path) -> None:
    root = make_run(tmp_path)
    old = git(root, "rev-parse", "HEAD")
    r = cli("adopt", "--tag", "a", "--branch", "main", "--repo", str(root), "--force-current")
    assert r.returncode == 0, r.stderr
    assert git(root, "rev-parse", "HEAD^") == old
    assert "X = 2.0" in (root / "train.py").read_text()
    assert git(root, "status", "--porcelain") == ""
    assert "#1 X to 2" in r.stdout


def test_force_current_refuses_a_modified_editable_file(tmp_path: Path) -> None:
    root = make_run(tmp_path)
    (root / "train.py").write_text(target() + "# my edit\n")
    before = snapshot(root)
    r = cli("adopt", "--tag", "a", "--branch", "main", "--repo", str(root), "--force-current")
    assert r.returncode == 1 and "uncommitted changes" in r.stderr
    assert snapshot(root) == before


def test_a_run_without_a_keep_has_nothing_to_adopt(tmp_path: Path) -> None:
    root = make_run(tmp_path, queue(("3.0", "9.0")))
    with pytest.raises(StateError, match="nothing to adopt"):
        adopt(root, "a", "tuned")
    assert git(root, "branch", "--list", "tuned") == ""


@pytest.mark.parametrize("branch", ["autoresearch/a", "bad..name", "-x"])
def test_a_run_branch_or_a_bad_name_is_a_clear_exit_2(tmp_path: Path, branch: str) -> None:
    root = make_run(tmp_path)
    r = cli("adopt", "--tag", "a", f"--branch={branch}", "--repo", str(root))
    assert r.returncode == 2 and "branch" in r.stderr, r.stderr
