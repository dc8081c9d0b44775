# python -m pytest tests/test_git.py -q
"""Git worktree, commits and resets: real git in temp dirs."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import git
from conftest import make_repo as new_repo

from autoresearch_nb.errors import ConfigError, GitError
from autoresearch_nb.git import Workspace, find_repo, parse_porcelain

TRAIN = "LR = 0.01\nprint('---')\nprint('val_bpb: 1.0')\n"


def exists(cwd: Path, sha: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=cwd, capture_output=True).returncode == 0


def make_repo(root: Path) -> Path:
    return new_repo(root, {"train.py": TRAIN, "prepare.py": "DATA = 'fixed'\n"})


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "research")


@pytest.fixture()
def ws(repo: Path) -> Workspace:
    return Workspace(repo, "t", "train.py")


# -- the worktree ------------------------------------------------------------------------------------------

def test_worktree_lives_under_the_state_dir(repo: Path, ws: Workspace) -> None:
    assert ws.path == repo / ".autoresearch" / "worktrees" / "t" and (ws.path / "train.py").read_text() == TRAIN


def test_worktree_is_on_the_run_branch(ws: Workspace) -> None:
    assert git(ws.path, "rev-parse", "--abbrev-ref", "HEAD") == "autoresearch/t"


def test_user_checkout_with_uncommitted_work_is_untouched(repo: Path) -> None:
    (repo / "train.py").write_text("LR = 0.5  # the user's edit in progress\n")
    (repo / "notes.txt").write_text("untracked notes\n")
    before = git(repo, "status", "--porcelain")
    ws = Workspace(repo, "t", "train.py")
    parent = ws.head()
    ws.commit("LR = 0.02\n", "exp 1")
    ws.reset(parent)
    assert (repo / "train.py").read_text() == "LR = 0.5  # the user's edit in progress\n"
    assert (repo / "notes.txt").exists() and git(repo, "status", "--porcelain") == before
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"


def test_state_dir_is_excluded_in_info_exclude_not_gitignore(repo: Path, ws: Workspace) -> None:
    assert "/.autoresearch/" in (repo / ".git" / "info" / "exclude").read_text().splitlines()
    assert not (repo / ".gitignore").exists() and git(repo, "status", "--porcelain") == ""


def test_exclude_line_is_written_once(repo: Path, ws: Workspace) -> None:
    Workspace(repo, "u", "train.py")
    lines = (repo / ".git" / "info" / "exclude").read_text().splitlines()
    assert lines.count("/.autoresearch/") == 1


def test_reopening_reuses_the_worktree_and_its_commits(repo: Path, ws: Workspace) -> None:
    sha = ws.commit("LR = 0.02\n", "exp 1")
    assert Workspace(repo, "t", "train.py").head() == sha


def test_deleted_worktree_is_recreated_on_the_branch(repo: Path, ws: Workspace) -> None:
    sha = ws.commit("LR = 0.02\n", "exp 1")
    subprocess.run(["rm", "-rf", str(ws.path)], check=True)
    assert Workspace(repo, "t", "train.py").head() == sha


def test_find_repo_from_a_subdirectory(repo: Path) -> None:
    (repo / "sub").mkdir()
    assert find_repo(repo / "sub") == repo


# -- errors with a clear message ---------------------------------------------------------------------------------

def test_non_git_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a git repository"):
        find_repo(tmp_path)


def test_repo_without_commits_is_a_config_error(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    with pytest.raises(ConfigError, match="has no commits yet"):
        find_repo(tmp_path)


def test_editable_missing_from_head_is_a_config_error(repo: Path) -> None:
    (repo / "model.py").write_text("uncommitted\n")
    with pytest.raises(ConfigError, match=r"model.py is not in the last commit.*commit it first"):
        Workspace(repo, "t", "model.py")


def test_git_error_carries_command_code_and_stderr(ws: Workspace) -> None:
    with pytest.raises(GitError) as info:
        ws.reset("0" * 40)
    assert "reset" in info.value.command and info.value.code == 128 and info.value.stderr


# -- commits -------------------------------------------------------------------------------------------------

def test_commit_changes_only_the_editable_file(ws: Workspace) -> None:
    (ws.path / "prepare.py").write_text("DATA = 'tampered'\n")
    (ws.path / "new.txt").write_text("stray\n")
    sha = ws.commit("LR = 0.02\n", "exp 1")
    assert git(ws.path, "show", "--name-only", "--format=", sha) == "train.py"


def test_commit_is_read_back_byte_for_byte(ws: Workspace) -> None:
    content = "LR = 0.02\n\n\n# no newline at the end"
    sha = ws.commit(content, "exp 1")
    assert ws.read(sha) == content


def test_commit_parent_is_the_previous_head(ws: Workspace) -> None:
    parent = ws.head()
    sha = ws.commit("LR = 0.02\n", "exp 1")
    assert git(ws.path, "rev-parse", f"{sha}^") == parent


def test_commit_works_without_a_git_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "r")
    git(repo, "config", "--unset", "user.email")
    git(repo, "config", "--unset", "user.name")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-such-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    ws = Workspace(repo, "t", "train.py")
    sha = ws.commit("LR = 0.02\n", "exp 1")
    assert git(repo, "log", "-1", "--format=%ae", sha) == "autoresearch_nb@localhost"


def test_commit_does_not_sign_even_when_the_user_signs(repo: Path) -> None:
    # An unattended run must never wait on a passphrase prompt or fail on a missing key.
    git(repo, "config", "commit.gpgsign", "true")
    git(repo, "config", "gpg.program", "false")
    ws = Workspace(repo, "t", "train.py")
    sha = ws.commit("LR = 0.02\n", "exp 1")
    assert ws.read(sha) == "LR = 0.02\n"


def test_commit_skips_the_users_hooks(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    ws = Workspace(repo, "t", "train.py")
    assert ws.read(ws.commit("LR = 0.02\n", "exp 1")) == "LR = 0.02\n"


# -- reset and keep_ref ------------------------------------------------------------------------------------------

def test_reset_moves_the_branch_back_to_the_parent(ws: Workspace) -> None:
    parent = ws.head()
    ws.commit("LR = 0.02\n", "exp 1")
    ws.reset(parent)
    assert git(ws.path, "rev-parse", "autoresearch/t") == parent and ws.file_path().read_text() == TRAIN


def test_reset_to_a_recorded_parent_not_head_minus_one(ws: Workspace) -> None:
    base = ws.head()
    ws.commit("LR = 0.02\n", "exp 1")
    ws.commit("LR = 0.03\n", "exp 2")
    ws.reset(base)
    assert ws.head() == base


def test_reset_removes_files_the_run_left(ws: Workspace) -> None:
    (ws.path / "checkpoint.bin").write_text("junk")
    (ws.path / "prepare.py").write_text("DATA = 'tampered'\n")
    ws.reset(ws.head())
    assert ws.changed_paths() == []


def test_keep_ref_keeps_a_discarded_commit_reachable(ws: Workspace) -> None:
    parent = ws.head()
    sha = ws.commit("LR = 0.02\n", "exp 1")
    ws.keep_ref(1, sha)
    ws.reset(parent)
    git(ws.path, "reflog", "expire", "--expire=now", "--all")
    git(ws.path, "gc", "-q", "--prune=now")
    assert exists(ws.path, sha) and git(ws.path, "rev-parse", "refs/autoresearch/t/1") == sha


def test_without_keep_ref_gc_drops_the_discarded_commit(ws: Workspace) -> None:
    # The control for the test above: it proves that gc really prunes what is not kept.
    parent = ws.head()
    sha = ws.commit("LR = 0.02\n", "exp 1")
    ws.reset(parent)
    git(ws.path, "reflog", "expire", "--expire=now", "--all")
    git(ws.path, "gc", "-q", "--prune=now")
    assert not exists(ws.path, sha)


def test_read_gives_the_file_of_each_commit(ws: Workspace) -> None:
    parent = ws.head()
    sha = ws.commit(TRAIN.replace("0.01", "0.02"), "exp 1")
    assert ws.read(parent) == TRAIN and ws.read(sha) == TRAIN.replace("0.01", "0.02")


def test_restore_puts_the_worktree_back_on_a_commit(ws: Workspace) -> None:
    parent = ws.head()
    sha = ws.commit("LR = 0.02\n", "exp 1")
    (ws.path / "junk.txt").write_text("left by a run")
    ws.restore(sha)
    assert ws.head() == sha and ws.changed_paths() == []
    ws.restore(parent)
    assert ws.head() == parent and (ws.path / "train.py").read_text() == TRAIN


# -- changed_paths ----------------------------------------------------------------------------------------------

def test_clean_worktree_has_no_changed_paths(ws: Workspace) -> None:
    assert ws.changed_paths() == []


def test_changed_paths_sees_modified_new_and_deleted(ws: Workspace) -> None:
    (ws.path / "prepare.py").write_text("DATA = 'tampered'\n")
    (ws.path / "out" / "deep").mkdir(parents=True)
    (ws.path / "out" / "deep" / "new file.txt").write_text("x")
    (ws.path / "train.py").unlink()
    assert sorted(ws.changed_paths()) == ["out/deep/new file.txt", "prepare.py", "train.py"]


def test_changed_paths_reports_both_sides_of_a_rename(ws: Workspace) -> None:
    git(ws.path, "mv", "prepare.py", "renamed.py")
    assert sorted(ws.changed_paths()) == ["prepare.py", "renamed.py"]
    assert parse_porcelain("R  new.py\0old.py\0 M a.py\0?? b c.txt\0") == ["new.py", "old.py", "a.py", "b c.txt"]


def test_changed_paths_ignores_ignored_files(repo: Path) -> None:
    (repo / ".gitignore").write_text("__pycache__/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", "ignore")
    ws = Workspace(repo, "t", "train.py")
    (ws.path / "__pycache__").mkdir()
    (ws.path / "__pycache__" / "x.pyc").write_text("")
    assert ws.changed_paths() == []


# -- the environment ---------------------------------------------------------------------------------------------

def test_git_dir_in_the_environment_does_not_redirect_commands(tmp_path: Path, repo: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    other = make_repo(tmp_path / "other")
    other_head = git(other, "rev-parse", "HEAD")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    ws = Workspace(repo, "t", "train.py")
    sha = ws.commit("LR = 0.02\n", "exp 1")
    monkeypatch.delenv("GIT_DIR")
    monkeypatch.delenv("GIT_WORK_TREE")
    assert git(repo, "rev-parse", "autoresearch/t") == sha
    assert git(other, "rev-parse", "HEAD") == other_head and git(other, "branch", "--list", "autoresearch/*") == ""


def test_git_error_stderr_is_what_git_printed(ws: Workspace) -> None:
    with pytest.raises(GitError) as info:
        ws.reset("0" * 40)
    assert info.value.stderr.startswith("fatal:")
