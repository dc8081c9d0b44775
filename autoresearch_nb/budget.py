"""When ``optimize`` stops proposing: a count, a wall time, the run's cap, or too many proposals in a row that
could not run. Shared by the one-at-a-time loop and the parallel driver."""
from __future__ import annotations

import time
from collections.abc import Callable

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
