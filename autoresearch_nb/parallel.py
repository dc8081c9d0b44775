"""Parallel experiments: up to ``workers`` in flight, the kept history still one linear chain.

The rule for stale parents. Workers start from the best commit of the moment; when one of them is kept, the
others were measured on a parent that is no longer the head. Such a result is never kept as it is (its code
is not the head's code plus its change). Instead:

- if it did not improve on its own parent (by the same rule as any experiment), it is discarded;
- if it did, its change is re-applied onto the new best with a 3-way merge of the editable file, and the merged
  file becomes a new proposal that runs next (``re-applied #N onto #M``); the original is recorded as
  ``discard`` with that reason. A conflicting merge, or a change already contained in the best, is discarded.

So every kept commit's metric was measured on exactly that commit, and the branch only moves forward by
commits whose parent is the head. The driver (this module, in the loop's thread) alone writes the store and
moves the branch; executors only run commits.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from .agents import QueueExhausted
from .serial import MAX_IDLE_PROPOSALS, Limits
from .edits import content_hash, unified_diff
from .errors import BudgetExceeded, described
from .events import EventKind
from .executors import Executor, LocalExecutor, Outcome
from .merge import merge_file
from .pipeline import Job, launch_commit, settle
from .git import Workspace
from .recorder import PointBuffer, Recorder
from .records import CurvePoint, Experiment, Status
from .repeats import Repeats, with_first_run
from .trial import Plan, StopSignal, finished

log = logging.getLogger("autoresearch_nb")
MAX_REAPPLY = 3
_REAPPLIED = re.compile(r"^(re-applied #\d+ onto \S+: )+")


def make_executor(workspace: Workspace, plan: Plan, executor: str, workers: int,
                  ray_address: str | None = None) -> Executor:
    """The configured executor: ``ray`` (lazily imported) or ``local`` (run directories of ``plan.boundary``)."""
    if executor == "ray":
        from .ray_executor import RayExecutor
        return RayExecutor(workspace, workers, address=ray_address, config=plan.config)
    return LocalExecutor(plan.boundary, workers)


class ParallelDriver:
    """Runs an ``optimize`` call with several experiments in flight.

    It gets the run's narrow parts, never the loop: the recorder (every write), the run plan (seeds, logs,
    environments), the worktree (commits, the branch), the repeats (the keep rule and confirmations), the stop
    signal, and three verbs of the loop as plain callables (``setup``, ``baseline``, ``propose``).
    """

    def __init__(self, recorder: Recorder, plan: Plan, workspace: Workspace, repeats: Repeats, stop: StopSignal,
                 *, setup: Callable[[], None], baseline: Callable[[], Experiment | None],
                 propose: Callable[..., Experiment], executor: Executor) -> None:
        self.recorder = recorder
        self.plan = plan
        self.config = plan.config
        self.workspace = workspace
        self.repeats = repeats
        self.stop = stop
        self.setup = setup
        self.baseline = baseline
        self.propose = propose
        self.executor = executor
        executor.on_phase = self._on_phase
        self.in_flight: dict[int, Experiment] = {}
        self.jobs: dict[int, Job] = {}  # the job of each experiment in flight (finished by the run plan)
        self.retry: list[Experiment] = []  # re-applied proposals waiting for a free worker
        self._points: dict[int, PointBuffer] = {}
        self._generation: dict[int, int] = {}  # how many times an experiment's change was re-applied

    # -- launching -----------------------------------------------------------------------------------
    def launch(self, exp: Experiment) -> Experiment:
        rec = self.recorder
        self.setup()
        sha = launch_commit(self.workspace, exp, exp.parent_sha or rec.head_sha())
        seed = self.plan.seed()
        job = self.plan.job(exp.number, sha, seed, f"{exp.number:04d}")
        exp = exp.with_(status=Status.RUNNING, sha=sha, seed=seed, started_at=time.time(), log_path=job.log_path,
                        runs=[], seeds=[])
        rec.store.clear_points(rec.tag, exp.number)
        self.jobs[exp.number] = job
        self._points[exp.number] = PointBuffer(rec.store, rec.tag, exp.number)
        self.in_flight[exp.number] = exp  # before it starts: its first phases come from the worker at once
        try:
            worker = self.executor.submit(job, self._on_point)
        except BaseException:
            self.in_flight.pop(exp.number, None)
            raise
        exp = rec.save(exp.with_(worker=worker, pid=self.executor.pid(exp.number)))  # a reopened loop kills it
        self.in_flight[exp.number] = exp
        rec.emit(EventKind.RUN_STARTED, exp, worker=worker)
        return exp

    def _on_point(self, number: int, point: CurvePoint) -> None:
        buffer = self._points.get(number)
        if buffer is not None:
            buffer.add(point)
        exp = self.in_flight.get(number)
        self.recorder.emit(EventKind.PROGRESS, exp, point, worker=exp.worker if exp else None)

    def _on_phase(self, number: int | str, name: str) -> None:
        exp = self.in_flight.get(number) if isinstance(number, int) else None
        self.recorder.emit(EventKind.PHASE, exp, message=name, worker=exp.worker if exp else None)

    # -- finishing -----------------------------------------------------------------------------------
    def finish(self, outcome: Outcome) -> Experiment:
        rec = self.recorder
        exp = self.in_flight.pop(outcome.number)
        buffer = self._points.pop(outcome.number, None)
        if buffer is not None:
            buffer.flush()
        if outcome.lost:
            self.jobs.pop(outcome.number, None)
            exp = rec.save(exp.with_(status=Status.INTERRUPTED, ended_at=time.time(), error=outcome.result.error,
                                     reason=outcome.result.error or "worker lost"))
            rec.emit(EventKind.RUN_FINISHED, exp)
            return rec.record(exp)
        result, changed = self.plan.finish(self.jobs.pop(outcome.number), outcome)
        exp = rec.save(finished(exp, result, self.config.metric, changed, self.config.editable))
        rec.emit(EventKind.RUN_FINISHED, exp)
        return self.decide(exp)

    def decide(self, exp: Experiment) -> Experiment:
        head = self.recorder.head_sha()
        if exp.status == Status.RUNNING:
            if exp.parent_sha == head:
                exp = self.repeats.judge(exp, self.recorder.best)
            else:
                exp = self._stale(exp, head)
        return settle(self.recorder, self.workspace, exp, head)

    def _stale(self, exp: Experiment, head: str) -> Experiment:
        """A result measured on an older best: discard it, and re-apply a promising change onto the head."""
        rec = self.recorder
        exp = with_first_run(exp)  # the run that happened stays in the row's evidence, whatever the verdict
        parent = next((e for e in rec.experiments if e.status == Status.KEEP and e.sha == exp.parent_sha), None)
        best = rec.best
        verdict = self.repeats.decision(exp, parent)  # promising = would pass (or need confirming) vs its parent
        why = verdict.reason
        if verdict.verdict not in ("keep", "confirm"):
            return exp.with_(status=Status.DISCARD, reason=f"stale parent #{parent.number if parent else '?'}: {why}")
        base = self.workspace.read(exp.parent_sha)
        ours = self.workspace.read(head)
        merged = merge_file(base, ours, exp.content or "")
        label = f"#{best.number}" if best else head[:7]
        if merged is None:
            return exp.with_(status=Status.DISCARD,
                             reason=f"stale parent: {why}; its change conflicts with the new best {label}")
        if merged == ours or rec.twin(content_hash(merged)) is not None:
            return exp.with_(status=Status.DISCARD,
                             reason=f"stale parent: {why}; the new best {label} already has this change")
        generation = self._generation.get(exp.number, 0) + 1
        if generation > MAX_REAPPLY:
            return exp.with_(status=Status.DISCARD, reason=f"stale parent: {why}; re-applied {MAX_REAPPLY} times "
                                                           "already, every time overtaken by another keep")
        original = _REAPPLIED.sub("", exp.description)
        again = rec.save(rec.new(
            Status.PROPOSED, description=f"re-applied #{exp.number} onto {label}: {original}"[:500],
            parent_sha=head, content=merged, content_hash=content_hash(merged),
            diff=unified_diff(ours, merged, self.config.editable), agent=exp.agent, model=exp.model))
        self._generation[again.number] = generation
        self.retry.append(again)
        rec.emit(EventKind.PROPOSED, again)
        return exp.with_(status=Status.DISCARD,
                         reason=f"stale parent: {why}; re-applied onto the new best {label} as #{again.number}")

    # -- the loop ------------------------------------------------------------------------------------
    def optimize(self, limits: Limits) -> list[Experiment]:
        rec, stop = self.recorder, self.stop
        done: list[Experiment] = []
        proposing, reason, idle = True, "done", 0
        rec.emit(EventKind.LOOP_STARTED, message=f"run {rec.tag} with {self.executor.slots} workers")
        try:
            first = self.baseline()  # the baseline (and the noise floor) first, on its own; None: it ran before
            if first is not None:
                done.append(first)
            while True:
                if stop.is_set():
                    reason = stop.reason or "stopped"
                    if stop.forced:
                        self.executor.cancel()
                    proposing = False
                elif proposing:
                    why = limits.reason(len(done))
                    if why:
                        proposing, reason = False, why
                # Fill free workers: re-applied changes first (even when the agent has run dry), then proposals.
                while self.retry and self.executor.free() > 0 and not stop.is_set() and \
                        not limits.reason(len(done) + len(self.in_flight)):
                    self.launch(self.retry.pop(0))
                while proposing and self.executor.free() > 0 and not stop.is_set():
                    if limits.reason(len(done) + len(self.in_flight)):
                        break
                    try:
                        exp = self.propose(in_flight=tuple(self.in_flight.values()))
                    except QueueExhausted as e:
                        proposing, reason = False, str(e) or "the agent has no more proposals"
                        break
                    except BudgetExceeded as e:
                        proposing, reason = False, f"cost limit: {e}"
                        break
                    if exp.status == Status.PROPOSED:
                        self.launch(exp)
                        idle = 0
                    else:
                        done.append(exp)
                        idle += 1
                        if idle >= MAX_IDLE_PROPOSALS:
                            proposing, reason = False, f"{idle} proposals in a row could not run"
                            break
                if not self.in_flight:
                    can_retry = bool(self.retry) and not stop.is_set() and not limits.reason(len(done))
                    if not proposing and not can_retry:
                        break
                for outcome in self.executor.poll(0.2):
                    done.append(self.finish(outcome))
        except BaseException as e:
            self.executor.cancel()
            self._drain_after_error()
            rec.emit(EventKind.LOOP_FINISHED, message=described(e), error=True)
            raise
        finally:
            for exp in self.retry:  # never ran: say so
                rec.save(exp.with_(status=Status.INTERRUPTED, reason="re-applied, but the loop ended first"))
            self.retry.clear()
            self.executor.close()
        rec.emit(EventKind.LOOP_FINISHED, message=reason)
        return done

    def _drain_after_error(self) -> None:
        deadline = time.monotonic() + 30
        while self.in_flight and time.monotonic() < deadline:
            for outcome in self.executor.poll(0.2):
                try:
                    self.finish(outcome)
                except Exception:
                    log.exception("could not record experiment %s", outcome.number)
