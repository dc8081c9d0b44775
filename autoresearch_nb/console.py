"""A console observer: one line per experiment with the overall progress, and progress while a run is going
(a live ``\\r`` line on a terminal; a line every 10 % of the budget in a log, nohup or papermill output)."""
from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from .events import Event, EventKind
from .records import Experiment, Status, status_word
from .safetext import printable


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


BUSY = {"evaluate": "evaluating", "verify": "verifying"}  # phases with no progress lines of their own
PHASE_LABELS = {"prepare": "prep", "start": "start", "train": "train", "evaluate": "eval", "verify": "verify"}


def phase_text(seconds: Mapping[str, float]) -> str:
    """Where a run's time went, in the pipeline's order: ``start 3s train 20s eval 8s`` (phases under half a
    second left out).

    >>> phase_text({"prepare": 0.1, "start": 2.6, "train": 20.2, "evaluate": 7.9, "verify": 0.0})
    'start 3s train 20s eval 8s'
    """
    return " ".join(f"{label} {seconds[name]:.0f}s" for name, label in PHASE_LABELS.items()
                    if seconds.get(name, 0.0) >= 0.5)


def counted(n: int, noun: str) -> str:
    """``1 experiment``, ``3 experiments``.

    >>> counted(1, "experiment"), counted(0, "experiment")
    ('1 experiment', '0 experiments')
    """
    return f"{n} {noun}{'' if n == 1 else 's'}"


def overall_progress(done: int, total: int | None, seconds_each: float | None, running: bool = False,
                     elapsed_s: float = 0.0) -> str:
    """``experiment 4 / 7 · ETA 3 min`` (the 4th is the one running, or the last decided); without a total, the
    count and the time per experiment. ``done`` counts experiments already decided; ETA = what is left × the mean,
    less what the running one has already taken (``elapsed_s``, up to the mean), so it moves during a run.

    >>> overall_progress(3, 7, 45.0, running=True)
    'experiment 4 / 7 · ETA 3 min'
    >>> overall_progress(3, 4, 40.0, running=True, elapsed_s=30.0)
    'experiment 4 / 4 · ETA 10 s'
    """
    current = done + 1 if running else done
    if not current:
        return ""
    if total is None:
        rate = f" · {_minutes(seconds_each)} each" if seconds_each else ""
        return f"experiment {current}{rate}"
    current = min(current, total)
    left = max(total - done, 0)
    taken = min(max(elapsed_s, 0.0), seconds_each or 0.0) if running else 0.0
    eta = f" · ETA {_minutes(left * seconds_each - taken)}" if seconds_each and left else ""
    return f"experiment {current} / {total}{eta}"


class ConsolePrinter:
    """Prints loop events to a stream. Subscribe it: ``loop.subscribe(ConsolePrinter())``.

    ``budget_s``: the time budget, for the 10 % progress lines when the stream is not a terminal. ``total``: the
    run's ``max_experiments`` (for ``experiment 4 / 7 · ETA``), ``done``: experiments the run already holds.
    """

    def __init__(self, stream: TextIO | None = None, metric: str = "metric", progress: bool | None = None,
                 interval_s: float = 2.0, budget_s: float | None = None, total: int | None = None,
                 done: int = 0) -> None:
        self.stream = stream or sys.stdout
        self.metric = metric
        # A live \\r progress line only makes sense on a terminal; elsewhere a plain line every 10 % of a run.
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.progress = isatty if progress is None else progress
        self.interval_s = interval_s
        self.budget_s = budget_s
        self.total = total
        self.done = done
        self._took: list[float] = []
        self._last = 0.0
        self._tenth: dict[tuple, int] = {}   # the last 10 % mark printed, per run

    @classmethod
    def for_loop(cls, loop: Any, stream: TextIO | None = None) -> "ConsolePrinter":
        """A printer set up for ``loop``: its metric, time budget and ``max_experiments``."""
        cfg = loop.config
        return cls(stream, metric=cfg.metric, budget_s=float(cfg.time_budget_s), total=cfg.max_experiments,
                   done=len(loop.experiments))

    def __call__(self, event: Event) -> None:
        e = event.experiment
        if event.kind == EventKind.PROGRESS and event.point is not None:
            self._progress(event)
        elif event.kind == EventKind.RUN_STARTED and e is not None:
            self._write(f"#{e.number:<4} running   {printable(e.description)[:70]}")
        elif event.kind == EventKind.DECIDED and e is not None:
            self.done += 1
            if e.wall_seconds and e.status.ran:
                self._took.append(e.wall_seconds)
            self._write(("\n" if self.progress else "") + self.line(e) + self._overall())
        elif event.kind == EventKind.PROPOSED and e is not None and e.status in (Status.INVALID, Status.SKIPPED):
            self.done += 1
            self._write(self.line(e))
        elif event.kind in (EventKind.MESSAGE, EventKind.REPEAT_STARTED, EventKind.NOISE_FLOOR, EventKind.REVALIDATED,
                            EventKind.SETUP_STARTED) and event.message:
            # Repeat and confirmation runs, setup: say why the loop is busy.
            self._write(("\n" if self.progress else "") + f"      {printable(event.message)}")
        elif event.kind == EventKind.PHASE and event.message in BUSY:
            # after training the run is busy for a while with no progress lines: say with what
            name = f"#{e.number if e else '?'}" + (f" {event.purpose}" if event.purpose != "experiment" else "")
            self._write(("\n" if self.progress else "") + f"  {name} {BUSY[event.message]}")
        elif event.kind == EventKind.LOOP_FINISHED:
            self._write(f"loop finished: {printable(event.message)}")

    def _overall(self) -> str:
        each = sum(self._took) / len(self._took) if self._took else None
        text = overall_progress(self.done, self.total, each)
        return f"  [{text}]" if text else ""

    def _progress(self, event: Event) -> None:
        e, p = event.experiment, event.point
        assert p is not None
        loss = f" loss {p.loss:.4f}" if p.loss is not None else ""
        name = f"#{e.number if e else '?'}" + (f" {event.purpose}" if event.purpose != "experiment" else "")
        if self.progress:
            now = time.monotonic()
            if now - self._last >= self.interval_s:
                self._last = now
                self._write(f"\r  {name} step {p.step}{loss} {p.elapsed_s:6.1f}s", end="")
            return
        if not self.budget_s:
            return
        key = (e.number if e else None, event.purpose, event.repeat, event.worker)
        tenth = min(int(10 * p.elapsed_s / self.budget_s), 10)
        if tenth > self._tenth.get(key, 0):
            self._tenth[key] = tenth
            step = f" step {p.step}" if p.step is not None else ""
            self._write(f"  {name} {10 * tenth:3d}% {p.elapsed_s:.0f}/{self.budget_s:g} s{step}{loss}")

    def line(self, e: Experiment) -> str:
        metric = f"{e.metric:.6f}" if e.metric is not None else "-"
        took = f"{e.wall_seconds:6.1f}s" if e.wall_seconds is not None else "      -"
        if e.holdout_gap is not None:
            metric += f" (holdout gap {e.holdout_gap:+.4f})"
        if len(e.runs) > 1:
            metric += f" ({len(e.runs)} runs)"  # a decision made on several seeds says so
        cost = f" ${e.cost_usd:.3f}" if e.cost_usd else ""
        reason = printable(" ".join(e.reason.split()))[:200]  # agent and run text: escapes shown, not sent
        why = f"  ({reason})" if reason else ""  # a keep's evidence too: the user reads it here
        status = status_word(e.status, e.reason)
        phases = phase_text(e.phase_seconds)
        phases = f" [{phases}]" if phases else ""
        return (f"#{e.number:<4} {status:<11} {self.metric} {metric} {took}{phases}{cost}  "
                f"{printable(e.description)[:70]}{why}")

    def _write(self, text: str, end: str = "\n") -> None:
        self.stream.write(text + end)
        self.stream.flush()
