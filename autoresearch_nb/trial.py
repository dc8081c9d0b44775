"""What a run means and what every run of one loop shares.

:func:`classify` is the one place a finished run becomes a status, a reason and a metric; :func:`finished`
writes it into the experiment's record. :class:`Plan` is the driver's side of the one pipeline
(:mod:`.pipeline`): it builds every run's :class:`~.pipeline.Job` (command, limits, environment, checks, stop
rules), runs one here (the serial loop, the repeats, the setup command) and finishes every outcome the same
way, wherever it ran.

>>> verdict = classify(outcome.result, "val_bpb", outcome.changed, "train.py")   # doctest: +SKIP
Verdict(status=<Status.RUNNING: 'running'>, reason='', metric=1.5)
"""
from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .boundary import SETUP, Boundary, run_threads, thread_env
from . import clock
from .errors import AutoresearchError
from .events import EventKind
from .layout import RunPaths
from . import provenance
from . import environ
from .plumbing import git
from .records import Experiment, RunResult, Status
from .runner import run_command
from .watch import CheckoutWatch
from . import pipeline
from .pipeline import Hooks, Job, LocalSite, Outcome, StopSignal, execute, run_job  # noqa: F401 (re-exported)
from .prune import Prune, Reference
from .verify import ENV_EXPORT, MODEL, Verification, artifact_dir, budget_clock, prepare_command, uses_harness

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger("autoresearch_nb")
DEFAULT_SEED = 42
SETUP_TIMEOUT_S = 1800.0  # the setup command's own limit (data preparation, tokenizer training)


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
    elif result.flag == Status.PRUNED:  # stopped by the loop on purpose (autoresearch_nb.prune): no crash
        status, reason = Status.PRUNED, result.flag_reason
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
                     budget_clock=result.clock, run_seconds=result.run_seconds,
                     phase_seconds=dict(result.phase_seconds),
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
        # The budget clock, decided once as the loop opens: cpu for a harness train.py on a CPU device (clock.py)
        harness = uses_harness(config, repo_root)
        self.clock = budget_clock(config, repo_root)
        self.verification = Verification.of(config, repo_root)  # decided once, from the file as the loop opens
        if self.verification is not None:
            self.verification = replace(self.verification, clock=self.clock)
        self.threads = run_threads(config.workers, parallel=config.workers > 1 or config.executor == "ray")
        self.budget = clock.Budget(self.clock, self.threads,
                                   float(config.time_budget_s) if harness else None, float(config.budget_tolerance),
                                   clock.overhead_allowance(config.time_budget_s, config.budget_overhead_s))
        self.boundary = Boundary(self.repo_root, tag, config)
        self.watch = CheckoutWatch(self.repo_root, tag)
        self.stop = stop
        self.note: Callable[..., None] = lambda text, purpose="checkout": None  # the loop's MESSAGE events
        # artifact folders never pruned (the best experiment's number); the loop sets it, it knows the best
        self.protect: Callable[[], Sequence[str]] = lambda: ()
        # the best's curve and the baseline's spread for early stopping (autoresearch_nb.prune); the loop sets it
        self.reference: Callable[[], Reference | None] = lambda: None
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

    def job(self, number: int | str, sha: str, seed: int | None, label: str, *, purpose: str = "experiment",
            repeat: int = 0) -> Job:
        """The job of one run of commit ``sha``: this loop's command, limits, environment (``seed`` None: the
        setup command's, without a seed, a budget or verification), log ``<label>.log``, checks and stop rules
        (:data:`.pipeline.RULES`). Every driver builds its jobs here."""
        cfg = self.config
        setup = purpose == "setup"
        rules = () if setup else tuple(pipeline.RULES)
        if purpose == "experiment" and repeat == 0 and str(cfg.prune).lower() == "auto" and self.budget.seconds:
            reference = self.reference()  # the best at this run's own start (with workers too)
            if reference is not None:
                rules += (Prune(reference, float(cfg.prune_min_progress), float(cfg.prune_margin)),)
        return Job(number, sha, cfg.setup if setup else cfg.command, cfg.editable,
                   SETUP_TIMEOUT_S if setup else clock.hard_limit(cfg.hard_timeout_s, self.clock),
                   self.env(None if setup else seed, "setup" if setup else number), str(self.log_path(label)),
                   tuple(cfg.env_allow), stall_s=None if setup else cfg.stall_s,
                   verification=None if setup else self.checks(), purpose=purpose, seed=seed, repeat=repeat,
                   rules=rules, budget=clock.Budget() if setup else self.budget)

    def run_here(self, job: Job, stop: StopSignal, hooks: Hooks | None = None, worker: int = 0) -> Outcome:
        """``job`` run in this thread in ``worker``'s run directory (:func:`.pipeline.run_job`): the serial
        loop's, the repeats' and the setup command's way (a notebook's interrupt reaches the run)."""
        return run_job(job, LocalSite(self.boundary, worker), stop, hooks, worker=worker)

    def finish(self, job: Job, outcome: Outcome) -> tuple[RunResult, list[str]]:
        """The driver's side of a finished run, the same for every driver: the disk floor's halt stops the loop
        after this experiment, the user's checkout is compared, data passes are said once. Returns the result
        and every path the run (or, without a sandbox, anyone) changed."""
        if outcome.halt and self.stop is not None:
            self.stop.set(reason=outcome.halt)
        label = Path(job.log_path).stem
        self.warn_passes(outcome.result, label)
        return outcome.result, [*outcome.changed, *self.checkout(label)]

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
        job = self.job("setup", head, None, "setup", purpose="setup")
        log_path = Path(job.log_path)
        emit(EventKind.SETUP_STARTED, message=f"setup: {command}")
        result, _ = self.finish(job, self.run_here(job, self.stop or StopSignal(), worker=SETUP))
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
        return RunPaths(self.repo_root, self.tag).log(name)

    def env(self, seed: int | None, number: int | str) -> dict[str, str]:
        """The scrubbed environment of one run; ``AUTORESEARCH_RUN`` lets a reopened loop find its orphans;
        the dataset the loop chose (its sandbox lets runs read it; on CUDA a prepared bigger corpus) is named."""
        extra = {"AUTORESEARCH_RUN": f"{self.tag}/{number}", "PYTHONUNBUFFERED": "1"}
        if not environ.get("AUTORESEARCH_DATA"):
            extra["AUTORESEARCH_DATASET"] = self.boundary.data.name
        if seed is not None:  # the setup command gets neither a seed nor a budget
            extra.update(AUTORESEARCH_TIME_BUDGET=f"{self.config.time_budget_s:g}", AUTORESEARCH_SEED=str(seed))
            extra[clock.ENV_CLOCK] = self.clock
            if self.verification is not None and self.verification.command == MODEL:
                extra[ENV_EXPORT] = str(artifact_dir(self.repo_root, self.tag, number))
            if self.config.workers > 1 or self.config.executor == "ray":
                # runs side by side (workers, and a confirmation run beside them): each its share of the cores
                extra.update(thread_env(self.config.workers))
            extra[clock.ENV_THREADS] = str(self.threads)  # what the loop divides the run's CPU seconds by
        return self.boundary.env(extra)
