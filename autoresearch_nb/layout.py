"""Where everything of a run lives on disk: the one owner of the layout and of the tag rule (stdlib only).

In the research repository, under ``.autoresearch/`` (never tracked: the loop adds it to ``.git/info/exclude``)::

    store.db                    every experiment of every tag (SQLite, WAL)
    locks/<tag>.lock            held while a loop has the tag open
    logs/<tag>/<number>.log     each run's output (repeats: <number>.<i>.log; setup.log, pins.log)
    worktrees/<tag>             the loop's own git worktree on branch autoresearch/<tag>
    results/<tag>/results.tsv   Karpathy's five columns
    optuna/                     the tuner's Optuna study files
    notebooks/<tag>/            the executed notebooks of ``autoresearch-nb run --notebook`` (outside the checkout's
                                files, so not an edit of the user's)

Outside it, in the user's cache (``$XDG_CACHE_HOME`` or ``~/.cache``, then ``autoresearch_nb/``)::

    runs/<repo>-<hash>/<tag>/w<i>        worker i's run directory (0: the loop's own; 9999: the setup command's)
    runs/<repo>-<hash>/<tag>/w<i>.tmp    its private TMPDIR
    runs/<repo>-<hash>/<tag>/artifacts/  the models runs export for the verifier
    runs/<repo>-<hash>/<tag>/compile/    the session's compile caches (inductor, triton, CUDA)
    <dataset>/, <dataset>.holdout/       prepared corpora and the holdout beside each

>>> paths = RunPaths("/home/me/proj", "nov27")
>>> str(paths.lock)
'/home/me/proj/.autoresearch/locks/nov27.lock'
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from . import environ

STATE_DIR = ".autoresearch"
ARTIFACTS = "artifacts"  # beside the run directories: exported models
COMPILE = "compile"  # beside the run directories: the session's compile caches
SETUP_WORKER = 9999  # the run directory number of the setup command (boundary.SETUP maps to it)
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class TagError(ValueError):
    """A tag that cannot name a run (the config layer turns it into its ConfigError)."""


def check_tag(tag: str | None) -> str:
    """``tag``, or today's date (``nov27``) when none is given, when it can name a run; :class:`TagError`
    otherwise. The tag becomes the branch ``autoresearch/<tag>``, refs under ``refs/autoresearch/<tag>/``, a
    lock file and folders, so git's ref rules apply (no ``..``, no ``.lock`` or ``.`` at the end).

    >>> check_tag("nov27")
    'nov27'
    """
    if tag is None:
        tag = time.strftime("%b%d").lower()
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise TagError(f"tag {tag!r} must be letters, digits, '.', '_' or '-' (at most 64), starting with a "
                       "letter or digit")
    if ".." in tag or tag.endswith((".lock", ".")):
        raise TagError(f"tag {tag!r} cannot be a git branch name: no '..', and no '.lock' or '.' at the end")
    return tag


def cache_home(env: Mapping[str, str] | None = None) -> Path:
    """The package's cache folder: ``$XDG_CACHE_HOME/autoresearch_nb`` (``~/.cache/autoresearch_nb``)."""
    env = environ.snapshot() if env is None else env
    return Path(env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "autoresearch_nb"


def runs_root(env: Mapping[str, str] | None = None) -> Path:
    """Where every session's run directories live (:func:`run_dir_for`)."""
    return cache_home(env) / "runs"


def session_dir(repo: str | os.PathLike[str], tag: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The folder of one repository's tag among the run directories: ``<repo name>-<hash of its path>/<tag>``."""
    repo = Path(repo).resolve()
    digest = hashlib.sha1(str(repo).encode()).hexdigest()[:8]
    safe_tag = "".join(c if c.isalnum() or c in "-_." else "_" for c in tag).lstrip(".") or "_"
    return Path(root if root is not None else runs_root()).expanduser().resolve() / f"{repo.name}-{digest}" / safe_tag


def state_dir(root: str | os.PathLike[str]) -> Path:
    """The repository's ``.autoresearch`` folder."""
    return Path(root) / STATE_DIR


def store_path(root: str | os.PathLike[str]) -> Path:
    """The experiment store of the repository at ``root``."""
    return state_dir(root) / "store.db"


def optuna_dir(root: str | os.PathLike[str]) -> Path:
    """The tuner's Optuna study files."""
    return state_dir(root) / "optuna"


def worktrees_dir(root: str | os.PathLike[str]) -> Path:
    return state_dir(root) / "worktrees"


@dataclass(frozen=True)
class RunPaths:
    """Every path of run ``tag`` in the repository at ``root`` (see the module's docstring)."""

    root: Path
    tag: str

    def __init__(self, root: str | os.PathLike[str], tag: str) -> None:
        object.__setattr__(self, "root", Path(root))
        object.__setattr__(self, "tag", tag)

    @property
    def state(self) -> Path:
        return state_dir(self.root)

    @property
    def store(self) -> Path:
        return store_path(self.root)

    @property
    def lock(self) -> Path:
        return self.state / "locks" / f"{self.tag}.lock"

    @property
    def logs(self) -> Path:
        return self.state / "logs" / self.tag

    def log(self, name: str) -> Path:
        """The log of run ``name`` (``0007``, ``0007.1``, ``setup``)."""
        return self.logs / f"{name}.log"

    @property
    def legacy_runs(self) -> Path:
        """Where run directories lived before they moved to the cache (``gc`` still frees them)."""
        return self.state / "runs" / self.tag

    @property
    def worktree(self) -> Path:
        return worktrees_dir(self.root) / self.tag

    @property
    def notebooks(self) -> Path:
        """Where ``run --notebook`` writes the executed notebook by default."""
        return self.state / "notebooks" / self.tag

    @property
    def results_tsv(self) -> Path:
        return self.state / "results" / self.tag / "results.tsv"

    def session(self, runs: str | os.PathLike[str] | None = None) -> Path:
        """This tag's folder among the run directories (``runs``: another root than the cache's)."""
        return session_dir(self.root, self.tag, runs)

    def run_dir(self, worker: int = 0, runs: str | os.PathLike[str] | None = None) -> Path:
        """Worker ``worker``'s run directory (0: the loop's own; 1..K parallel workers; negative: setup's)."""
        return self.session(runs) / f"w{int(worker) if worker >= 0 else SETUP_WORKER}"

    @property
    def artifacts(self) -> Path:
        """Where runs export their models for the verifier, beside the run directories."""
        return self.session() / ARTIFACTS

    def artifact(self, number: int | str) -> Path:
        return self.artifacts / str(number)


__all__ = ["ARTIFACTS", "COMPILE", "RunPaths", "STATE_DIR", "TagError", "cache_home", "check_tag", "optuna_dir", "runs_root",
           "session_dir", "state_dir", "store_path", "worktrees_dir"]
