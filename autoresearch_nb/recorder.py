"""The run's ledger: every write of an experiment goes through here, and every read of the loop's history.

A :class:`Recorder` holds the run's experiments in memory (loaded once from the store when the loop opens;
the loop holds the run's lock, so nobody else writes them) and keeps them in step with the store on every
:meth:`~Recorder.save`. Reads (the history, the best, the branch head) therefore cost the same at experiment
2,000 as at experiment 50, and results.tsv grows by appending. :meth:`~Recorder.record` is the one way a
decision is recorded: the row, its results.tsv line, the DECIDED event and the agent's ``tell``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .effective import effective_hash
from .events import Event, EventBus, EventKind
from .records import CurvePoint, CurveSummary, Experiment, Status, best_of
from .results import ResultsFile
from .store import Store

log = logging.getLogger("autoresearch_nb")
MAX_STORED_POINTS = 5000  # curve points stored per experiment before thinning


class Recorder:
    """Saves experiments (store, results.tsv, events, the agent) and answers questions about the run so far."""

    def __init__(self, store: Store, tag: str, events: EventBus, results: ResultsFile,
                 tell: Callable[[Experiment], None], maximize: bool = False) -> None:
        self.store = store
        self.tag = tag
        self.events = events
        self.results = results
        self.maximize = maximize
        self._tell = tell
        self._lock = threading.RLock()
        self._rows: dict[int, Experiment] = {e.number: e for e in store.experiments(tag)}  # in number order
        self._hashes = {e.content_hash: e for e in self._rows.values()
                        if e.content_hash and e.status != Status.INVALID}
        self._effective: tuple[str, dict[str, int]] | None = None  # (device class, effective hash -> number)
        self._best = best_of(self._rows.values(), maximize)
        self._head = self._last_kept()
        self._base: str | None = None
        self._cost = sum(e.cost_usd or 0.0 for e in self._rows.values())
        self._curves: dict[int, CurveSummary | None] = {}  # decided experiments' curve summaries, read once

    # -- reading -------------------------------------------------------------------------------------
    @property
    def experiments(self) -> list[Experiment]:
        """Every experiment of the run, oldest first."""
        with self._lock:
            return list(self._rows.values())

    def get(self, number: int) -> Experiment | None:
        with self._lock:
            return self._rows.get(number)

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def best(self) -> Experiment | None:
        """The best kept experiment, or None before any keep."""
        return self._best

    def head(self) -> Experiment | None:
        """The latest kept experiment with a commit: what the next experiment builds on."""
        return self._head

    def head_sha(self) -> str:
        """The commit the next experiment builds on: the last kept one, else the run's base commit."""
        head = self._head
        return head.sha if head is not None and head.sha else self.base_sha()

    def base_sha(self) -> str:
        """The commit the run started from (what the baseline measures)."""
        if self._base is None:
            self._base = (self.store.get_run(self.tag) or {}).get("base_sha") or ""
        return self._base

    def curves(self, budget_s: float) -> dict[int, CurveSummary]:
        """The curve summary of every decided experiment that stored progress points (its own run's, not its
        repeats'), by number, for the agent's prompt. Each is read from the store once: a decided row's curve
        never changes, so a proposal at experiment 1,000 reads only the rows decided since the last one."""
        with self._lock:
            todo = [e.number for e in self._rows.values()
                    if e.number not in self._curves and e.status.finished and e.decided_at is not None]
        for number in todo:
            found = CurveSummary.of((p for _, p in self.store.points(self.tag, number)), budget_s)
            with self._lock:
                self._curves[number] = found
        with self._lock:
            return {n: c for n, c in self._curves.items() if c is not None}

    def twin(self, content_hash: str | None) -> Experiment | None:
        """An experiment (not an invalid one) that already had this exact file."""
        return self._hashes.get(content_hash) if content_hash else None

    def kin(self, content: str | None, device_class: str) -> Experiment | None:
        """An experiment (not an invalid one) whose file runs the same as ``content`` on ``device_class``:
        equal but for comments, formatting or the side of ``a if CUDA else b`` the device never reads
        (:func:`.effective.effective_hash`). The hashes are computed once per experiment, on first use."""
        digest = effective_hash(content, device_class)
        if digest is None:
            return None
        with self._lock:
            if self._effective is None or self._effective[0] != device_class:
                table: dict[str, int] = {}
                for e in self._rows.values():
                    if e.content and e.status != Status.INVALID:
                        table.setdefault(effective_hash(e.content, device_class) or "", e.number)
                self._effective = (device_class, table)
            number = self._effective[1].get(digest)
            return self._rows.get(number) if number is not None else None

    @property
    def total_cost_usd(self) -> float:
        return self._cost

    def noise(self) -> dict[str, Any] | None:
        """The run's noise floor from the store's run state."""
        return self.state().get("noise")

    def state(self) -> dict[str, Any]:
        return (self.store.get_run(self.tag) or {}).get("state") or {}

    # -- writing -------------------------------------------------------------------------------------
    def new(self, status: Status, **fields: Any) -> Experiment:
        """A new experiment record with the next number (not saved)."""
        with self._lock:
            number = max(self._rows, default=-1) + 1
        fields.setdefault("created_at", time.time())
        return Experiment(number=number, tag=self.tag, status=status, **fields)

    def publish(self, exp: Experiment) -> Experiment:
        """Save a new proposal and announce it (PROPOSED); one that cannot run is told to the agent at once."""
        exp = self.save(exp)
        self.emit(EventKind.PROPOSED, exp)
        if exp.status != Status.PROPOSED:
            self.tell(exp)
        return exp

    def save(self, exp: Experiment) -> Experiment:
        """Write ``exp`` to the store (committed before this returns) and to the in-memory history."""
        with self._lock:
            self.store.save(exp)
            old = self._rows.get(exp.number)
            last = next(reversed(self._rows), -1)
            self._rows[exp.number] = exp
            self._cost += (exp.cost_usd or 0.0) - ((old.cost_usd or 0.0) if old is not None else 0.0)
            if old is None and exp.number < last:  # rare: numbers are saved in increasing order
                self._rows = dict(sorted(self._rows.items()))
            if exp.content_hash and exp.status != Status.INVALID:
                self._hashes.setdefault(exp.content_hash, exp)
                if self._effective is not None and exp.content:
                    digest = effective_hash(exp.content, self._effective[0])
                    if digest is not None:
                        self._effective[1].setdefault(digest, exp.number)
            if old is not None and old.status == Status.KEEP:
                self._best, self._head = best_of(self._rows.values(), self.maximize), self._last_kept()
            elif exp.status == Status.KEEP:
                self._best = best_of([e for e in (self._best, exp) if e is not None], self.maximize)
                if exp.sha and (self._head is None or exp.number > self._head.number):
                    self._head = exp
        return exp

    def emit(self, kind: EventKind, exp: Experiment | None = None, point: CurvePoint | None = None,
             message: str = "", **fields: Any) -> None:
        self.events.emit(Event(kind, exp, point, message, **fields))

    def record(self, exp: Experiment) -> Experiment:
        """Record a decision: the row first (before any git reset), its results.tsv line, DECIDED, ``tell``."""
        exp = self.save(exp.with_(decided_at=exp.decided_at or time.time()))
        self.write_results(exp)
        self.emit(EventKind.DECIDED, exp)
        self.tell(exp)
        return exp

    def tell(self, exp: Experiment) -> None:
        """Tell the agent how ``exp`` ended; an agent's bug is logged, never fatal to the run."""
        try:
            self._tell(exp)
        except Exception:
            log.exception("agent.tell failed")

    def write_results(self, exp: Experiment | None = None) -> None:
        """Add ``exp``'s line to results.tsv (None: rewrite the whole file)."""
        try:
            if exp is None:
                self.results.rewrite(self.experiments)
            else:
                self.results.add(exp, lambda: self.experiments)
        except OSError:
            log.exception("could not write %s", self.results.path)

    def _last_kept(self) -> Experiment | None:
        kept = [e for e in self._rows.values() if e.status == Status.KEEP and e.sha]
        return max(kept, key=lambda e: e.number) if kept else None


class PointBuffer:
    """One run's curve points on their way to the store: written in batches (each second, or 200 points),
    and past :data:`MAX_STORED_POINTS` only every 10th, so a chatty target cannot write a million rows."""

    def __init__(self, store: Store, tag: str, number: int, run: str = "") -> None:
        self.store, self.tag, self.number, self.run = store, tag, number, run
        self._pending: list[CurvePoint] = []
        self._seen = 0
        self._flushed_at = time.monotonic()
        self._lock = threading.Lock()

    def add(self, point: CurvePoint) -> None:
        with self._lock:
            self._seen += 1
            if self._seen <= MAX_STORED_POINTS or self._seen % 10 == 0:
                self._pending.append(point)
            due = time.monotonic() - self._flushed_at > 1.0 or len(self._pending) >= 200
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            points, self._pending = self._pending, []
            self._flushed_at = time.monotonic()
        try:
            self.store.add_points(self.tag, self.number, points, self.run)
        except Exception:  # a lost curve point must never end an experiment
            log.exception("could not store curve points")
