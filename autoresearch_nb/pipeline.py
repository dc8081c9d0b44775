"""One way a run happens, whatever drives it: :func:`run_job` turns a :class:`Job` into an :class:`Outcome`.

Every run of a commit goes through :func:`run_job`: an experiment of the serial loop and of the lookahead, a
noise, confirmation or re-validation repeat, the setup command, a local worker's job and a Ray task. Drivers are
strategies over it: they choose *when* a job runs and *where* (a :class:`Site`), and they wait for it in their own
way (the serial loop in its thread, so a notebook's interrupt reaches the run; a local worker in a thread; Ray in
a task). What happens to a run is written once, here:

1. ``prepare``: free disk checked (too little: a failed outcome with ``halt`` set, nothing runs), the run
   directory made an export of the commit, the verification begun (the model verifier warms up meanwhile);
2. ``run``: the command under the site's sandbox, with the stall watchdog, the hard timeout, the disk floor and
   every :class:`StopRule` of the job checked about once a second against the curve so far;
3. ``verify``: the loop's own number and the guard (:mod:`.verify`), for a run that was not interrupted;
4. ``done``: the boundary the run actually got and the tracked paths it changed.

Each step is announced through :attr:`Hooks.on_phase` (the dashboard and console see the same phases in every
mode; a Ray task streams them back). :data:`RULES` holds the stop rules every new job carries: a rule is a
picklable object (it travels with a Ray task) whose ``check`` sees the job, the curve and the run's seconds.

>>> outcome = run_job(job, LocalSite(boundary, worker=0), StopSignal())   # doctest: +SKIP
>>> outcome.result.exit_code, outcome.changed                             # doctest: +SKIP
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .clock import Budget
from .errors import RunInterrupted
from .records import CurvePoint, RunResult, Status
from .runner import LOG_CAP, Run, held_interrupts
from .verify import Pending, Verification

if TYPE_CHECKING:
    from .git import Workspace
    from .records import Experiment

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


def not_started(log_path: str | Path) -> RunResult:
    """The result of a run interrupted before its process started."""
    return RunResult(exit_code=None, timed_out=False, wall_s=0.0, summary={}, failed=False,
                     error="interrupted before the run started", log_path=str(log_path), interrupted=True)


def execute(command: str, run_dir: str | Path, log_path: str | Path, *, env: Mapping[str, str] | None,
            timeout_s: float, stop: StopSignal, on_point: Callable[[CurvePoint], None] | None = None,
            on_start: Callable[[int], None] | None = None,
            on_interrupt: Callable[[RunResult], None] | None = None,
            verify: Callable[[RunResult], RunResult] | None = None, stall_s: float | None = None,
            secrets: tuple[str, ...] = (), log_cap: int = LOG_CAP,
            watch: Callable[[], str | None] | None = None, budget: Budget | None = None,
            on_phase: Callable[[str], None] | None = None) -> RunResult:
    """Run ``command`` in ``run_dir`` to its end, the hard timeout, or a forced stop.

    A ``KeyboardInterrupt`` (a notebook's "interrupt kernel") ends the run cleanly, hands the result to
    ``on_interrupt`` (so the caller records it) and is re-raised. ``verify`` sees a result that was not
    interrupted and may replace it (a verifier that recomputes the metric on its own); one with a ``close()``
    (a :class:`~.verify.Pending`, begun before the run so it warms up meanwhile) is closed here however the
    run ends. ``stall_s``: kill a run
    that prints nothing for that long (the stall watchdog; None: off). ``secrets``: values masked in the log;
    ``log_cap``: bytes of log kept (head and tail). ``watch``: called every second; a reason it returns
    stops the run (failed, with that reason: the disk floor). ``budget``: the clock the hard timeout counts on
    (:mod:`.clock`; default wall). ``on_phase``: the run's own phases as the runner sees them (``train`` at the
    first progress line, then what the run's phase lines name: ``evaluate``).
    """
    try:
        budget = budget or Budget()
        run: Run | None = None
        try:
            # An interrupt while the run starts (its pid recorded, its reader started) waits for the run to
            # exist, then lands below where it is stopped and recorded: never a process left, a row left running.
            with held_interrupts():
                run = Run(command, run_dir, log_path, timeout_s=timeout_s, env=env, on_point=on_point,
                          on_start=on_start, stall_s=stall_s, secrets=secrets, log_cap=log_cap, watch=watch,
                          clock=budget.clock, threads=budget.threads, on_phase=on_phase)
                if watch is not None:
                    watch.run = run  # type: ignore[attr-defined]  # a stop rule reads the run's seconds on its clock
                stop.attach(run)
            result = run.wait()
        except KeyboardInterrupt:
            if run is None:
                result = not_started(log_path)
            else:
                run.cancel()
                result = run.wait()
            if on_interrupt is not None:
                on_interrupt(result)
            raise RunInterrupted(f"the run was stopped and recorded as interrupted (its log: {log_path})") \
                from None
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


# prepare: the run directory and sandbox; start: the process's imports and data, up to its first progress line;
# train; evaluate: from the run's "[phase] evaluate" line (the harness prints it); verify: the verifier's score
PHASES = ("prepare", "start", "train", "evaluate", "verify", "done")
PURPOSES = ("experiment", "noise", "confirmation", "pairing", "revalidation", "setup")


class StopRule(Protocol):
    """A reason to end a run early, checked about once a second while it runs (and sent with a Ray task, so
    it must pickle). ``check`` sees the job, the curve so far and the run's seconds on its budget clock, and
    returns why the run must stop, or None."""

    def check(self, job: "Job", points: Sequence[CurvePoint], elapsed_s: float) -> str | None: ...
    # optional ``status``: the Status a run this rule stopped gets (pruned); without one it is a crash


@dataclass(frozen=True)
class NonFinite:
    """Stop a run whose loss is no longer a number (nan or inf): it cannot recover, and waiting for its budget
    wastes it. The loop's own check, from the progress lines: train.py's fast-fail is the agent's to edit."""

    def check(self, job: "Job", points: Sequence[CurvePoint], elapsed_s: float) -> str | None:
        for point in points[-50:]:  # checked every second: the newest points are the ones not seen yet
            if point.loss is not None and not math.isfinite(point.loss):
                where = f"at step {point.step}" if point.step is not None else f"after {point.elapsed_s:.0f} s"
                return f"the loss is {point.loss} {where}: a diverged run cannot recover"
        return None


# The stop rules every job built by the run plan carries (``trial.Plan.job``), in order. The one place a rule
# is added for every driver; early stopping goes here.
RULES: list[StopRule] = [NonFinite()]


@dataclass(frozen=True)
class Job:
    """One run of one commit, as data: what a local worker, the serial loop and a Ray task all receive."""

    number: int | str                  # the experiment, or a label ("noise", "setup") for runs of no experiment
    sha: str
    command: str
    editable: str
    timeout_s: float
    env: dict[str, str]
    log_path: str
    allow: tuple[str, ...] = ()        # secret-looking variables passed through on purpose (env_allow)
    stall_s: float | None = None       # the runner's stall watchdog (Config.stall_s); None: off
    verification: Verification | None = None  # verify and guard after the run (autoresearch_nb.verify)
    purpose: str = "experiment"        # one of PURPOSES
    seed: int | None = None
    repeat: int = 0                    # 0: an experiment's own run; i >= 1: its i-th repeat
    rules: tuple[Any, ...] = ()        # StopRule objects checked while it runs
    budget: Budget = Budget()          # the clock it is measured on and the budget the loop holds it to


@dataclass(frozen=True)
class Outcome:
    """What came back from a run, wherever it ran."""

    number: int | str
    worker: int
    result: RunResult
    changed: tuple[str, ...] = ()       # paths the run changed besides committed content (violations)
    lost: bool = False                  # the worker or node died; the result is a stand-in
    halt: str | None = None             # why the loop must stop after this run (the disk floor), else None


@dataclass
class Hooks:
    """The driver's callbacks for one run (none of them travels to a Ray task: its hooks are a queue's)."""

    on_point: Callable[[CurvePoint], None] | None = None
    on_start: Callable[[int], None] | None = None       # the run's process (group) id
    on_interrupt: Callable[[RunResult], None] | None = None
    on_phase: Callable[[str], None] | None = None


class Site(Protocol):
    """Where a job runs: one worker's run directory on this machine (:class:`LocalSite`) or a Ray task's
    scratch folder (:mod:`.ray_executor`)."""

    secrets: tuple[str, ...]
    log_cap: int

    def check_disk(self, during: bool = False) -> str | None: ...
    def prepare(self, job: Job) -> Path: ...
    def env(self, job: Job) -> dict[str, str]: ...
    def begin(self, job: Job, run_dir: Path, env: Mapping[str, str]) -> Pending | None: ...
    def argv(self, job: Job) -> list[str]: ...
    def label(self) -> str: ...
    def changes(self, job: Job) -> list[str]: ...


class LocalSite:
    """Worker ``worker``'s run directory of a :class:`~.boundary.Boundary` (0: the loop's own; 1..K the
    parallel workers; ``boundary.SETUP`` the setup command's), with ``extra`` variables (a worker's GPU)."""

    def __init__(self, boundary: Any, worker: int = 0, extra: Mapping[str, str] | None = None) -> None:
        self.boundary = boundary
        self.worker = worker
        self.extra = dict(extra or {})
        self.secrets = boundary.secrets
        self.log_cap = int(boundary.config.log_cap_mb) << 20

    def check_disk(self, during: bool = False) -> str | None:
        return self.boundary.check_disk(during=during)

    def prepare(self, job: Job) -> Path:
        return self.boundary.prepare(job.sha, self.worker)

    def env(self, job: Job) -> dict[str, str]:
        return {**job.env, **self.extra}

    def begin(self, job: Job, run_dir: Path, env: Mapping[str, str]) -> Pending | None:
        check = job.verification
        return None if check is None else self.boundary.begin(check, run_dir, env, job.log_path, self.worker)

    def argv(self, job: Job) -> list[str]:
        return self.boundary.argv(job.command, self.worker)

    def label(self) -> str:
        return self.boundary.label(self.worker)

    def changes(self, job: Job) -> list[str]:
        return self.boundary.changes(job.sha, self.worker)


def failed(job: Job, error: str) -> RunResult:
    """The result of a run that never started (no disk, a sandbox or verifier that could not begin)."""
    return RunResult(exit_code=None, timed_out=False, wall_s=0.0, summary={}, failed=True, error=error,
                     log_path=str(job.log_path))


def clean(result: RunResult) -> bool:
    """A run that ended by itself, exit 0, and no check refused it: the over-budget rule's business."""
    return (result.exit_code == 0 and not (result.timed_out or result.interrupted or result.failed)
            and result.flag is None)


def run_job(job: Job, site: Site, stop: StopSignal, hooks: Hooks | None = None, worker: int = 0) -> Outcome:
    """Run ``job`` at ``site`` to its end, its limits, a stop rule or a forced ``stop``: the one pipeline.

    Raises what preparing the site raises (a broken sandbox is the harness's fault); a ``KeyboardInterrupt``
    ends the run, hands its result to ``hooks.on_interrupt`` and is raised again (:func:`.trial.execute`).
    """
    hooks = hooks or Hooks()
    timeline: list[tuple[str, float]] = []  # each phase and when it began (the row's phase_seconds)

    def phase(name: str) -> None:
        timeline.append((name, time.monotonic()))
        if hooks.on_phase is not None:
            hooks.on_phase(name)

    phase("prepare")
    full = site.check_disk()
    if full:
        phase("done")
        return Outcome(job.number, worker, failed(job, full), halt=full)
    try:
        run_dir = site.prepare(job)
        env = site.env(job)
        pending = site.begin(job, run_dir, env)
    except KeyboardInterrupt:  # before the run started: its row is still closed as interrupted
        if hooks.on_interrupt is not None:
            hooks.on_interrupt(not_started(job.log_path))
        raise
    points: list[CurvePoint] = []
    halt: list[str] = []
    fired: list[tuple[Any, str]] = []  # the stop rule that ended the run, and why

    def on_point(point: CurvePoint) -> None:
        points.append(point)
        if hooks.on_point is not None:
            hooks.on_point(point)

    def watch() -> str | None:
        low = site.check_disk(during=True)
        if low:
            halt.append(low)
            return low
        run = getattr(watch, "run", None)
        for rule in job.rules:
            why = rule.check(job, tuple(points), run.seconds() if run is not None else 0.0)
            if why:
                fired.append((rule, why))
                return why
        return None

    verify = None
    if pending is not None:
        def verify(result: RunResult) -> RunResult:
            phase("verify")
            return pending(result)
        verify.close = pending.close  # type: ignore[attr-defined]  # execute() closes it however the run ends
    phase("start")
    try:
        result = execute(site.argv(job), run_dir, job.log_path, env=env, timeout_s=job.timeout_s, stop=stop,
                         on_point=on_point, on_start=hooks.on_start, on_interrupt=hooks.on_interrupt,
                         verify=verify, stall_s=job.stall_s, secrets=site.secrets, log_cap=site.log_cap,
                         watch=watch, budget=job.budget, on_phase=phase)
    except BaseException:
        if pending is not None:
            pending.close()
        raise
    result = replace(result, sandbox=site.label())
    status = getattr(fired[0][0], "status", None) if fired and not result.interrupted else None
    if status is not None:  # a rule that ends runs on purpose (pruning) names their status: not a crash
        result = replace(result, flag=status, flag_reason=fired[0][1], error=fired[0][1])
    over = job.budget.over(result.run_seconds) if clean(result) else None
    if over:  # the loop's own measure, whatever the run's clock said (the agent edits train.py)
        result = replace(result, flag=Status.OVER_BUDGET, flag_reason=over)
    changed = tuple(site.changes(job))
    phase("done")
    result = replace(result, phase_seconds=phase_seconds(timeline))
    return Outcome(job.number, worker, result, changed, halt=halt[0] if halt else None)


def phase_seconds(timeline: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Seconds from each phase's start to the next one's (the last, ``done``, has none), rounded to 0.1 s."""
    out: dict[str, float] = {}
    for (name, began), (_, ended) in zip(timeline, timeline[1:]):
        out[name] = round(out.get(name, 0.0) + ended - began, 1)
    return out


# -- the driver's steps around a run, one function each for every driver --------------------------------------

def launch_commit(workspace: "Workspace", exp: "Experiment", parent: str) -> str:
    """The commit experiment ``exp`` runs: its file committed on ``parent`` (no branch or worktree moves; the
    branch moves only when :func:`settle` keeps it), kept reachable under ``refs/autoresearch/<tag>/<number>``.
    A file identical to the parent's (the baseline) runs the parent itself."""
    from .git import commit_message
    sha = parent
    if exp.content is not None and exp.content != workspace.read(parent):
        sha = workspace.commit_on(parent, exp.content, commit_message(exp))
    workspace.keep_ref(exp.number, sha)
    return sha


def settle(recorder: Any, workspace: "Workspace", exp: "Experiment", head: str) -> "Experiment":
    """The keep step, the same for every driver: the decided row is recorded first (Karpathy's PR #306: a
    crash between the two loses no row), then git: a keep moves the branch and worktree to its commit,
    anything else leaves them on ``head`` (the best), clean."""
    from .records import Status
    exp = recorder.record(exp)
    workspace.restore(exp.sha if exp.status == Status.KEEP and exp.sha else head)
    return exp


__all__ = ["Hooks", "Job", "LocalSite", "NonFinite", "Outcome", "PHASES", "PURPOSES", "RULES", "Site", "StopRule", "failed", "not_started",
           "launch_commit", "run_job", "settle"]
