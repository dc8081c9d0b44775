"""Opening a run safely: the tag check, the run's lock, and recovery after a loop process died.

The lock is an ``flock`` on ``.autoresearch/locks/<tag>.lock``: the OS releases it when the process dies, so a
``kill -9`` leaves none behind. A second process opening the same tag is refused; the *same* process opening
it again (a notebook's ``Loop.open`` cell run twice) closes its earlier loop first.

A resume is refused (:class:`~.provenance.IncomparableRun`) when this session would score numbers that are not
comparable with the run's rows: another corpus, evaluation size, verifier or torch (:func:`check_comparable`).

Recovery finds every process of a dead loop's runs by the ``AUTORESEARCH_RUN=<tag>/<n>`` marker each run's
environment carries (the current user's processes only, working in this repository's state directory), so a
run whose pid was never saved (a kill between the row and the pid) is found too.
"""
from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .errors import StateError
from . import environ
from . import provenance
from .config import check_tag  # noqa: F401  (re-exported: the one tag rule)
from .git import Workspace
from .layout import RunPaths, session_dir, state_dir
from .records import Status
from .recorder import Recorder
from .runner import kill_group
from .sandbox import dataset_cache
from .store import Store

if TYPE_CHECKING:
    from .config import Config

_open_here: dict[str, Callable[[], None]] = {}  # lock path -> close() of the loop holding it in this process
_registry_lock = threading.Lock()


class RunLock:
    """The exclusive lock on one run, held while a loop has it open."""

    def __init__(self, root: Path, tag: str, close_earlier: bool = True) -> None:
        self.path = RunPaths(root, tag).lock
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _unwritable(self.path, e) from None
        key = str(self.path.resolve())
        with _registry_lock:
            earlier = _open_here.get(key)
        if earlier is not None and close_earlier:
            earlier()  # this process already has the run open: close that loop, then take the lock
        self._file: IO[str] | None = _take(self.path, tag)
        self._key = key

    def owned_by(self, close: Callable[[], None]) -> None:
        """Register the loop that holds this lock, so reopening the tag in this process closes it."""
        with _registry_lock:
            _open_here[self._key] = close

    def release(self) -> None:
        with _registry_lock:
            _open_here.pop(self._key, None)
        f, self._file = self._file, None
        if f is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_UN)
            finally:
                f.close()


def _unwritable(path: Path, error: OSError) -> StateError:
    return StateError(f"cannot take the run's lock {path}: {error.strerror}. A run needs to write its state "
                      f"directory ({path.parent.parent}); `results` and `status` still read a read-only one")


def _take(path: Path, tag: str) -> IO[str]:
    try:
        f = open(path, "a+")
    except OSError as e:
        raise _unwritable(path, e) from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip()
        f.close()
        raise StateError(f"run {tag!r} is already open in another process ({holder or 'unknown'}); "
                         "close that loop first, or read results with autoresearch_nb.load_results") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    return f


def check_comparable(store: Store, tag: str, config: "Config", root: Path) -> None:
    """Refuse to resume ``tag`` when its rows were measured under another corpus, ``eval_bytes``, verifier,
    budget clock or torch major.minor than this session would use (:mod:`.provenance`). Computed without importing torch."""
    experiments = store.experiments(tag)
    if not experiments:
        return
    from .verify import MODEL, budget_clock, resolve
    from .verifier import VERSION

    command = resolve(config, root)
    verifier = VERSION if command == MODEL else None
    folder = dataset_cache(environ.snapshot())  # the rule the run's Boundary follows
    provenance.check_resume(tag, experiments, provenance.current(folder, verifier=verifier,
                                                                 clock=budget_clock(config, root)),
                            verified=command is not None)


def marked_processes(root: Path, tag: str, known: dict[int, int] | None = None) -> list[int]:
    """Pids of this user's processes carrying ``AUTORESEARCH_RUN=<tag>/...`` and running in ``root``'s state
    directory or its run directories (:mod:`.rundir`): what is left of runs of ``tag`` whose loop process
    died. ``known`` maps saved pids to their experiment numbers: those count wherever they run, if their marker matches exactly."""
    import psutil

    state = str(state_dir(root).resolve()) + os.sep
    # The run directories' folder, named for this repository and tag wherever the cache is (XDG_CACHE_HOME may
    # differ between the session that died and this one)
    runs = os.sep + os.path.join("autoresearch_nb", "runs", *session_dir(root, tag, os.sep).parts[-2:]) \
        + os.sep
    me, uid = os.getpid(), os.getuid()
    found = []
    for proc in psutil.process_iter(["pid", "uids"]):
        try:
            if proc.pid == me or proc.info["uids"] is None or proc.info["uids"].real != uid:
                continue
            marker = proc.environ().get("AUTORESEARCH_RUN", "")
            if not marker.startswith(f"{tag}/"):
                continue
            number = (known or {}).get(proc.pid)
            cwd = proc.cwd() + os.sep
            if marker != f"{tag}/{number}" and not (cwd.startswith(state) or runs in cwd):
                continue  # the same tag in another repository
            found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


def kill_orphans(root: Path, tag: str, known: dict[int, int] | None = None) -> list[int]:
    """Kill every process group of a dead loop's runs of ``tag``; returns the pids found."""
    pids = marked_processes(root, tag, known)
    own = os.getpgrp()
    groups = set()
    for pid in pids:
        try:
            groups.add(os.getpgid(pid))
        except OSError:
            continue
    for group in groups - {own}:
        kill_group(group, grace_s=1.0)
    for pid in pids:  # a process that left the run's group (never ours: own group excluded above)
        try:
            if os.getpgid(pid) == own:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return pids


def recover(root: Path, tag: str, recorder: Recorder, workspace: Workspace, base: str) -> None:
    """Clean up after a loop process that died mid-experiment: orphans killed, rows closed, worktree reset."""
    kill_orphans(root, tag, {e.pid: e.number for e in recorder.experiments if e.status == Status.RUNNING and e.pid})
    now = time.time()
    for exp in recorder.experiments:
        if exp.status == Status.RUNNING:
            recorder.save(exp.with_(status=Status.INTERRUPTED, ended_at=exp.ended_at or now, decided_at=now,
                                    reason="the loop process ended while this experiment was running"))
            if exp.sha:
                workspace.keep_ref(exp.number, exp.sha)
        elif exp.status == Status.PROPOSED and exp.prepared_during is None:  # a prepared one waits for optimize
            recorder.save(exp.with_(status=Status.INTERRUPTED, decided_at=now,
                                    reason="proposed, but the loop ended before it ran"))
    head = recorder.head()
    workspace.restore(head.sha if head and head.sha else base)
    recorder.write_results()
