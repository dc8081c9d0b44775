"""The user's checkout, watched: a snapshot at session start (untracked files included), compared after every run.

    >>> w = CheckoutWatch(root, "nov29")        # doctest: +SKIP
    >>> w.snapshot()                            # 'refs/autoresearch/nov29/checkout/1'  # doctest: +SKIP
    >>> w.changed()                             # paths that differ since the last look  # doctest: +SKIP

The snapshot is a commit of the whole working tree (what ``git add -A`` would stage: tracked and untracked
files, not the ignored ones) built through a temporary index, so neither the files nor the user's index nor
any branch moves; it is kept under ``refs/autoresearch/<tag>/checkout/<n>``, one per session, to restore from
by hand (``git checkout <ref> -- <path>``). Nothing here ever writes a file of the checkout.

Notebooks (``*.ipynb``, ``.ipynb_checkpoints/``) are snapshotted but never reported: JupyterLab autosaves the
notebook driving the loop, and papermill writes its output notebook, during every run; those are not the user's
edits to warn about (nor a run's to blame: a run changes code or data, and without the sandbox this check is
the only one, so notebooks are the one thing it lets pass).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .plumbing import git, identity


class CheckoutWatch:
    """Snapshots of one repository's working tree for the session of ``tag``."""

    def __init__(self, repo_root: Path, tag: str) -> None:
        self.root = Path(repo_root)
        self.tag = tag
        self.ref: str | None = None
        self._tree: str | None = None

    def _state(self) -> str:
        """The tree object of the working tree as it is now (tracked and untracked files, ignores honoured)."""
        index = Path(git(self.root, "rev-parse", "--path-format=absolute", "--git-path", "index"))
        with tempfile.TemporaryDirectory(prefix="autoresearch-watch-") as tmp:
            scratch = os.path.join(tmp, "index")
            if index.is_file():  # the user's index as a start: its stat data spares re-hashing unchanged files
                shutil.copyfile(index, scratch)
            env = {"GIT_INDEX_FILE": scratch}
            git(self.root, "add", "-A", "--ignore-errors", ".", env=env, check=False)
            return git(self.root, "write-tree", env=env)

    def snapshot(self) -> str:
        """Record the checkout as it is now; returns the ref that keeps it."""
        self._tree = self._state()
        prefix = f"refs/autoresearch/{self.tag}/checkout/"
        taken = git(self.root, "for-each-ref", "--format=%(refname)", prefix).split()
        n = 1 + max((int(r[len(prefix):]) for r in taken if r[len(prefix):].isdigit()), default=0)
        head = git(self.root, "rev-parse", "-q", "--verify", "HEAD^{commit}", check=False)
        parents = ["-p", head] if head else []
        sha = git(self.root, "commit-tree", self._tree, *parents, "-m",
                  f"autoresearch {self.tag}: the checkout at the start of session {n}", env=identity(self.root))
        self.ref = f"{prefix}{n}"
        git(self.root, "update-ref", self.ref, sha)
        return self.ref

    def changed(self) -> list[str]:
        """Paths of the checkout that differ from the last look (then the new state is the reference)."""
        if self._tree is None:
            return []
        now = self._state()
        if now == self._tree:
            return []
        paths = git(self.root, "diff-tree", "-r", "--name-only", "--no-renames", self._tree, now).splitlines()
        self._tree = now
        return [p for p in paths if not is_notebook(p)]


def is_notebook(path: str) -> bool:
    """A notebook or a Jupyter checkpoint of one (saved by the notebook server while the loop runs).

    >>> is_notebook("notebooks/run.ipynb"), is_notebook(".ipynb_checkpoints/x.py"), is_notebook("train.py")
    (True, True, False)
    """
    return path.endswith(".ipynb") or ".ipynb_checkpoints" in path.split("/")


__all__ = ["CheckoutWatch", "is_notebook"]
