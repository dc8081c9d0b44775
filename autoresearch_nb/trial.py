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

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .git import STATE_DIR
from .records import CurvePoint, Experiment, RunResult, Status
from .runner import Run, scrub_env
from .verify import ENV_EXPORT, MODEL, Verification, artifact_dir

if TYPE_CHECKING:
    from .config import Config

DEFAULT_SEED = 42


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
        """Seconds runs have been attached so far (experiments, repeats, confirmations), the one in flight too."""
        with self._lock:
            return self._busy + (time.monotonic() - self._since if self._since is not None else 0.0)


def execute(command: str, run_dir: str | Path, log_path: str | Path, *, env: Mapping[str, str] | None,
            timeout_s: float, stop: StopSignal, on_point: Callable[[CurvePoint], None] | None = None,
            on_start: Callable[[int], None] | None = None,
            on_interrupt: Callable[[RunResult], None] | None = None,
            verify: Callable[[RunResult], RunResult] | None = None, stall_s: float | None = None) -> RunResult:
    """Run ``command`` in ``run_dir`` to its end, the hard timeout, or a forced stop.

    A ``KeyboardInterrupt`` (a notebook's "interrupt kernel") ends the run cleanly, hands the result to
    ``on_interrupt`` (so the caller records it) and is re-raised. ``verify`` sees a result that was not
    interrupted and may replace it (a verifier that recomputes the metric on its own). ``stall_s``: kill a run
    that prints nothing for that long (the stall watchdog; None: off).
    """
    run = Run(command, run_dir, log_path, timeout_s=timeout_s, env=env, on_point=on_point, on_start=on_start,
              stall_s=stall_s)
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
        result = verify(result)
    return result


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
    return exp.with_(status=verdict.status, reason=verdict.reason, metric=verdict.metric,
                     summary=dict(result.summary), exit_code=result.exit_code, error=result.error,
                     ended_at=time.time(), wall_seconds=result.wall_s, verified=result.verified,
                     claimed=result.claimed,
                     training_seconds=float(training) if isinstance(training, (int, float)) else None)


class Plan:
    """What every run of one loop shares: its seed, log path and environment."""

    def __init__(self, repo_root: Path, tag: str, config: "Config") -> None:
        self.repo_root = Path(repo_root)
        self.tag = tag
        self.config = config
        self.verification = Verification.of(config, repo_root)  # decided once, from the file as the loop opens

    def verifier(self, run_dir: str | Path, env: Mapping[str, str] | None,
                 log_path: str | Path) -> Callable[[RunResult], RunResult] | None:
        """:func:`execute`'s ``verify`` hook for one run, or None when verification and the guard are off."""
        check = self.verification
        return None if check is None else lambda result: check.check(result, run_dir, env, log_path)

    def seed(self, seed: int | None = None) -> int:
        """The seed a run gets: the one asked for, else the configured one, else the default."""
        if seed is not None:
            return seed
        return self.config.seed if self.config.seed is not None else DEFAULT_SEED

    def log_path(self, name: str) -> Path:
        return self.repo_root / STATE_DIR / "logs" / self.tag / f"{name}.log"

    def env(self, seed: int | None, number: int | str) -> dict[str, str]:
        """The scrubbed environment of one run; ``AUTORESEARCH_RUN`` lets a reopened loop find its orphans."""
        extra = {"AUTORESEARCH_RUN": f"{self.tag}/{number}", "PYTHONUNBUFFERED": "1"}
        if seed is not None:  # the setup command gets neither a seed nor a budget
            extra.update(AUTORESEARCH_TIME_BUDGET=f"{self.config.time_budget_s:g}", AUTORESEARCH_SEED=str(seed))
            if self.verification is not None and self.verification.command == MODEL:
                extra[ENV_EXPORT] = str(artifact_dir(self.repo_root, self.tag, number))
        return scrub_env(allow=self.config.env_allow, extra=extra)
