"""Git plumbing outside any run's worktree: for adopting a result onto the user's branch and for housekeeping.

A plain ``git`` subprocess with the ``GIT_*`` variables that would point it elsewhere stripped, raising
:class:`GitError` (command, exit code, output) on failure. Nothing here touches a working tree.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Mapping

from .errors import GitError
from . import environ

_POINTING = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
             "GIT_NAMESPACE", "GIT_ALTERNATE_OBJECT_DIRECTORIES")
_FALLBACK_IDENT = {"GIT_AUTHOR_NAME": "autoresearch_nb", "GIT_AUTHOR_EMAIL": "autoresearch_nb@localhost",
                   "GIT_COMMITTER_NAME": "autoresearch_nb", "GIT_COMMITTER_EMAIL": "autoresearch_nb@localhost"}


def git(root: Path | str, *args: str, input: str | None = None, env: Mapping[str, str] | None = None,
        check: bool = True) -> str:
    """Run ``git args`` in ``root``; its stdout without the trailing newline.

    >>> git(".", "rev-parse", "--is-inside-work-tree")   # doctest: +SKIP
    'true'
    """
    full = {k: v for k, v in environ.snapshot().items() if k not in _POINTING}
    full.update(env or {})
    proc = subprocess.run(["git", *args], cwd=str(root), input=input, capture_output=True, text=True, env=full)
    if check and proc.returncode != 0:
        raise GitError("git failed", command="git " + " ".join(args), code=proc.returncode,
                       stdout=proc.stdout, stderr=proc.stderr)
    return proc.stdout.rstrip("\n")


def ok(root: Path | str, *args: str) -> bool:
    """True when ``git args`` exits 0 (a question, not an action)."""
    try:
        git(root, *args)
        return True
    except GitError:
        return False


def identity(root: Path | str) -> dict[str, str]:
    """Environment for a commit: empty when the repo has a user, else a fallback name (never a prompt)."""
    if ok(root, "config", "user.email") and ok(root, "config", "user.name"):
        return {}
    return dict(_FALLBACK_IDENT)


def checked_out(root: Path | str) -> dict[str, Path]:
    """``{refs/heads/<branch>: worktree path}`` for every branch checked out in the repo's worktrees."""
    out: dict[str, Path] = {}
    path: Path | None = None
    for line in git(root, "worktree", "list", "--porcelain").splitlines():
        if line.startswith("worktree "):
            path = Path(line[len("worktree "):])
        elif line.startswith("branch ") and path is not None:
            out[line[len("branch "):]] = path
    return out


def commit_file(root: Path | str, parent: str | None, path: str, blob: str, mode: str, message: str) -> str:
    """A commit whose tree is ``parent``'s with ``path`` set to ``blob``, made with a private index (no
    working tree, no branch moved). Returns its sha."""
    gitdir = Path(git(root, "rev-parse", "--absolute-git-dir"))
    index = gitdir / f"autoresearch-adopt-index-{os.getpid()}"
    env = {"GIT_INDEX_FILE": str(index)}
    try:
        if parent:
            git(root, "read-tree", parent, env=env)
        else:
            git(root, "read-tree", "--empty", env=env)
        git(root, "update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}", env=env)
        tree = git(root, "write-tree", env=env)
    finally:
        index.unlink(missing_ok=True)
    args = ["commit-tree", tree, *(["-p", parent] if parent else []), "-F", "-"]
    return git(root, *args, input=message, env=identity(root))
