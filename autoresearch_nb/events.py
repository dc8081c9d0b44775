"""Loop events and the bus observers subscribe to. Widgets, the console printer and the CLI only listen."""
from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .records import CurvePoint, Experiment

log = logging.getLogger("autoresearch_nb")


class EventKind(str, enum.Enum):
    LOOP_STARTED = "loop_started"
    PROPOSED = "proposed"
    RUN_STARTED = "run_started"
    PROGRESS = "progress"
    RUN_FINISHED = "run_finished"
    DECIDED = "decided"
    LOOP_FINISHED = "loop_finished"
    REPEAT_STARTED = "repeat_started"   # a noise, confirmation or re-validation run of a commit begins
    NOISE_FLOOR = "noise_floor"         # the noise floor was (re)measured: ``noise`` holds it
    REVALIDATED = "revalidated"         # the best was re-run: ``revalidation`` holds the entry
    SETUP_STARTED = "setup_started"     # the one-time setup command begins (``message`` is the command)
    SETUP_FINISHED = "setup_finished"
    MESSAGE = "message"
    PHASE = "phase"                     # a run's step (pipeline.PHASES) in ``message``


@dataclass(frozen=True)
class Event:
    """One thing that happened. ``experiment`` is the record as of that moment.

    Typed fields, so observers never parse labels: ``purpose`` says what kind of run a PROGRESS /
    REPEAT_STARTED event belongs to ("experiment", "noise", "confirmation", "pairing", "revalidation"), ``repeat`` is the
    repeat's index (0 for an experiment's own run, i >= 1 for its i-th repeat), ``seed`` the run's seed,
    ``worker`` the parallel worker (None: the loop's own run directory), ``error`` marks a LOOP_FINISHED that
    ended with an exception, ``noise`` / ``revalidation`` carry the NOISE_FLOOR / REVALIDATED payloads.
    """

    kind: EventKind
    experiment: Experiment | None = None
    point: CurvePoint | None = None
    message: str = ""
    purpose: str = "experiment"
    repeat: int | None = None
    seed: int | None = None
    worker: int | None = None
    error: bool = False
    noise: dict[str, Any] | None = None
    revalidation: dict[str, Any] | None = None


Listener = Callable[[Event], None]


class EventBus:
    """Calls every listener for every event; a failing listener is logged and never breaks the loop."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add ``listener``; returns a function that removes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return unsubscribe

    def emit(self, event: Event) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # an observer's bug must not stop an overnight run
                log.exception("event listener %r failed on %s", listener, event.kind.value)
