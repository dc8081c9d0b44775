"""A console observer: one line per experiment, and a throttled progress line while a run is going."""
from __future__ import annotations

import sys
import time
from typing import TextIO

from .events import Event, EventKind
from .records import Status


class ConsolePrinter:
    """Prints loop events to a stream. Subscribe it: ``loop.subscribe(ConsolePrinter())``."""

    def __init__(self, stream: TextIO | None = None, metric: str = "metric", progress: bool | None = None,
                 interval_s: float = 2.0) -> None:
        self.stream = stream or sys.stdout
        self.metric = metric
        # A live \\r progress line only makes sense on a terminal; logs and notebooks get none.
        self.progress = self.stream.isatty() if progress is None else progress
        self.interval_s = interval_s
        self._last = 0.0

    def __call__(self, event: Event) -> None:
        e = event.experiment
        if event.kind == EventKind.PROGRESS and self.progress and event.point is not None:
            now = time.monotonic()
            if now - self._last >= self.interval_s:
                self._last = now
                p = event.point
                loss = f" loss {p.loss:.4f}" if p.loss is not None else ""
                self._write(f"\r  #{e.number if e else '?'} step {p.step}{loss} {p.elapsed_s:6.1f}s", end="")
        elif event.kind == EventKind.RUN_STARTED and e is not None:
            self._write(f"#{e.number:<4} running   {e.description[:70]}")
        elif event.kind == EventKind.DECIDED and e is not None:
            self._write(("\n" if self.progress else "") + self.line(e))
        elif event.kind == EventKind.PROPOSED and e is not None and e.status in (Status.INVALID, Status.SKIPPED):
            self._write(self.line(e))
        elif event.kind in (EventKind.MESSAGE, EventKind.REPEAT_STARTED, EventKind.NOISE_FLOOR, EventKind.REVALIDATED,
                            EventKind.SETUP_STARTED) and event.message:
            # Repeat and confirmation runs, setup: say why the loop is busy.
            self._write(("\n" if self.progress else "") + f"      {event.message}")
        elif event.kind == EventKind.LOOP_FINISHED:
            self._write(f"loop finished: {event.message}")

    def line(self, e) -> str:
        metric = f"{e.metric:.6f}" if e.metric is not None else "-"
        took = f"{e.wall_seconds:6.1f}s" if e.wall_seconds is not None else "      -"
        cost = f" ${e.cost_usd:.3f}" if e.cost_usd else ""
        reason = " ".join(e.reason.split())[:160]
        why = f"  ({reason})" if reason and e.status not in (Status.KEEP,) else ""
        return f"#{e.number:<4} {e.status.value:<11} {self.metric} {metric} {took}{cost}  {e.description[:70]}{why}"

    def _write(self, text: str, end: str = "\n") -> None:
        self.stream.write(text + end)
        self.stream.flush()
