"""One run of one commit: start the command in a run directory, wait, and classify what came back.

Every kind of run goes through here: an experiment (:meth:`Loop.run`), the setup command, a noise,
confirmation or re-validation repeat, and a parallel worker's result. :func:`execute` takes a plain run
directory (not a git worktree), so a sandboxed export or a remote copy works the same; :func:`classify` is the
one place a result becomes a status, a reason and a metric.

>>> stop = StopSignal()
>>> r = execute("python -c 'print(\\"---\\"); print(\\"score: 1.5\\")'", ".", "/tmp/x.log", env=None,  # doctest: +SKIP
...             timeout_s=30, stop=stop)
>>> classify(r, "score")   # doctest: +SKIP
Verdict(status=<Status.RUNNING: 'running'>, reason='', metric=1.5)
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .boundary import SETUP, Boundary, thread_env
from .errors import AutoresearchError
from .events import EventKind
from .git import STATE_DIR
from . import provenance
from .plumbing import git
from .records import CurvePoint, Experiment, RunResult, Status
from .runner import LOG_CAP, Run, run_command
from .watch import CheckoutWatch
from .verify import ENV_EXPORT, MODEL, Pending, Verification, artifact_dir, prepare_command

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger("autoresearch_nb")
DEFAULT_SEED = 42
SETUP_TIMEOUT_S = 1800.0  # the setup command's own limit (data preparation, tokenizer training)


class StopSignal:
    """The loop's stop request: checked between experiments; with ``force`` it also cancels the run in flight.

    Every run of the loop is attached here while it runs, so the signal also keeps the device's busy clock
    (:attr:`busy_s`), the numerator of the duty cycle.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._run: Run | None = None
        self._since: float | None = None  # when the attached run started
        self._busy = 0.0
        self.force = False
        self.reason = ""

    def set(self, force: bool = False, reason: str = "stopped by the user") -> None:
        with self._lock:
            self.reason, self.force = reason, force
            self._event.set()
            run = self._run
        if force and run is not None:
            run.cancel()

    def clear(self) -> None:
        with self._lock:
            self._event.clear()
            self.force, self.reason = False, ""

    def is_set(self) -> bool:
        return self._event.is_set()

    @property
    def forced(self) -> bool:
        return self._event.is_set() and self.force

    def attach(self, run: Run | None) -> None:
        """Make ``run`` the one a forced stop cancels (None: no run in flight). A forced stop already
        requested cancels it at once."""
        with self._lock:
            now = time.monotonic()
            if self._since is not None:
                self._busy += now - self._since
            self._run, self._since = run, (now if run is not None else None)
            cancel = run is not None and self._event.is_set() and self.force
        if cancel and run is not None:
            run.cancel()


    @property
    def busy_s(self) -> float:
        """Seconds runs have been attached so far (experiments, repeats, confirmations), the one in flight too,
        plus the verifications that followed them (:meth:`add_busy`)."""
        with self._lock:
            return self._busy + (time.monotonic() - self._since if self._since is not None else 0.0)

    def add_busy(self, seconds: float) -> None:
        """Count ``seconds`` of useful device work done outside an attached run (a verification)."""
        with self._lock:
            self._busy += max(0.0, seconds)


def execute(command: str, run_dir: str | Path, log_path: str | Path, *, env: Mapping[str, str] | None,
            timeout_s: float, stop: StopSignal, on_point: Callable[[CurvePoint], None] | None = None,
            on_start: Callable[[int], None] | None = None,
            on_interrupt: Callable[[RunResult], None] | None = None,
            verify: Callable[[RunResult], RunResult] | None = None, stall_s: float | None = None,
            secrets: tuple[str, ...] = (), log_cap: int = LOG_CAP,
            watch: Callable[[], str | None] | None = None) -> RunResult:
    """Run ``command`` in ``run_dir`` to its end, the hard timeout, or a forced stop.

    A ``KeyboardInterrupt`` (a notebook's "interrupt kernel") ends the run cleanly, hands the result to
    ``on_interrupt`` (so the caller records it) and is re-raised. ``verify`` sees a result that was not
    interrupted and may replace it (a verifier that recomputes the metric on its own); one with a ``close()``
    (a :class:`~.verify.Pending`, begun before the run so it warms up meanwhile) is closed here however the
    run ends. ``stall_s``: kill a run
    that prints nothing for that long (the stall watchdog; None: off). ``secrets``: values masked in the log;
    ``log_cap``: bytes of log kept (head and tail). ``watch``: called every second; a reason it returns
    stops the run (failed, with that reason: the disk floor).
    """
    try:
        run = Run(command, run_dir, log_path, timeout_s=timeout_s, env=env, on_point=on_point, on_start=on_start,
                  stall_s=stall_s, secrets=secrets, log_cap=log_cap, watch=watch)
        stop.attach(run)
        try:
            result = run.wait()
        except KeyboardInterrupt:
            run.cancel()
            result = run.wait()
            if on_interrupt is not None:
                on_interrupt(result)
            raise
        finally:
            stop.attach(None)
        if verify is not None and not result.interrupted:
            started = time.monotonic()
            result = verify(result)
            stop.add_busy(time.monotonic() - started)  # verification is the device's work too (the duty cycle)
        return result
    finally:
        close = getattr(verify, "close", None)
        if close is not None:
            close()  # a warm verifier of a run that ended badly (or raised) must not outlive it


class Verdict(NamedTuple):
    """How a run ended: ``status`` RUNNING means a clean run, waiting for the keep rule."""

    status: Status
    reason: str
    metric: float | None


def metric_of(summary: Mapping[str, object], name: str) -> tuple[float | None, str]:
    """The metric from a run's summary and, when there is none usable, why not."""
    value = summary.get(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None, f"no {name!r} in the run's summary (a '---' line, then 'key: value' lines)"
    value = float(value)
    if math.isnan(value):
        return None, f"{name} is NaN"
    if math.isinf(value):
        return None, f"{name} is {value} (not finite)"
    return value, ""


def violations(changed: Sequence[str], editable: str) -> list[str]:
    """The paths a run changed, in words: the editable file first, marked as rewritten by the run."""
    out = [p for p in changed if p != editable]
    if editable in changed:
        out.insert(0, editable + " (rewritten by the run)")
    return out


def classify(result: RunResult, metric: str, changed: Sequence[str] = (), editable: str = "") -> Verdict:
    """The status, reason and metric of a finished run (a non-finite metric is a crash with its reason)."""
    value, missing = metric_of(result.summary, metric)
    status, reason = Status.RUNNING, ""
    if result.interrupted:
        status, reason = Status.INTERRUPTED, "stopped by the user"
    elif result.timed_out:
        status, reason = Status.TIMEOUT, result.error or "timeout"
    elif result.exit_code != 0 or result.failed:
        status, reason = Status.CRASH, result.error or f"exit code {result.exit_code}"
    elif result.flag is not None:  # verification or the guard refused a clean run (autoresearch_nb.verify)
        status, reason = result.flag, result.flag_reason
    elif value is None:
        status, reason = Status.CRASH, missing
    changed = violations(changed, editable)
    if changed and status != Status.INTERRUPTED:
        status, reason = Status.VIOLATION, f"the run changed files besides {editable}: " \
                                           f"{', '.join(changed[:10])} (reverted)"
    return Verdict(status, reason, value)


def finished(exp: Experiment, result: RunResult, metric: str, changed: Sequence[str], editable: str) -> Experiment:
    """``exp`` updated with a finished run: status, reason, metric, summary, times."""
    verdict = classify(result, metric, changed, editable)
    training = result.summary.get("training_seconds")
    reason, error = verdict.reason, result.error
    if result.log_cut:  # said in the row (the reason of a failed run, else its error), so nobody reads a cut
        # log as the whole output; a clean run's reason is rewritten by the keep rule
        cap = f"the log is capped (log_cap_mb): {result.log_cut} bytes from its middle were cut"
        if verdict.status != Status.RUNNING:
            reason = f"{reason}; {cap}"
        error = f"{error}; {cap}" if error else cap
    holdout, gap = holdout_of(result, metric)
    return exp.with_(status=verdict.status, reason=reason, metric=verdict.metric,
                     summary=dict(result.summary), exit_code=result.exit_code, error=error,
                     ended_at=time.time(), wall_seconds=result.wall_s, verified=result.verified,
                     claimed=result.claimed, holdout_bpb=holdout, holdout_gap=gap,
                     **provenance.of_summary(result.summary), sandbox=result.sandbox,
                     training_seconds=float(training) if isinstance(training, (int, float)) else None)


def holdout_of(result: RunResult, metric: str) -> tuple[float | None, float | None]:
    """The verifier's ``holdout_bpb`` of a verified run and its gap to the run's verified ``metric``
    (holdout - val: it widens when a change lowers val but not the holdout, e.g. training on val)."""
    holdout, _ = metric_of(result.summary, "holdout_bpb") if result.verified else (None, "")
    value, _ = metric_of(result.summary, metric)
    if holdout is None:
        return None, None
    return holdout, (holdout - value if value is not None else None)


class Plan:
    """What every run of one loop shares: its seed, log path, environment and boundary (run directory and
    sandbox, :mod:`.boundary`). ``stop``: set (not forced) when the disk is too full for another run."""

    def __init__(self, repo_root: Path, tag: str, config: "Config", stop: StopSignal | None = None) -> None:
        self.repo_root = Path(repo_root)
        self.tag = tag
        self.config = config
        self.verification = Verification.of(config, repo_root)  # decided once, from the file as the loop opens
        self.boundary = Boundary(self.repo_root, tag, config)
        self.watch = CheckoutWatch(self.repo_root, tag)
        self.stop = stop
        self.note: Callable[..., None] = lambda text, purpose="checkout": None  # the loop's MESSAGE events
        # artifact folders never pruned (the best experiment's number); the loop sets it, it knows the best
        self.protect: Callable[[], Sequence[str]] = lambda: ()
        self.setup_done = self.announced = self.warned_passes = False

    def checkout(self, label: str) -> list[str]:
        """After run ``label``: the user's checkout compared with the last look. Under the sandbox a change
        cannot come from the run, so it is said (``note``) without blame; without one it is a violation naming
        the snapshot to restore from. The user's files are never reverted."""
        moved = self.watch.changed()
        if not moved:
            return []
        listed = ", ".join(moved[:10]) + (f" and {len(moved) - 10} more" if len(moved) > 10 else "")
        if self.boundary.confined:
            self.note(f"your checkout changed during run {label} ({listed}); the sandboxed run cannot write "
                      f"there (an editor?); the session's snapshot is {self.watch.ref}")
            return []
        return [f"{path} in your checkout (not reverted; restore from {self.watch.ref})" for path in moved]

    def run(self, command: str, sha: str, log_path: Path, *, env: Mapping[str, str], stop: StopSignal,
            worker: int = 0, **options: Any) -> tuple[RunResult, list[str]]:
        """Run ``command`` on commit ``sha`` in ``worker``'s run directory under the sandbox: the result and
        the tracked paths the run changed. Too little free disk is a failed result (nothing runs) and stops
        the loop after this experiment. ``options``: :func:`execute`'s callbacks, ``timeout_s``, ``stall_s``."""
        full = self.boundary.check_disk()
        if full:
            if self.stop is not None:
                self.stop.set(reason=full)
            return RunResult(exit_code=None, timed_out=False, wall_s=0.0, summary={}, failed=True, error=full,
                             log_path=str(log_path)), []
        run_dir = self.boundary.prepare(sha, worker)
        result = execute(self.boundary.argv(command, worker), run_dir, log_path, env=env, stop=stop,
                         secrets=self.boundary.secrets, log_cap=int(self.config.log_cap_mb) << 20,
                         verify=self.verifier(run_dir, env, log_path, worker), watch=self.disk_watch(), **options)
        result = replace(result, sandbox=self.boundary.label(worker))
        self.warn_passes(result, Path(log_path).stem)
        return result, self.boundary.changes(sha, worker) + self.checkout(Path(log_path).stem)

    def disk_watch(self) -> Callable[[], str | None]:
        """The check a run gets every second: under ``disk_floor_mb`` free it is stopped and the loop stops
        after it (SQLite cannot write the row that says why once the disk is full)."""
        def low_disk() -> str | None:
            why = self.boundary.check_disk(during=True)
            if why and self.stop is not None:
                self.stop.set(reason=why)
            return why
        return low_disk

    def warn_passes(self, result: RunResult, label: str) -> None:
        """Say once per session (a MESSAGE, ``purpose="data"``) when a run saw its training split more than
        once (the summary's ``data_passes``): its val_bpb then rewards memorising a small corpus."""
        passes = result.summary.get("data_passes")
        if self.warned_passes or not isinstance(passes, (int, float)) or passes <= 1:
            return
        self.warned_passes = True
        corpus = result.summary.get("corpus", "the corpus")
        self.note(f"run {label} went {passes:g} times over the training split of {corpus} within its "
                  f"{self.config.time_budget_s:g} s budget: it repeats data, so val_bpb rewards memorising it; "
                  "prepare a bigger corpus (autoresearch-nb prepare --dataset tinystories|climbmix|FOLDER; on "
                  "CUDA a prepared one is used by default)", "data")

    def setup(self, head: str, emit: Callable[..., None], base_sha: str) -> None:
        """The ``setup`` command, once per session, in its own run directory and sandbox with the network and the
        dataset folder writable (downloads), 30 min of its own (never an experiment's timeout). A failing setup
        raises :class:`AutoresearchError`: the harness, not an experiment, is broken. Says first, once, what
        protects the user's files here."""
        self.announce(emit, base_sha)
        command = self.config.setup
        if not command or self.setup_done:
            self.pin(emit)
            return
        log_path = self.log_path("setup")
        emit(EventKind.SETUP_STARTED, message=f"setup: {command}")
        result, _ = self.run(command, head, log_path, worker=SETUP, env=self.env(None, "setup"),
                             timeout_s=SETUP_TIMEOUT_S, stop=self.stop or StopSignal())
        if result.interrupted:
            raise KeyboardInterrupt("setup interrupted")
        ok = result.exit_code == 0 and not result.timed_out
        emit(EventKind.SETUP_FINISHED, message="setup done" if ok else "setup failed", error=not ok)
        if not ok:
            raise AutoresearchError(f"the setup command {command!r} failed "
                                    f"({result.error or f'exit code {result.exit_code}'}); see {log_path}")
        self.setup_done = True
        self.pin(emit)

    def pin(self, emit: Callable[..., None]) -> None:
        """Once per session, before the first experiment, with the model verifier: prepare the editable file's
        tokenizer in a trusted process of this package (so no run has to write it), then pin the hashes of the
        files the verifier reads (:func:`.provenance.pin`); every verification refuses a file that changed."""
        check = self.verification
        if check is None or check.command != MODEL or check.pins is not None:
            return
        env = self.env(None, "pins")
        log_path = self.log_path("pins")
        with tempfile.TemporaryDirectory(prefix="autoresearch-pin-") as cwd:
            done = run_command(prepare_command(self.repo_root / self.config.editable), cwd, log_path,
                               timeout_s=SETUP_TIMEOUT_S, env=env)
        if done.exit_code != 0 or done.timed_out:
            emit(EventKind.MESSAGE, purpose="verify", message=(
                f"could not prepare the tokenizer of {self.config.editable} or tokenize the train split before "
                f"the session ({done.error or f'exit code {done.exit_code}'}; see {log_path}): a tokenizer a run "
                "writes is not trusted by the verifier, and a run tokenizes what is missing inside its own time "
                "limit"))
        self.verification = replace(check, pins=json.dumps(provenance.pin(self.boundary.data)))

    def announce(self, emit: Callable[..., None], base_sha: str) -> None:
        """Say once per session what protects the user's files here (a MESSAGE event, ``purpose="sandbox"``),
        and that an uncommitted edit of the editable file is not what runs."""
        if self.announced:
            return
        self.announced = True
        line = self.boundary.describe()  # sandbox = 'landlock' without Landlock raises SandboxError here
        if self.watch.ref:
            line += f"; your checkout is snapshotted at {self.watch.ref}"
        log.info("%s", line)
        emit(EventKind.MESSAGE, message=line, purpose="sandbox")
        editable = self.config.editable
        if git(self.repo_root, "status", "--porcelain", "--untracked-files=no", "--", editable, check=False):
            emit(EventKind.MESSAGE, purpose="checkout", message=(
                f"{editable} has uncommitted changes in your checkout; the run starts from its last commit "
                f"({base_sha[:7]}), not from them: commit them first to use them"))

    def verifier(self, run_dir: str | Path, env: Mapping[str, str] | None, log_path: str | Path,
                 worker: int = 0) -> Pending | None:
        """:func:`execute`'s ``verify`` hook for one run of ``worker``, begun now (the model verifier warms up
        while the run trains), or None when verification and the guard are off."""
        check = self.checks()
        return None if check is None else self.boundary.begin(check, run_dir, env, log_path, worker)

    def checks(self) -> Verification | None:
        """The verification of the next run, told which exported model to keep whatever its age: the best's."""
        check = self.verification
        return None if check is None else replace(check, protect=tuple(self.protect()))

    def seed(self, seed: int | None = None) -> int:
        """The seed a run gets: the one asked for, else the configured one, else the default."""
        if seed is not None:
            return seed
        return self.config.seed if self.config.seed is not None else DEFAULT_SEED

    def log_path(self, name: str) -> Path:
        return self.repo_root / STATE_DIR / "logs" / self.tag / f"{name}.log"

    def env(self, seed: int | None, number: int | str) -> dict[str, str]:
        """The scrubbed environment of one run; ``AUTORESEARCH_RUN`` lets a reopened loop find its orphans;
        the dataset the loop chose (its sandbox lets runs read it; on CUDA a prepared bigger corpus) is named."""
        extra = {"AUTORESEARCH_RUN": f"{self.tag}/{number}", "PYTHONUNBUFFERED": "1"}
        if not os.environ.get("AUTORESEARCH_DATA", "").strip():
            extra["AUTORESEARCH_DATASET"] = self.boundary.data.name
        if seed is not None:  # the setup command gets neither a seed nor a budget
            extra.update(AUTORESEARCH_TIME_BUDGET=f"{self.config.time_budget_s:g}", AUTORESEARCH_SEED=str(seed))
            if self.verification is not None and self.verification.command == MODEL:
                extra[ENV_EXPORT] = str(artifact_dir(self.repo_root, self.tag, number))
            if self.config.workers > 1 or self.config.executor == "ray":
                # runs side by side (workers, and a confirmation run beside them): each its share of the cores
                extra.update(thread_env(self.config.workers))
        return self.boundary.env(extra)
