"""The step-able loop: propose -> run -> decide, one experiment at a time, in a notebook or unattended.

>>> loop = Loop.open(".", tag="nov27", agent="tuner", time_budget_s=60)   # doctest: +SKIP
>>> loop.baseline(); exp = loop.propose(); exp = loop.run(exp); exp = loop.decide(exp)  # doctest: +SKIP
>>> loop.optimize(n=10); loop.results.tail()   # doctest: +SKIP

The loop owns its steps' collaborators and hands each only what it needs: :mod:`.trial` runs one commit,
:mod:`.recorder` writes every row (store, results.tsv, events, the agent), :mod:`.repeats` runs noise,
confirmation and re-validation repeats, :mod:`.parallel` drives several workers, :mod:`.session` opens the run.
The rule for verbs: a verb already applied to an experiment returns its stored state; an order that cannot
work (running what was never proposed, proposing before the baseline) raises :class:`StateError`.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import environ, provenance, waiting
from . import results as _results
from .agents import Agent, Context, make_agent
from .agents.space import describe_change
from .config import Config, make_config
from .edits import EditError, check_python, content_hash, unified_diff
from .lookahead import Lookahead
from .proposals import ask_agent
from .errors import BudgetExceeded, ConfigError, RunInterrupted, StateError
from .events import EventBus, EventKind, Listener
from .faults import pause
from .git import Workspace, find_repo
from .layout import RunPaths
from .prune import reference_of
from .recorder import PointBuffer, Recorder
from .records import CurvePoint, Experiment, RunResult, Status, is_baseline
from .repeats import Repeats
from .results import ResultsFile
from .runner import log_tail
from .serial import Limits
from .config import check_tag
from .session import RunLock, check_comparable, recover
from .store import Store
from .pipeline import Hooks, Job, launch_commit, not_started, settle
from .trial import Plan, StopSignal, finished
from .view import load_results, store_path  # noqa: F401  (load_results: re-exported)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("autoresearch_nb")


class Loop:
    """One research run: a tag, a branch, a worktree, an agent and the experiment store.

    Verbs: :meth:`baseline`, :meth:`propose`, :meth:`run`, :meth:`decide`, :meth:`step`, :meth:`optimize`,
    :meth:`stop`, :meth:`start`. Data: :attr:`results` (pandas), :attr:`best`, :attr:`experiments`.
    """

    def __init__(self, repo_root: Path, tag: str, config: Config, agent: Agent, store: Store,
                 workspace: Workspace, lock: RunLock | None = None) -> None:
        """Use :meth:`open`. With the run's ``lock`` (held), the loop owns the run and recovers it."""
        self.repo_root = repo_root
        self.tag = tag
        self.config = config
        self.agent = agent
        self.store = store
        self.workspace = workspace
        self.events = EventBus()
        self.error: BaseException | None = None  # what ended a background run, if it failed
        self._stop = StopSignal()
        self._plan = Plan(repo_root, tag, config, self._stop)
        results = ResultsFile(self.results_tsv, config.metric, config.memory_key)
        self._agent_lock = threading.Lock()  # the agent is asked on the lookahead thread and told on this one
        told = getattr(agent, "tell", None) or (lambda e: None)

        def tell(exp: Experiment) -> None:
            with self._agent_lock:
                told(exp)

        self._recorder = Recorder(store, tag, self.events, results, tell, config.maximize)
        self._repeats = Repeats(self._recorder, self._plan, workspace, self._stop)
        self._thread: threading.Thread | None = None
        self._baseline: Experiment | None = None  # the baseline, once it ran
        self._compared = False  # provenance checked once more after this session's setup
        # the device class the runs get (guessed without torch): what a file's `a if CUDA else b` reads
        self._device_class = provenance.device_class(environ.snapshot())
        self._lock = lock
        self._plan.note = lambda text, purpose="checkout": self._recorder.emit(EventKind.MESSAGE, message=text,
                                                                               purpose=purpose)
        self._plan.protect = lambda: [str(best.number)] if (best := self._recorder.best) else []  # its model stays
        self._plan.reference = lambda: reference_of(self.store, self.tag, self._recorder.experiments,
                                                    self._recorder.best)
        if lock is not None:
            lock.owned_by(self.close)
            recover(repo_root, tag, self._recorder, workspace, self._recorder.base_sha())
            self._plan.watch.snapshot()  # compared after every run (trial.Plan.checkout)

    # -- opening -------------------------------------------------------------------------------------
    @classmethod
    def open(cls, repo: str | Path = ".", tag: str | None = None, agent: str | Agent | None = None,
             **config: Any) -> "Loop":
        """Create the run ``tag`` in ``repo`` or resume it. Settings: see :class:`Config`.

        On resume, an experiment that was running when the last loop process died is recorded as
        ``interrupted``, its processes are killed, and the worktree goes back to the best commit. Opening a
        tag this process already has open closes that loop first (a notebook cell run twice).
        """
        tag = check_tag(tag)
        root = find_repo(repo)
        lock = RunLock(root, tag)  # first: nothing (not even the worktree) is touched by a second opener
        store = None
        try:
            store = Store(store_path(root))
            run = store.get_run(tag)
            stored = {k: v for k, v in (run["config"] if run else {}).items() if not k.startswith("_")}
            # Resume: the run's stored config is the base; explicit arguments override it.
            overrides = {k: v for k, v in config.items() if v is not None}
            cfg = make_config(root, {**stored, **overrides})
            agent_name = agent if agent is not None else (run or {}).get("config", {}).get("_agent")
            agent_obj = make_agent(agent_name, cfg, root)
            check_comparable(store, tag, cfg, root)  # a resume must not mix incomparable numbers
            ws = Workspace(root, tag, cfg.editable)
            stored_cfg = {**cfg.to_dict(), "_agent": getattr(agent_obj, "name", None)}
            store.create_run(tag, stored_cfg, ws.head())
            store.set_config(tag, stored_cfg)  # on resume, what this session uses becomes the stored config
            loop = cls(root, tag, cfg, agent_obj, store, ws, lock)
        except BaseException:
            if store is not None:
                store.close()
            lock.release()
            raise
        return loop

    def close(self) -> None:
        """Release the run (the lock and the database). The loop object cannot be used afterwards."""
        if self._lock is None:
            return
        self.stop(force=True, reason="the loop was closed", quiet=True)
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self._lock.release()
        self._lock = None
        self.store.close()

    def __enter__(self) -> "Loop":  # noqa: D105
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- events and data -----------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every loop event; returns an unsubscribe function."""
        return self.events.subscribe(listener)

    @property
    def experiments(self) -> list[Experiment]:
        """Every experiment of this run, oldest first."""
        return self._recorder.experiments

    @property
    def best(self) -> Experiment | None:
        """The best kept experiment (the branch's head), or None before any keep."""
        return self._recorder.best

    @property
    def results(self) -> "pd.DataFrame":
        """Every experiment as a pandas DataFrame (newest last)."""
        return _results.dataframe(self.experiments, self.config.metric, self.config.maximize, self.config.record,
                                  stats=self.stats)  # attrs: duty cycle, conflict rate

    def curve(self, number: int) -> list[CurvePoint]:
        """The progress points of experiment ``number``."""
        return [p for _, p in self.store.points(self.tag, number)]

    @property
    def total_cost_usd(self) -> float:
        return self._recorder.total_cost_usd

    @property
    def stats(self) -> dict[str, Any]:
        """The run's overlap figures (:func:`~autoresearch_nb.results.run_stats`): duty cycle, conflict rate."""
        return _results.run_stats(self.experiments, self._recorder.state())

    @property
    def results_tsv(self) -> Path:
        return RunPaths(self.repo_root, self.tag).results_tsv

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def noise(self) -> dict[str, Any] | None:
        """The measured noise floor (``sigma``, ``mad_sigma``, ``df``, the repeats behind it; ``pairs``: the paired
        rule's floor of differences pooled over the run, once a candidate had two paired seeds), or None."""
        return self._repeats.report

    def measure_noise(self, repeats: int | None = None) -> dict[str, Any]:
        """Run the best commit ``repeats`` more times (fresh seeds) and pool their spread into the noise floor."""
        if self.running and threading.current_thread() is not self._thread:
            raise StateError("the loop is running in the background; stop() it before measuring the noise")
        self.setup()  # the session's setup and the verifier's pins come before any run, whichever verb is first
        return self._repeats.measure_noise(repeats)

    def revalidate(self) -> dict[str, Any] | None:
        """Re-run the best kept commit once (a fresh seed) and report its drift from the recorded metric."""
        self.setup()
        return self._repeats.revalidate()

    # -- the verbs -----------------------------------------------------------------------------------
    def baseline(self) -> Experiment:
        """Run the run's base commit as it is and record it: the first experiment of every run.

        Returns the existing baseline when the run already has one; a baseline stopped during its noise
        repeats is completed (only the missing repeats run).
        """
        found = self._baseline_row()
        if found is not None and found.status.ran:
            return found
        self.setup()  # before the row exists: a broken setup leaves nothing half-done behind
        if found is not None and found.status == Status.INTERRUPTED and found.runs and found.sha:
            return self.decide(self._repeats.baseline(found))
        base = self._recorder.base_sha()
        source = self.workspace.read(base)
        exp = self._recorder.save(self._recorder.new(Status.PROPOSED, description="baseline", parent_sha=base,
                                                     content=source, content_hash=content_hash(source),
                                                     agent="baseline"))
        self._recorder.emit(EventKind.PROPOSED, exp)
        exp = self.run(exp)
        exp = self._repeats.baseline(exp)  # noise_repeats runs with seeds seed+i: the noise floor
        return self.decide(exp)

    def propose(self, in_flight: tuple[Experiment, ...] = ()) -> Experiment:
        """Ask the agent for one experiment. Returns it with its diff, not yet run.

        A proposal that does not apply or compile is recorded as ``invalid``, one whose file was already
        tried as ``skipped``; neither raises. A fatal agent error (bad key, spend limit) raises
        :class:`AgentError`; an empty queue raises :class:`QueueExhausted`; no baseline yet, or a background
        :meth:`start` running (it proposes for itself), :class:`StateError`.
        """
        if self.running and threading.current_thread() is not self._thread:
            raise StateError("the loop is running in the background; stop() it before proposing by hand")
        if self._baseline_row(ran=True) is None:
            raise StateError("the run has no baseline yet: call loop.baseline() first (a proposal is judged "
                             "against it)")
        parent = self._recorder.head_sha()
        return self._recorder.publish(self._ask(parent, self.workspace.read(parent), tuple(in_flight)))

    def _ask(self, parent: str, source: str, in_flight: tuple[Experiment, ...] = (), **extra: Any) -> Experiment:
        """An unsaved proposal on ``parent`` (its file: ``source``). No git, no store write: the lookahead's
        proposing thread calls it too, so the agent lock keeps ``propose`` and ``tell`` from overlapping."""
        rec, cfg = self._recorder, self.config
        if cfg.max_cost_usd is not None and rec.total_cost_usd >= cfg.max_cost_usd:
            raise BudgetExceeded(f"the run has spent ${rec.total_cost_usd:.2f} of max_cost_usd "
                                 f"${cfg.max_cost_usd:.2f}")
        history = tuple(rec.experiments)
        last = history[-1] if history else None
        tail = log_tail(last.log_path) if last and last.status in (Status.CRASH, Status.TIMEOUT) else None
        context = Context(program=_read(self.repo_root / cfg.program), editable=cfg.editable, source=source,
                          in_flight=in_flight, history=history, config=cfg, best=rec.best,
                          last_log_tail=tail, cost_so_far_usd=rec.total_cost_usd,
                          curves=rec.curves(cfg.time_budget_s), noise=rec.noise())
        device = self._device_class
        with self._agent_lock:
            return ask_agent(self.agent, context, parent, rec.new, rec.twin,
                             kin=lambda content: rec.kin(content, device), **extra)

    def edit(self, exp: Experiment, content: str, description: str | None = None) -> Experiment:
        """Replace a proposal's file (step mode: the user edits before approving). The edit is what runs; its
        description says what the edited file changes (``LR 0.02 -> 0.01 (edited)``) unless one is given."""
        exp = self._stored(exp)
        if exp.status != Status.PROPOSED:
            raise StateError(f"experiment {exp.number} is {exp.status.value}; only a proposal can be edited")
        source = self.workspace.read(exp.parent_sha or self._recorder.head_sha())
        try:
            check_python(self.config.editable, content)
        except EditError as e:
            raise ConfigError(str(e)) from None
        exp = exp.with_(content=content, content_hash=content_hash(content),
                        diff=unified_diff(source, content, self.config.editable),
                        description=description or f"{describe_change(source, content)} (edited)")
        self._recorder.emit(EventKind.PROPOSED, self._recorder.save(exp))
        return exp

    def reject(self, exp: Experiment, reason: str = "rejected by the user") -> Experiment:
        """Drop a proposal without running it (stored as ``invalid``, shown as ``rejected`` everywhere: its reason
        starts with the word). Anything else: its stored state."""
        exp = self._stored(exp)
        if exp.status != Status.PROPOSED:
            return exp
        reason = reason if reason.startswith("rejected") else f"rejected by the user: {reason}"
        return self._recorder.record(exp.with_(status=Status.INVALID, reason=reason, ended_at=time.time()))

    def run(self, exp: Experiment, seed: int | None = None) -> Experiment:
        """Commit the proposal on its parent and run it under the time budget.

        Returns the record with the metric and summary. Statuses set here: ``crash``, ``timeout``,
        ``violation``, ``interrupted``; a clean run stays ``running`` until :meth:`decide`. An experiment
        that already ran is returned as stored.
        """
        exp = self._stored(exp)
        if exp.status != Status.PROPOSED:
            return exp
        if exp.content is None:
            raise StateError(f"experiment {exp.number} has no file content to run")
        if not is_baseline(exp) and self._baseline_row(ran=True) is None:
            raise StateError("the run has no baseline yet: call loop.baseline() first")
        self.setup()
        rec = self._recorder
        parent = exp.parent_sha or rec.head_sha()
        sha = launch_commit(self.workspace, exp, parent)
        pause("commit")
        seed = self._plan.seed(seed)
        job = self._plan.job(exp.number, sha, seed, f"{exp.number:04d}")
        running = rec.save(exp.with_(status=Status.RUNNING, sha=sha, started_at=time.time(), seed=seed,
                                     log_path=job.log_path))
        return _run_row(rec, self._plan, self._stop, running, job, self.config)

    def setup(self) -> None:
        """Run the configured ``setup`` command once per session (data preparation, tokenizer training) before
        the first experiment, with 30 min of its own; a failing setup raises (see :meth:`Plan.setup`)."""
        self._plan.setup(self.workspace.head(), self._recorder.emit, self._recorder.base_sha())
        if not self._compared:  # again after the setup: it (or the verifier's prepare) may have changed the corpus
            check_comparable(self._recorder.store, self.tag, self.config, self.repo_root)
            self._compared = True

    def decide(self, exp: Experiment) -> Experiment:
        """Keep the experiment if its metric beats the best kept one, else move the branch back to its parent.

        The row is written before any git reset, and the commit stays reachable under
        ``refs/autoresearch/<tag>/<number>``. An experiment already decided is returned as stored.
        """
        exp = self._stored(exp)
        if exp.status == Status.PROPOSED:
            raise StateError(f"experiment {exp.number} has not run yet; call run() first")
        if exp.decided_at is not None:
            return exp
        parent = exp.parent_sha or self._recorder.head_sha()
        if exp.status == Status.RUNNING:
            exp = self._repeats.judge(exp, self.best)  # noise.judge; marginal passes get confirmation runs first
        pause("decide")
        exp = settle(self._recorder, self.workspace, exp, parent)
        self._repeats.maybe_revalidate(exp)
        return exp

    def step(self) -> Experiment:
        """Propose, run and decide one experiment (runs the baseline first if the run has none)."""
        if self._baseline_row(ran=True) is None:
            return self.baseline()
        exp = self.propose()
        if exp.status != Status.PROPOSED:
            return exp
        return self.decide(self.run(exp))

    def optimize(self, n: int | None = None, max_seconds: float | None = None) -> list[Experiment]:
        """Repeat :meth:`step` until ``n`` experiments, ``max_seconds`` of wall time, ``max_experiments`` in
        the run, the agent runs out of ideas, the cost limit, or :meth:`stop`. Returns this call's experiments.
        """
        self._stop.clear()
        limits = Limits(n, max_seconds, self.config.max_experiments, lambda: len(self._recorder))
        cfg = self.config
        baseline = lambda: None if self._baseline_row(ran=True) else self.baseline()  # noqa: E731
        if cfg.workers > 1 or cfg.executor == "ray":
            from .parallel import ParallelDriver, make_executor  # K experiments in flight; see its docstring

            return ParallelDriver(
                self._recorder, self._plan, self.workspace, self._repeats, self._stop, setup=self.setup,
                baseline=baseline, propose=self.propose,
                executor=make_executor(self.workspace, self._plan, cfg.executor, cfg.workers,
                                       cfg.ray_address)).optimize(limits)
        return Lookahead(self._recorder, self.workspace, self._stop, cfg, baseline=baseline, propose=self.propose,
                         ask=self._ask, run=self.run, decide=self.decide,
                         warm=getattr(self.agent, "warm", None)).optimize(limits, f"run {self.tag}")

    def stop(self, force: bool = False, reason: str = "stopped by the user", quiet: bool = False) -> None:
        """Stop after the current experiment; with ``force`` also end the running one now (as interrupted). Says
        so as a message (the dashboard's note, the console's line) unless ``quiet`` (the caller says it itself)."""
        self._stop.set(force, reason)
        if not quiet:
            what = "now: the running experiment is recorded as interrupted" if force else "after the running one"
            self._recorder.emit(EventKind.MESSAGE, message=f"stopping {what} ({reason})", purpose="stop")

    def start(self, n: int | None = None, max_seconds: float | None = None) -> threading.Thread:
        """Run :meth:`optimize` in a background thread and return it at once; :meth:`stop` ends it."""
        if self.running:
            raise StateError("this loop is already running in the background")
        self._stop.clear()

        def target() -> None:
            try:
                self.optimize(n=n, max_seconds=max_seconds)
            except BaseException as e:  # kept for the user: loop.error
                self.error = e
                log.error("background loop ended with %s: %s", type(e).__name__, e)

        self.error = None
        self._thread = Background(target=target, name=f"autoresearch-{self.tag}", daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> None:
        """Block until a background run started with :meth:`start` ends."""
        if self._thread:
            waiting.join(self._thread, timeout)  # a notebook's Stop click acts while this cell waits

    def dashboard(self, mode: str = "auto", **kwargs: Any) -> Any:
        """Show this run live: the widget dashboard in Jupyter, console lines elsewhere (papermill, a terminal).

        >>> dash = loop.dashboard(); loop.start(n=10)   # doctest: +SKIP
        """
        from .dashboard import dashboard  # lazy: the core never imports ipywidgets

        return dashboard(self, mode=mode, **kwargs)

    # -- helpers ---------------------------------------------------------------------------------------
    def _stored(self, exp: Experiment) -> Experiment:
        """The stored state of ``exp`` (the caller's copy may be stale); StateError if it was never proposed."""
        stored = self._recorder.get(exp.number)
        if stored is None or exp.tag != self.tag:
            raise StateError(f"experiment {exp.number} was never proposed in run {self.tag!r}")
        return stored

    def _baseline_row(self, ran: bool = False) -> Experiment | None:
        """The run's latest baseline row (with ``ran``: one that ran), or None."""
        if self._baseline is None:  # a baseline that ran never changes again: found once, then remembered
            rows = [e for e in self._recorder.experiments if is_baseline(e)]
            if rows and rows[-1].status.ran:
                self._baseline = rows[-1]
            elif not ran:
                return rows[-1] if rows else None
        return self._baseline

    def __repr__(self) -> str:
        best = self.best
        return (f"<Loop tag={self.tag!r} experiments={len(self.experiments)} "
                f"best={best.metric if best else None} agent={getattr(self.agent, 'name', '?')}>")


class Background(threading.Thread):
    """The thread :meth:`Loop.start` returns: a notebook cell ending in ``loop.start()`` shows what it is and
    how to end it, not ``<Thread(autoresearch-nov27, started daemon 1403...)>``."""

    def __repr__(self) -> str:
        state = "running in the background" if self.is_alive() else "finished"
        return f"<{self.name} {state}: loop.stop() ends it, loop.wait() waits for it, loop.error says how it ended>"


def _read(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


def _run_row(rec: Recorder, plan: Plan, stop: StopSignal, running: Experiment, job: Job, config: Config
             ) -> Experiment:
    """Run ``job`` for the experiment whose row says ``running``; the row is closed however the run ends (an
    interrupt included, even one before the process started) with its curve and its pid while it runs."""
    rec.store.clear_points(rec.tag, running.number)
    points = PointBuffer(rec.store, rec.tag, running.number)
    seed = running.seed

    def on_point(point: CurvePoint) -> None:
        points.add(point)
        rec.emit(EventKind.PROGRESS, running, point, repeat=0, seed=seed)

    def on_start(pid: int) -> None:
        nonlocal running
        pause("started")
        running = rec.save(running.with_(pid=pid))

    def finish(result: RunResult, changed: list[str] | tuple[str, ...]) -> Experiment:
        points.flush()
        exp = rec.save(finished(running, result, config.metric, changed, config.editable))
        rec.emit(EventKind.RUN_FINISHED, exp)
        return exp

    closed: list[Experiment] = []  # the row, once an interrupt closed it
    hooks = Hooks(on_point=on_point, on_start=on_start, on_interrupt=lambda r: closed.append(finish(r, ())),
                  on_phase=lambda name: rec.emit(EventKind.PHASE, running, message=name, seed=seed))
    try:
        pause("saved-running")
        rec.emit(EventKind.RUN_STARTED, running)
        result, changed = plan.finish(job, plan.run_here(job, stop, hooks))
    except KeyboardInterrupt as e:
        if not closed:  # interrupted before the pipeline began: the row is closed all the same
            finish(not_started(job.log_path), ())
        if isinstance(e, RunInterrupted):
            raise
        raise RunInterrupted(f"experiment {running.number} was stopped before its run began and recorded as "
                             "interrupted") from None
    return finish(result, changed)
