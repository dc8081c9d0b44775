"""Where and how every run runs: its run directory, the sandbox around it, its environment, what it changed.

    >>> b = Boundary(root, "nov29", config)                     # doctest: +SKIP
    >>> b.describe()                 # one line for the start of a session  # doctest: +SKIP
    >>> run_dir = b.prepare(sha, worker=0)     # an export of the commit, outside the checkout  # doctest: +SKIP
    >>> argv = b.argv("python train.py", worker=0)      # the command under the sandbox  # doctest: +SKIP
    >>> b.changes(sha, worker=0)     # tracked paths the run changed, by content  # doctest: +SKIP

Every kind of run (experiment, setup, noise / confirmation / re-validation repeat, a parallel worker) goes
through one of these, so none runs in the loop's git worktree: a run cannot delete or rewrite the worktree's
``.git``, commit, reset, or reach the user's checkout by a relative path (see :mod:`.rundir`, :mod:`.sandbox`).
The setup command (data preparation) may use the network and write the dataset folder; experiments may not.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from . import rundir, sandbox, scrub
from .layout import RunPaths
from . import environ as _environ  # the name environ is a parameter of thread_env
from .verify import Pending, Verification, confined

if TYPE_CHECKING:
    from .config import Config

SETUP = -1  # the worker number of the setup command's run directory
# The thread pools a training run sizes from the environment: OpenMP (torch's intra-op threads), MKL, OpenBLAS
# (numpy). Each defaults to every core, so K runs at once each start a thread per core.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform says, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def thread_env(workers: int, cores: int | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Thread-pool sizes for one of ``workers`` runs sharing the machine: ``cores // workers`` (at least 1)
    each, so they do not oversubscribe the cores (10x slower seen with 2 workers on 2 cores). Nothing when the
    user set any of :data:`THREAD_VARS` (their choice stands, and reaches the run unchanged).

    >>> thread_env(2, cores=16, environ={})["OMP_NUM_THREADS"], thread_env(2, 16, {"OMP_NUM_THREADS": "3"})
    ('8', {})
    """
    environ = _environ.snapshot() if environ is None else environ
    if any(name in environ for name in THREAD_VARS):
        return {}
    threads = str(max(1, (usable_cores() if cores is None else cores) // max(1, workers)))
    return {**dict.fromkeys(THREAD_VARS, threads), "AUTORESEARCH_THREADS": threads}


def run_threads(workers: int = 1, parallel: bool = False, environ: Mapping[str, str] | None = None) -> int:
    """The threads one run is given (the cpu budget clock divides its CPU seconds by this): the user's
    ``OMP_NUM_THREADS`` when set; else, runs side by side (``parallel``: workers or Ray), their share of the
    cores (:func:`thread_env`); else the physical cores this process may use (torch's default thread count)."""
    environ = _environ.snapshot() if environ is None else environ
    raw = str(environ.get("OMP_NUM_THREADS", "")).strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    cores = usable_cores()
    if parallel:
        return max(1, cores // max(1, workers))
    try:
        import psutil
        physical = psutil.cpu_count(logical=False) or cores
    except Exception:  # psutil can fail to read the topology in some containers
        physical = cores
    return max(1, min(cores, physical))


class Boundary:
    """The run directories, sandbox policies and scrubbed environments of one loop's runs."""

    def __init__(self, repo_root: Path, tag: str, config: "Config") -> None:
        self.root = Path(repo_root).resolve()
        self.tag = tag
        self.paths = RunPaths(self.root, tag)
        self.config = config
        self._policies: dict[int, sandbox.Policy] = {}
        self._secrets: set[str] = set()
        self._confined: bool | None = None
        # the dataset folder, chosen once per session, so runs (Plan.env), the sandbox and the pins agree
        self.data = sandbox.dataset_cache(_environ.snapshot())

    # -- policy ---------------------------------------------------------------------------------------
    def run_dir(self, worker: int = 0) -> Path:
        """Worker ``worker``'s run directory (0: the loop's own; parallel workers 1..K; setup its own)."""
        return rundir.run_dir_for(self.root, self.tag, worker)

    def policy(self, worker: int = 0) -> sandbox.Policy:
        """The sandbox policy of ``worker``'s runs, built once (it checks the configured paths)."""
        if worker not in self._policies:
            cfg = self.config
            run = self.run_dir(worker)
            planted = run / ".git"  # a run may leave one; the policy refuses to make a .git writable
            if planted.is_symlink() or planted.is_file():
                planted.unlink()
            elif planted.is_dir():
                shutil.rmtree(planted)
            data = self.data
            setup = worker == SETUP
            exports = self.paths.artifacts  # where H.export writes the model the verifier scores
            exports.mkdir(parents=True, exist_ok=True)
            self._policies[worker] = sandbox.policy_for(
                run, repo=self.root, tmp=rundir.tmp_for(run), mode=cfg.sandbox,
                # the setup command prepares the corpus, its holdout included; an experiment writes its export
                write=tuple(cfg.sandbox_write) + ((str(data), str(sandbox.holdout_cache(_environ.snapshot())))
                                                  if setup else (str(exports),)),
                read=tuple(cfg.sandbox_read),
                include=tuple(cfg.sandbox_include), network=bool(cfg.sandbox_network) or setup, data=data,
                memory_mb=cfg.sandbox_memory_mb, file_mb=cfg.sandbox_file_mb)
        return self._policies[worker]

    def begin(self, check: Verification, run_dir: str | Path, env: Mapping[str, str] | None,
              log_path: str | Path, worker: int = 0) -> Pending:
        """``check`` begun for one run of ``worker``: the model verifier in its own sandbox
        (:func:`.verify.confined`), a verify or guard command under the run's policy."""
        cfg = self.config
        return check.begin(run_dir, env, log_path,
                           confine=confined(cfg.sandbox, repo=self.root, env=env, memory_mb=cfg.sandbox_memory_mb,
                                            file_mb=cfg.sandbox_file_mb),
                           confine_command=lambda command: self.argv(command, worker))

    def label(self, worker: int = 0) -> str:
        """The boundary ``worker``'s runs actually get here, for their rows (:func:`.sandbox.label`)."""
        return sandbox.label(self.policy(worker))

    def describe(self) -> str:
        """What the boundary is here, in one line (never silent when Landlock is unavailable). Raises
        :class:`SandboxError` when ``sandbox = 'landlock'`` and the kernel has none. Says so when the
        dataset's holdout lies under a path runs may read (then it cannot catch training on it)."""
        line = sandbox.describe(self.policy(0))
        hidden = sandbox.holdout_cache(_environ.snapshot())
        exposed = sandbox.readable_root(self.policy(0), hidden) if self.confined and hidden.exists() else None
        if exposed:
            line += (f"; warning: the dataset's holdout {hidden} is under {exposed}, which runs may read: keep the "
                     "dataset outside the readable paths (sandbox_read, system folders) for the holdout to hold")
        return line

    @property
    def confined(self) -> bool:
        """True when runs get a kernel-enforced filesystem boundary here."""
        if self._confined is None:
            self._confined = self.config.sandbox != "none" and (sandbox.landlock_abi()[0] > 0
                                                                 or self.policy(0).bubblewrap is not None)
        return self._confined

    # -- one run --------------------------------------------------------------------------------------
    def check_disk(self, during: bool = False) -> str | None:
        """Why a run may not start (too little free disk for the store, the log or the run), else None; with
        ``during``, why a running one must stop (under ``disk_floor_mb``: the store must still write its row)."""
        need = int(self.config.disk_floor_mb if during else self.config.min_free_mb)
        when = "while a run writes (disk_floor_mb)" if during else "before a run (min_free_mb)"
        for path in (self.paths.state, self.paths.session()):
            while not path.exists() and path != path.parent:  # not made yet: the disk it will be on
                path = path.parent
            why = sandbox.check_disk(path, need, when) if need else None
            if why:
                return why
        return None

    def prepare(self, sha: str, worker: int = 0) -> Path:
        """Make ``worker``'s run directory an exact export of ``sha`` (plus the ``sandbox_include`` links)."""
        self.policy(worker)  # the paths are checked (and the caches made) before anything runs
        run = self.run_dir(worker)
        rundir.refresh(self.root, sha, run, include=tuple(self.config.sandbox_include))
        return run

    def argv(self, command: str, worker: int = 0) -> list[str]:
        """``command`` under ``worker``'s sandbox policy."""
        return sandbox.wrap(command, self.policy(worker))

    def env(self, extra: Mapping[str, str]) -> dict[str, str]:
        """The run's environment without secrets (by name and by value), plus the loop's ``extra``; the
        withheld values are remembered for :attr:`secrets`."""
        clean = scrub.scrub_env(_environ.snapshot(), allow=tuple(self.config.env_allow), extra=extra)
        self._secrets.update(clean.secrets)
        return clean.env

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values withheld from runs: never written to a log, the store, results.tsv or a commit."""
        if not self._secrets:
            self.env({})
        return tuple(self._secrets)

    def redact(self, text: str) -> str:
        return scrub.redact(text, self.secrets)

    def changes(self, sha: str, worker: int = 0) -> list[str]:
        """Tracked paths whose content, mode or type differs from ``sha`` in the run directory (caches and
        the include links are not changes)."""
        try:
            return rundir.changes(self.root, sha, self.run_dir(worker), include=tuple(self.config.sandbox_include))
        except OSError as e:  # the run made its own directory unreadable: that is a change
            return [f"the run directory ({e.strerror})"]


__all__ = ["Boundary", "SETUP", "THREAD_VARS", "thread_env", "usable_cores"]
