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

import difflib
import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Any

from .agents import QueueExhausted
from .edits import content_hash, unified_diff
from .errors import BudgetExceeded
from .events import EventKind
from .executors import Job, LocalExecutor, Outcome
from .loop import commit_message
from .records import CurvePoint, Experiment, Status

if TYPE_CHECKING:
    from .loop import Loop

log = logging.getLogger("autoresearch_nb")
MAX_REAPPLY = 3
_REAPPLIED = re.compile(r"^(re-applied #\d+ onto \S+: )+")


def make_executor(loop: "Loop") -> Any:
    cfg = loop.config
    if cfg.executor == "ray":
        from .ray_executor import RayExecutor
        return RayExecutor(loop.workspace, cfg.workers, address=cfg.ray_address)
    return LocalExecutor(loop.workspace, cfg.workers)


def _hunks(base: list[str], other: list[str]) -> list[tuple[int, int, list[str]]]:
    ops = difflib.SequenceMatcher(None, base, other, autojunk=False).get_opcodes()
    return [(i1, i2, other[j1:j2]) for tag, i1, i2, j1, j2 in ops if tag != "equal"]


def merge_file(base: str, ours: str, theirs: str) -> str | None:
    """3-way merge of one file's text; None when both sides change the same lines.

    Unlike ``git merge-file``, changes to adjacent lines (two hyperparameters on consecutive lines, the usual
    case here) do not conflict: only overlapping line ranges do.
    """
    b, o, t = base.splitlines(keepends=True), ours.splitlines(keepends=True), theirs.splitlines(keepends=True)
    hunks = sorted([(h, 0) for h in _hunks(b, o)] + [(h, 1) for h in _hunks(b, t)], key=lambda x: (x[0][0], x[0][1]))
    merged: list[tuple[int, int, list[str]]] = []
    for (i1, i2, lines), _side in hunks:
        if merged:
            p1, p2, plines = merged[-1]
            same = (p1, p2, plines) == (i1, i2, lines)
            if same:
                continue  # both sides made the identical change
            if i1 < p2 or (i1 == p1 and (i1 == i2 or p1 == p2)):
                return None  # overlapping ranges, or two insertions at one place
        merged.append((i1, i2, lines))
    out, pos = [], 0
    for i1, i2, lines in merged:
        out.extend(b[pos:i1])
        out.extend(lines)
        pos = i2
    out.extend(b[pos:])
    return "".join(out)


class ParallelDriver:
    """Runs :meth:`Loop.optimize` with several experiments in flight."""

    def __init__(self, loop: "Loop", executor: Any | None = None) -> None:
        self.loop = loop
        self.executor = executor or make_executor(loop)
        self.in_flight: dict[int, Experiment] = {}
        self.retry: list[Experiment] = []  # re-applied proposals waiting for a free worker
        self._points: dict[int, list[CurvePoint]] = {}
        self._lock = threading.Lock()
        self._generation: dict[int, int] = {}  # how many times an experiment's change was re-applied

    # -- launching -----------------------------------------------------------------------------------
    def launch(self, exp: Experiment) -> Experiment:
        loop, cfg = self.loop, self.loop.config
        loop.setup()
        sha = loop.workspace.commit_on(exp.parent_sha, exp.content, commit_message(exp))
        loop.workspace.keep_ref(exp.number, sha)
        seed = loop._seed()
        log_path = loop._log_path(f"{exp.number:04d}")
        exp = exp.with_(status=Status.RUNNING, sha=sha, seed=seed, started_at=time.time(), log_path=str(log_path),
                        runs=[], seeds=[])
        loop.store.clear_points(loop.tag, exp.number)
        env = loop._run_env(seed, exp.number)
        job = Job(exp.number, sha, cfg.command, cfg.editable, cfg.hard_timeout_s, env, str(log_path),
                  tuple(cfg.env_allow))
        self._points[exp.number] = []
        worker = self.executor.submit(job, self._on_point)
        pid = getattr(self.executor, "pid", lambda _n: None)(exp.number)  # so a reopened loop can kill it
        exp = loop._save(exp.with_(worker=worker, pid=pid))
        self.in_flight[exp.number] = exp
        loop._emit(EventKind.RUN_STARTED, exp, worker=worker)
        return exp

    def _on_point(self, number: int, point: CurvePoint) -> None:
        with self._lock:
            buf = self._points.setdefault(number, [])
            buf.append(point)
            flush = len(buf) >= 200
            if flush:
                self._points[number] = []
        if flush:
            self.loop.store.add_points(self.loop.tag, number, buf)
        exp = self.in_flight.get(number)
        self.loop._emit(EventKind.PROGRESS, exp, point, worker=exp.worker if exp else None)

    # -- finishing -----------------------------------------------------------------------------------
    def finish(self, outcome: Outcome) -> Experiment:
        loop = self.loop
        exp = self.in_flight.pop(outcome.number)
        with self._lock:
            rest = self._points.pop(outcome.number, [])
        loop.store.add_points(loop.tag, outcome.number, rest)
        if outcome.lost:
            exp = loop._save(exp.with_(status=Status.INTERRUPTED, ended_at=time.time(), error=outcome.result.error,
                                       reason=outcome.result.error or "worker lost"))
            loop._emit(EventKind.RUN_FINISHED, exp)
            loop._emit(EventKind.DECIDED, exp)
            loop._write_tsv()
            loop._tell(exp)
            return exp
        exp = loop._finish_run(exp, outcome.result, changed=list(outcome.changed))
        return self.decide(exp)

    def decide(self, exp: Experiment) -> Experiment:
        loop = self.loop
        head = loop._best_sha()
        if exp.status == Status.RUNNING:
            if exp.parent_sha == head:
                exp = loop._judge(exp, loop.best)
            else:
                exp = self._stale(exp, head)
        exp = loop._save(exp)  # the record first, then git
        loop._write_tsv()
        if exp.status == Status.KEEP:
            loop.workspace.advance(exp.sha)
        elif loop.workspace.head() != head or loop.workspace.changed_paths():
            loop.workspace.reset(head)  # confirmation runs may have left the worktree elsewhere
        loop._emit(EventKind.DECIDED, exp)
        loop._tell(exp)
        return exp

    def _stale(self, exp: Experiment, head: str) -> Experiment:
        """A result measured on an older best: discard it, and re-apply a promising change onto the head."""
        loop = self.loop
        parent = next((e for e in loop.experiments if e.status == Status.KEEP and e.sha == exp.parent_sha), None)
        best = loop.best
        verdict = loop._decision(exp, parent)  # promising = would pass (or need confirming) against its parent
        why = verdict.reason
        if verdict.verdict not in ("keep", "confirm"):
            return exp.with_(status=Status.DISCARD, reason=f"stale parent #{parent.number if parent else '?'}: {why}")
        base = loop.workspace.read(exp.parent_sha)
        ours = loop.workspace.read(head)
        merged = merge_file(base, ours, exp.content or "")
        label = f"#{best.number}" if best else head[:7]
        if merged is None:
            return exp.with_(status=Status.DISCARD,
                             reason=f"stale parent: {why}; its change conflicts with the new best {label}")
        if merged == ours or content_hash(merged) in {e.content_hash for e in loop.experiments}:
            return exp.with_(status=Status.DISCARD,
                             reason=f"stale parent: {why}; the new best {label} already has this change")
        generation = self._generation.get(exp.number, 0) + 1
        if generation > MAX_REAPPLY:
            return exp.with_(status=Status.DISCARD, reason=f"stale parent: {why}; re-applied {MAX_REAPPLY} times "
                                                           "already, every time overtaken by another keep")
        original = _REAPPLIED.sub("", exp.description)
        again = loop._save(loop._new(
            Status.PROPOSED, description=f"re-applied #{exp.number} onto {label}: {original}"[:500],
            parent_sha=head, content=merged, content_hash=content_hash(merged),
            diff=unified_diff(ours, merged, loop.config.editable), agent=exp.agent, model=exp.model))
        self._generation[again.number] = generation
        self.retry.append(again)
        loop._emit(EventKind.PROPOSED, again)
        return exp.with_(status=Status.DISCARD,
                         reason=f"stale parent: {why}; re-applied onto the new best {label} as #{again.number}")

    # -- the loop ------------------------------------------------------------------------------------
    def optimize(self, n: int | None = None, timeout_s: float | None = None) -> list[Experiment]:
        loop = self.loop
        done: list[Experiment] = []
        start = time.monotonic()
        proposing, reason, idle = True, "done", 0
        loop._emit(EventKind.LOOP_STARTED, message=f"run {loop.tag} with {self.executor.slots} workers")
        try:
            if not any(e.status.ran for e in loop.experiments):
                done.append(loop.baseline())  # the baseline (and the noise floor) first, on its own
            while True:
                if loop._stop.is_set():
                    reason = loop._stop_reason or "stopped"
                    if loop._force:
                        self.executor.cancel()
                    proposing = False
                elif proposing:
                    stop = loop._limit(n, timeout_s, start, len(done))
                    if stop:
                        proposing, reason = False, stop
                # Fill free workers: re-applied changes first (even when the agent has run dry), then proposals.
                while self.retry and self.executor.free() > 0 and not loop._stop.is_set() and \
                        not loop._limit(n, timeout_s, start, len(done) + len(self.in_flight)):
                    self.launch(self.retry.pop(0))
                while proposing and self.executor.free() > 0 and not loop._stop.is_set():
                    if loop._limit(n, timeout_s, start, len(done) + len(self.in_flight)):
                        break
                    try:
                        exp = loop.propose(in_flight=tuple(self.in_flight.values()))
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
                        if idle >= 10:
                            proposing, reason = False, f"{idle} proposals in a row could not run"
                            break
                if not self.in_flight:
                    can_retry = bool(self.retry) and not loop._stop.is_set() and \
                        not loop._limit(n, timeout_s, start, len(done))
                    if not proposing and not can_retry:
                        break
                for outcome in self.executor.poll(0.2):
                    done.append(self.finish(outcome))
        except BaseException as e:
            self.executor.cancel()
            self._drain_after_error()
            loop._emit(EventKind.LOOP_FINISHED, message=f"{type(e).__name__}: {e}", error=True)
            raise
        finally:
            for exp in self.retry:  # never ran: say so
                loop._save(exp.with_(status=Status.INTERRUPTED, reason="re-applied, but the loop ended first"))
            self.retry.clear()
            self.executor.close()
        loop._emit(EventKind.LOOP_FINISHED, message=reason)
        return done

    def _drain_after_error(self) -> None:
        deadline = time.monotonic() + 30
        while self.in_flight and time.monotonic() < deadline:
            for outcome in self.executor.poll(0.2):
                try:
                    self.finish(outcome)
                except Exception:
                    log.exception("could not record experiment %s", outcome.number)

