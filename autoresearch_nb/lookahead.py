"""Never idle: with one worker, the agent prepares experiment N+1 while experiment N runs (``lookahead``).

``optimize`` with one worker runs here. Each step proposes (or takes the prepared proposal), runs and decides,
as :meth:`Loop.step` does; with ``lookahead`` 1 (or ``auto`` and a slow agent) it also starts a proposing
thread just before the run (and, whatever the agent's speed, during the baseline's noise repeats, which cannot
change the file: no idle start; the agent's ``warm()`` runs as the baseline starts), which asks the agent for N+1 against the current best, told that N is in flight
(``Context.in_flight``). When N is decided:

- N was not kept: N+1 runs at once, as prepared;
- N was kept: N+1's change is re-applied onto the new best with :func:`~.merge.merge_file` (the line-range
  3-way merge of the parallel driver); when it conflicts, N+1 is recorded ``invalid`` (``reapplied_onto`` = N)
  and the agent is asked afresh; when the new best already has the change, it is recorded ``skipped``.

``auto`` overlaps only when recent proposals took more than :data:`AUTO_SHARE` of a run and more than
:data:`AUTO_MIN_S`: a fast agent (the tuner) then still sees each result before its next move, so it can push a
kept move one step further.

Threads. The proposing thread runs no git (this thread reads the best's file for it) and writes through its
own store handle (one SQLite connection per thread). It writes the prepared proposal as a row (``proposed``,
``prepared_during`` = N) the moment the agent answers, so Stop, Stop-now, the spend cap and a ``kill -9``
leave it recorded; this thread then saves it again through the recorder, so the history, the cost total and
every event stay on the loop's thread. The next ``optimize`` (after a stop, or a reopen: recovery leaves a
prepared row waiting) takes a waiting prepared proposal before asking the agent. A stop waits for a proposal
being prepared (it is paid for), never for another run.

The duty cycle: seconds the device ran something (experiments, noise repeats, confirmations; the stop
signal's busy clock) over the wall seconds of ``optimize`` calls, summed over the run's sessions in the run
state (``duty``). :func:`.results.run_stats` reads it and the conflict rate for the DataFrame, the CLI and the dashboard.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

from .config import Config
from .edits import content_hash, unified_diff
from .events import Event, EventKind
from .git import Workspace
from .recorder import Recorder
from .merge import merge_file
from .records import Experiment, Status, is_baseline
from .serial import Limits, optimize_serially
from .store import Store
from .pipeline import StopSignal

AUTO_SHARE = 0.02  # auto: overlap when a proposal takes more than this share of a run
# ... and more than this many seconds: overlapping a faster agent saves less than that per experiment, while the
# prepared proposal loses sight of the running result (a queue of edits that build on each other stops applying)
AUTO_MIN_S = 0.5


class Lookahead:
    """Runs one ``optimize`` call with one worker, preparing the next proposal during each run.

    It gets the run's narrow parts and the loop's verbs as callables: ``baseline`` (None when it ran before),
    ``propose`` (ask and save, on this thread), ``ask`` (an unsaved proposal on a parent whose file is given:
    safe on another thread), ``run`` and ``decide``.
    """

    def __init__(self, recorder: Recorder, workspace: Workspace, stop: StopSignal, config: Config, *,
                 baseline: Callable[[], Experiment | None], propose: Callable[[], Experiment],
                 ask: Callable[..., Experiment], run: Callable[[Experiment], Experiment],
                 decide: Callable[[Experiment], Experiment], warm: Callable[[], None] | None = None) -> None:
        self.recorder = recorder
        self.workspace = workspace
        self.stop = stop
        self.config = config
        self.mode = config.lookahead
        self.baseline, self.propose, self.ask, self.run, self.decide = baseline, propose, ask, run, decide
        self.warm = warm  # the agent's warm(), if it has one: called on a thread when the baseline starts
        self.limits: Limits | None = None
        self.count = 0  # what step() returned so far (optimize_serially's count of this call)
        self._thread: threading.Thread | None = None
        self._prepared: Experiment | None = None
        self._error: BaseException | None = None
        self._store: Store | None = None  # the proposing thread's own handle
        self._files: dict[str, str] = {}  # the editable file by commit: one git read per best, not per step

    def optimize(self, limits: Limits, label: str) -> list[Experiment]:
        """Step until a limit, the agent's end, the cost limit or a stop; a proposal being prepared is waited
        for and left recorded, waiting for the next call."""
        self.limits = limits
        duty = dict(self.recorder.state().get("duty") or {})
        wall0, busy0 = time.monotonic(), self.stop.busy_s
        base_wall, base_busy = float(duty.get("wall_s", 0.0)), float(duty.get("busy_s", 0.0))

        def account() -> None:  # after every step: a kill -9 loses at most one step of accounting
            self.recorder.store.update_run_state(self.recorder.tag, duty={
                "wall_s": base_wall + time.monotonic() - wall0, "busy_s": base_busy + self.stop.busy_s - busy0})

        def step() -> Experiment:
            try:
                return self.step()
            finally:
                account()
        try:
            return optimize_serially(step, limits, self.stop, self.recorder.emit, label)
        finally:
            self._collect()
            if self._store is not None:
                self._store.close()
            account()

    def step(self) -> Experiment:
        """Propose (or take the prepared proposal), run and decide one experiment; the baseline first (the
        first proposal is prepared while it runs)."""
        def on_event(ev: Event) -> None:  # on this thread, when the baseline's row exists and its runs start
            if ev.experiment is None or not is_baseline(ev.experiment) or self._thread is not None:
                return
            if ev.kind == EventKind.RUN_STARTED:
                self._warm()
                self._prepare(ev.experiment)
            elif ev.kind == EventKind.REPEAT_STARTED and ev.purpose == "noise":
                # No idle start: the noise repeats never change the file, so the first proposal cannot be
                # made stale by them; ask for it now, whatever the agent's speed (the baseline's first number
                # is known by then).
                self._prepare(ev.experiment, always=True)
        stop_listening = self.recorder.events.subscribe(on_event)
        try:
            first = self.baseline()
        finally:
            stop_listening()
        exp = first if first is not None else self._next()
        if exp.status == Status.PROPOSED:
            self._prepare(exp)
            exp = self.decide(self.run(exp))
        self.count += 1
        return exp

    # -- taking a proposal ---------------------------------------------------------------------------
    def _next(self) -> Experiment:
        prepared = self._collect()
        if prepared is not None and prepared.status != Status.PROPOSED:
            return prepared  # a prepared proposal that cannot run (invalid, skipped) is this step's result
        error, self._error = self._error, None
        if error is not None:  # the agent's end, the spend cap, a fatal agent error: raised where a
            raise error        # proposal made on this thread would have raised it
        while True:
            waiting = next((e for e in self.recorder.experiments
                            if e.status == Status.PROPOSED and e.prepared_during is not None), None)
            if waiting is None:
                return self.propose()
            taken = self._take(waiting)
            if taken is not None:
                return taken

    def _take(self, exp: Experiment) -> Experiment | None:
        """A prepared proposal, re-applied onto the head if a keep moved it; None when it cannot run there."""
        rec = self.recorder
        head = rec.head_sha()
        if exp.parent_sha == head:
            return exp
        kept = rec.head()
        onto = kept.number if kept is not None else None
        ours = self._file(head)
        merged = merge_file(self._file(exp.parent_sha or head), ours, exp.content or "")
        why = f"prepared during #{exp.prepared_during}"
        label = f"#{onto}" if onto is not None else head[:7]
        if merged is None:
            rec.record(exp.with_(status=Status.INVALID, reapplied_onto=onto, ended_at=time.time(),
                                 reason=f"{why}; its change conflicts with the new best {label}"))
            return None
        if merged == ours or rec.twin(content_hash(merged)) is not None:
            rec.record(exp.with_(status=Status.SKIPPED, reapplied_onto=onto, ended_at=time.time(),
                                 reason=f"{why}; the new best {label} already has this change"))
            return None
        return rec.save(exp.with_(parent_sha=head, content=merged, content_hash=content_hash(merged),
                                  diff=unified_diff(ours, merged, self.config.editable), reapplied_onto=onto))

    # -- preparing the next one ----------------------------------------------------------------------
    def _warm(self) -> None:
        """The agent's fixed costs (an SDK import, a client) paid on a thread while the baseline runs."""
        if self.warm is None or self.mode == "0":
            return
        warm = self.warm
        self.warm = None  # once per call

        def work() -> None:
            try:
                warm()
            except Exception:  # the first proposal meets it again, with its message
                pass
        threading.Thread(target=work, daemon=True, name=f"autoresearch-{self.recorder.tag}-warm").start()

    def _prepare(self, running: Experiment, always: bool = False) -> None:
        """Start asking for the next experiment while ``running`` runs, if this step should overlap (``always``:
        whatever the agent's speed, when what runs cannot change the file the proposal is made on)."""
        if self.mode == "0" or self.stop.is_set() or not (always or self._slow_agent()):
            return
        if self.limits is not None and self.limits.reason(self.count + 1):
            return  # running is the call's last experiment: a proposal now would only wait
        parent = self.recorder.head_sha()
        source = self._file(parent)  # on this thread: the proposing thread runs no git
        self._thread = threading.Thread(target=self._work, args=(parent, source, running), daemon=True,
                                        name=f"autoresearch-{self.recorder.tag}-lookahead")
        self._thread.start()

    def _file(self, sha: str) -> str:
        if sha not in self._files:
            self._files[sha] = self.workspace.read(sha)
        return self._files[sha]

    def _slow_agent(self) -> bool:
        if self.mode == "1":
            return True
        rows = self.recorder.experiments
        asked = [e.propose_seconds for e in rows[::-1] if e.propose_seconds is not None][:5]
        ran = [e.wall_seconds for e in rows[::-1] if e.wall_seconds][:5]
        if not asked:
            return False  # nothing measured yet: this proposal is asked in the open and timed
        run_s = statistics.median(ran) if ran else float(self.config.time_budget_s)
        return statistics.median(asked) > max(AUTO_SHARE * run_s, AUTO_MIN_S)

    def _work(self, parent: str, source: str, running: Experiment) -> None:
        try:
            exp = self.ask(parent, source, (running,), prepared_during=running.number)
            if self._store is None:
                self._store = Store(self.recorder.store.path)
            self._store.save(exp)  # recorded now: a stop or a kill -9 from here on leaves the row
            self._prepared = exp
        except BaseException as e:  # handed to the loop's thread, raised at its next proposal
            self._error = e

    def _collect(self) -> Experiment | None:
        """Wait for the proposing thread; its proposal is saved through the recorder, announced and returned."""
        if self._thread is None:
            return None
        self._thread.join()
        self._thread = None
        exp, self._prepared = self._prepared, None
        if exp is not None:
            self.recorder.publish(exp)
        return exp

