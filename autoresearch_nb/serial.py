"""``optimize`` one experiment at a time, and when any ``optimize`` stops proposing: a count, a wall time, the
run's cap, or too many proposals in a row that could not run (:class:`Limits`, shared with the parallel driver).
"""
from __future__ import annotations

import time
from collections.abc import Callable

from .agents import QueueExhausted
from .errors import BudgetExceeded, described
from .events import EventKind
from .records import Experiment, Status
from .pipeline import StopSignal

MAX_IDLE_PROPOSALS = 10  # proposals in a row that never ran before optimize() gives up


class Limits:
    """The stop conditions of one ``optimize`` call, started when it is made."""

    def __init__(self, n: int | None, max_seconds: float | None, max_experiments: int | None,
                 run_size: Callable[[], int]) -> None:
        self.n = n
        self.max_seconds = max_seconds
        self.max_experiments = max_experiments
        self.run_size = run_size
        self.start = time.monotonic()

    def reason(self, count: int) -> str:
        """Why to stop proposing after ``count`` experiments of this call, or "" to go on."""
        if self.n is not None and count >= self.n:
            return f"{self.n} experiments"
        if self.max_seconds is not None and time.monotonic() - self.start >= self.max_seconds:
            return f"time limit of {self.max_seconds:g} s"
        cap = self.max_experiments
        if cap is not None and self.run_size() >= cap:
            return f"max_experiments={cap} reached"
        return ""


def optimize_serially(step: Callable[[], Experiment], limits: Limits, stop: StopSignal,
                      emit: Callable[..., None], label: str) -> list[Experiment]:
    """Call ``step`` until a limit, the agent's end, the cost limit or ``stop``; LOOP_STARTED/FINISHED around."""
    done: list[Experiment] = []
    idle = 0
    emit(EventKind.LOOP_STARTED, message=label)
    reason = "done"
    try:
        while True:
            if stop.is_set():
                reason = stop.reason or "stopped"
                break
            why = limits.reason(len(done))
            if why:
                reason = why
                break
            try:
                exp = step()
            except QueueExhausted as e:
                reason = str(e) or "the agent has no more proposals"
                break
            except BudgetExceeded as e:
                reason = f"cost limit: {e}"
                break
            done.append(exp)
            idle = 0 if exp.status.ran or exp.status == Status.INTERRUPTED else idle + 1
            if exp.status == Status.INTERRUPTED:
                reason = "interrupted"
                break
            if idle >= MAX_IDLE_PROPOSALS:
                reason = f"{idle} proposals in a row could not run; stopping (see their reasons)"
                break
    except BaseException as e:
        emit(EventKind.LOOP_FINISHED, message=described(e), error=True)
        raise
    emit(EventKind.LOOP_FINISHED, message=reason)
    return done
