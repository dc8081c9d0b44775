"""Housekeeping: free the disk an old run no longer needs, ``autoresearch-nb gc``.

What a finished run leaves behind, and what goes:

* per-experiment logs (``.autoresearch/logs/<tag>/NNNN*.log``) and run directories
  (``.autoresearch/runs/<tag>/N*``) of experiments that are neither kept, nor among the run's last
  ``gc_keep_last``, nor ended less than ``gc_keep_days`` ago;
* the refs ``refs/autoresearch/<tag>/<n>`` of those same experiments (their commits become unreachable, so a
  later ``git gc`` of the user's frees them; we never run it);
* the run's worktrees (``.autoresearch/worktrees/<tag>`` and its workers' ``<tag>.wN``, with whatever the
  runs wrote there: model checkpoints and other ignored files) when nothing of the run is recent; reopening
  the run recreates them from its branch.

What never goes: anything of a run that is open (its lock ``.autoresearch/locks/<tag>.lock`` is held; gc
holds it too while it works, so the run cannot be opened halfway), a kept experiment's ref or commit, the
run's branch, the store (the one truth: every row stays, a pruned row's log simply reads as missing), the
results TSV, the setup and noise-floor logs.

>>> report = collect(".", dry_run=True)   # doctest: +SKIP
>>> print(report)                          # doctest: +SKIP
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .config import Config, make_config
from .errors import AutoresearchError, GitError
from .git import find_repo
from .layout import RunPaths, worktrees_dir
from .plumbing import git
from .records import Experiment, Status
from .store import Store
from .view import best_of, store_path

KINDS = ("logs", "run dirs", "refs", "worktrees")
_NUMBERED = re.compile(r"^(\d+)")
DAY_S = 86400.0


@dataclass(frozen=True)
class Freed:
    """One thing gc removed (or would remove): its kind, path or ref name, and its size on disk."""

    tag: str
    kind: str
    name: str
    bytes: int


@dataclass(frozen=True)
class GcReport:
    """What :func:`collect` freed; ``open_runs`` were skipped because a loop holds them."""

    freed: tuple[Freed, ...] = ()
    open_runs: tuple[str, ...] = ()
    dry_run: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.freed)

    def counts(self) -> dict[str, int]:
        return {kind: sum(f.kind == kind for f in self.freed) for kind in KINDS}

    def __str__(self) -> str:
        lines = [f"run {tag}: open (a loop holds its lock); skipped" for tag in self.open_runs]
        for tag in sorted({f.tag for f in self.freed}):
            mine = [f for f in self.freed if f.tag == tag]
            parts = [f"{n} {kind} ({human(sum(f.bytes for f in mine if f.kind == kind))})"
                     for kind in KINDS if (n := sum(f.kind == kind for f in mine))]
            lines.append(f"run {tag}: " + ", ".join(parts))
        lines += [f"warning: {w}" for w in self.warnings]
        counts = ", ".join(f"{n} {kind}" for kind, n in self.counts().items())
        verb = "would free" if self.dry_run else "freed"
        lines.append(f"{verb} {human(self.bytes)}: {counts}")
        return "\n".join(lines)


def human(n: int) -> str:
    """Bytes in words: ``human(1536) == '1.5 KB'``."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover


def disk_bytes(path: Path) -> int:
    """Bytes under ``path`` (files only, symlinks not followed)."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


@contextmanager
def run_lock(root: Path, tag: str) -> Iterator[IO[str] | None]:
    """The run's lock if nobody holds it (held until the block ends), else None: the run is open."""
    path = RunPaths(root, tag).lock
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield None
            return
        f.seek(0)
        f.truncate()
        f.write(f"autoresearch-nb gc, pid {os.getpid()}\n")  # what a loop opened meanwhile reports
        f.flush()
        try:
            yield f
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    finally:
        f.close()


def retained(experiments: list[Experiment], keep_last: int, keep_days: float, maximize: bool,
             now: float) -> set[int]:
    """Numbers of the experiments whose logs, files and refs stay: kept, the best, the last N, the recent."""
    keep = {e.number for e in experiments if e.status == Status.KEEP}
    best = best_of(experiments, maximize)
    if best is not None:
        keep.add(best.number)
    numbers = sorted(e.number for e in experiments)
    keep.update(numbers[len(numbers) - keep_last:] if keep_last else [])
    keep.update(e.number for e in experiments if not _old(e, now, keep_days))
    return keep


def collect(repo: str | Path = ".", tag: str | None = None, *, dry_run: bool = False,
            config: Config | None = None, now: float | None = None) -> GcReport:
    """Remove what finished runs no longer need (see the module doc); with ``dry_run``, only say what.

    ``config`` gives the retention (``gc_keep_last``, ``gc_keep_days``; default: the repo's config file).
    """
    root = find_repo(repo)
    config = config or make_config(root)
    now = time.time() if now is None else now
    path = store_path(root)
    if not path.exists():
        return GcReport(dry_run=dry_run)
    store = Store(path)
    freed: list[Freed] = []
    open_runs: list[str] = []
    warnings: list[str] = []
    try:
        tags = [r["tag"] for r in store.runs()]
        if tag is not None and tag not in tags:
            raise AutoresearchError(f"no run tagged {tag!r} in {root}; runs: {', '.join(tags) or 'none'}")
        for t in [tag] if tag else tags:
            with run_lock(root, t) as lock:
                if lock is None:
                    open_runs.append(t)
                    continue
                run = store.get_run(t) or {}
                exps = store.experiments(t)
                maximize = (run.get("config") or {}).get("direction") == "maximize"
                keep = retained(exps, int(config.gc_keep_last), float(config.gc_keep_days), maximize, now)
                kept_shas = {e.sha for e in exps if e.status == Status.KEEP and e.sha}
                found = list(_files(root, t, {e.number for e in exps} - keep))
                found += _refs(root, t, keep, kept_shas)
                if all(_old(e, now, float(config.gc_keep_days)) for e in exps):
                    found += _worktrees(root, t) + _snapshots(root, t)
                for item in found:
                    if not dry_run:
                        problem = _remove(root, item)
                        if problem:
                            warnings.append(problem)
                            continue
                    freed.append(item)
    finally:
        store.close()
    if freed and not dry_run:
        git(root, "worktree", "prune", check=False)
    return GcReport(tuple(freed), tuple(open_runs), dry_run, tuple(warnings))


def _old(e: Experiment, now: float, keep_days: float) -> bool:
    """Finished, and ended (or, without an end, started or was created) at least ``keep_days`` ago."""
    ended = next((t for t in (e.ended_at, e.started_at, e.created_at) if t is not None), None)
    return ended is not None and now - ended >= keep_days * DAY_S and e.status.finished


def _files(root: Path, tag: str, prunable: set[int]) -> Iterator[Freed]:
    paths = RunPaths(root, tag)
    for base, kind in ((paths.logs, "logs"), (paths.legacy_runs, "run dirs")):
        if not base.is_dir():
            continue
        for entry in sorted(base.iterdir()):
            m = _NUMBERED.match(entry.name)  # setup.log and noise-*.log start with a letter: never matched
            if m and int(m.group(1)) in prunable:
                yield Freed(tag, kind, str(entry), disk_bytes(entry))


def _refs(root: Path, tag: str, keep: set[int], kept_shas: set[str]) -> list[Freed]:
    out = []
    listing = git(root, "for-each-ref", "--format=%(refname) %(objectname)", f"refs/autoresearch/{tag}/")
    for line in listing.splitlines():
        ref, sha = line.split(" ", 1)
        last = ref[len(f"refs/autoresearch/{tag}/"):]  # checkout/<n> snapshots are not experiments
        if last.isdigit() and int(last) not in keep and sha not in kept_shas:
            out.append(Freed(tag, "refs", f"{ref} {sha}", 0))
    return out


def _worktrees(root: Path, tag: str) -> list[Freed]:
    folder = worktrees_dir(root)
    found = [Freed(tag, "worktrees", str(p), disk_bytes(p)) for p in sorted(folder.iterdir())
             if p.name == tag or re.fullmatch(re.escape(tag) + r"\.w\d+", p.name)] if folder.is_dir() else []
    runs = RunPaths(root, tag).session()  # the run directories (outside the checkout), what runs wrote
    if runs.is_dir():
        found.append(Freed(tag, "run dirs", str(runs), disk_bytes(runs)))
    return found


def _snapshots(root: Path, tag: str) -> list[Freed]:
    """The checkout snapshots of a finished run's sessions (``refs/autoresearch/<tag>/checkout/<n>``)."""
    listing = git(root, "for-each-ref", "--format=%(refname) %(objectname)", f"refs/autoresearch/{tag}/checkout/")
    return [Freed(tag, "refs", line, 0) for line in listing.splitlines() if line.strip()]


def _remove(root: Path, item: Freed) -> str | None:
    """Remove one thing; a reason in words when it could not be."""
    try:
        if item.kind == "refs":
            ref, sha = item.name.split(" ", 1)
            git(root, "update-ref", "-d", ref, sha)  # only if it still points where we looked
        elif item.kind == "worktrees":
            if (Path(item.name) / ".git").exists():
                git(root, "worktree", "remove", "--force", item.name)
            if Path(item.name).exists():
                shutil.rmtree(item.name)
        elif Path(item.name).is_dir() and not Path(item.name).is_symlink():
            shutil.rmtree(item.name)
        else:
            Path(item.name).unlink()
    except (GitError, OSError) as e:
        return f"could not remove {item.name}: {e}"
    return None


def gc_config(repo: str | Path, **overrides: object) -> Config:
    """The retention settings for ``repo``: its config file, then ``overrides``."""
    return make_config(find_repo(repo), {k: v for k, v in overrides.items() if v is not None})


__all__ = ["collect", "GcReport", "Freed", "retained", "human", "run_lock", "gc_config"]
