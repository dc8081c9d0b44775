"""The step-able loop: propose -> run -> decide, one experiment at a time, in a notebook or unattended.

>>> loop = Loop.open(".", tag="nov27", agent="tuner", time_budget_s=60)   # doctest: +SKIP
>>> loop.baseline(); exp = loop.propose(); exp = loop.run(exp); exp = loop.decide(exp)  # doctest: +SKIP
>>> loop.optimize(n=10); loop.results.tail()   # doctest: +SKIP
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import results as _results
from .agents import Agent, Context, QueueExhausted, make_agent
from .config import Config, make_config
from .edits import EditError, apply_edits, check_python, content_hash, unified_diff
from .errors import AgentError, AutoresearchError, BudgetExceeded, ConfigError
from .events import Event, EventBus, EventKind, Listener
from .git import STATE_DIR, Workspace, find_repo
from .records import CurvePoint, Experiment, RunResult, Status, is_baseline
from .repeats import NoiseMixin
from .runner import Run, kill_group, log_tail, scrub_env
from .store import Store
from .view import best_of, load_results, store_path  # noqa: F401  (load_results: re-exported)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("autoresearch_nb")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_SEED = 42
MAX_STORED_POINTS = 5000  # curve points stored per experiment before thinning
MAX_IDLE_PROPOSALS = 10
SETUP_TIMEOUT_S = 1800.0  # proposals in a row that never ran before optimize() gives up


class Loop(NoiseMixin):
    """One research run: a tag, a branch, a worktree, an agent and the experiment store.

    Verbs: :meth:`baseline`, :meth:`propose`, :meth:`run`, :meth:`decide`, :meth:`step`, :meth:`optimize`,
    :meth:`stop`, :meth:`start`. Data: :attr:`results` (pandas), :attr:`best`, :attr:`experiments`.
    """

    def __init__(self, repo_root: Path, tag: str, config: Config, agent: Agent, store: Store,
                 workspace: Workspace) -> None:
        self.repo_root = repo_root
        self.tag = tag
        self.config = config
        self.agent = agent
        self.store = store
        self.workspace = workspace
        self.events = EventBus()
        self._stop = threading.Event()
        self._stop_reason = ""
        self._current: Run | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # what ended a background run, if it failed
        self._lockfile: Any = None
        self._pending_points: list[CurvePoint] = []
        self._points_flushed_at = 0.0

    # -- opening -------------------------------------------------------------------------------------
    @classmethod
    def open(cls, repo: str | Path = ".", tag: str | None = None, agent: str | Agent | None = None,
             **config: Any) -> "Loop":
        """Create the run ``tag`` in ``repo`` or resume it. Settings: see :class:`Config`.

        On resume, an experiment that was running when the last loop process died is recorded as
        ``interrupted``, its processes are killed, and the worktree goes back to the best commit.
        """
        if not tag:
            tag = time.strftime("%b%d").lower()
        if not _TAG.match(tag):
            raise ConfigError(f"tag {tag!r} must be letters, digits, '.', '_' or '-' (at most 64)")
        root = find_repo(repo)
        lock = _acquire_lock(root, tag)  # first: nothing (not even the worktree) is touched by a second opener
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
            ws = Workspace(root, tag, cfg.editable)
            loop = cls(root, tag, cfg, agent_obj, store, ws)
            loop._lockfile = lock
            stored_cfg = {**cfg.to_dict(), "_agent": getattr(agent_obj, "name", None)}
            store.create_run(tag, stored_cfg, ws.head())
            store.set_config(tag, stored_cfg)  # on resume, what this session uses becomes the stored config
            loop._recover()
        except BaseException:
            if store is not None:
                store.close()
            _release_lock(lock)
            raise
        return loop

    def close(self) -> None:
        """Release the run (the lock and the database). The loop object cannot be used afterwards."""
        self.stop(force=True)
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        if self._lockfile:
            _release_lock(self._lockfile)
            self._lockfile = None
        self.store.close()

    def __enter__(self) -> "Loop":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _recover(self) -> None:
        """Clean up after a loop process that died mid-experiment."""
        for exp in self.experiments:
            if exp.status == Status.RUNNING:
                if exp.pid:
                    _kill_orphan(exp.pid, self.tag, exp.number)
                self._save(exp.with_(status=Status.INTERRUPTED, ended_at=exp.ended_at or time.time(),
                                     reason="the loop process ended while this experiment was running"))
                if exp.sha:
                    self.workspace.keep_ref(exp.number, exp.sha)
            elif exp.status == Status.PROPOSED:
                self._save(exp.with_(status=Status.INTERRUPTED,
                                     reason="proposed, but the loop ended before it ran"))
        target = self._best_sha()
        if self.workspace.head() != target or self.workspace.changed_paths():
            self.workspace.reset(target)
        self._write_tsv()

    # -- events --------------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every loop event; returns an unsubscribe function."""
        return self.events.subscribe(listener)

    def _emit(self, kind: EventKind, exp: Experiment | None = None, point: CurvePoint | None = None,
              message: str = "", **fields: Any) -> None:
        self.events.emit(Event(kind, exp, point, message, **fields))

    # -- data ----------------------------------------------------------------------------------------
    @property
    def experiments(self) -> list[Experiment]:
        """Every experiment of this run, oldest first."""
        return self.store.experiments(self.tag)

    @property
    def best(self) -> Experiment | None:
        """The best kept experiment (the branch's head), or None before any keep."""
        return best_of(self.experiments, self.config.maximize)

    @property
    def results(self) -> "pd.DataFrame":
        """Every experiment as a pandas DataFrame (newest last)."""
        return _results.dataframe(self.experiments, self.config.metric, self.config.maximize,
                                  self.config.record)

    def curve(self, number: int) -> list[CurvePoint]:
        """The progress points of experiment ``number``."""
        return [p for _, p in self.store.points(self.tag, number)]

    @property
    def total_cost_usd(self) -> float:
        return sum(e.cost_usd or 0.0 for e in self.experiments)

    @property
    def results_tsv(self) -> Path:
        return self.repo_root / STATE_DIR / "results" / self.tag / "results.tsv"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _best_sha(self) -> str:
        """The commit the next experiment builds on: the last kept one (the baseline's parent at first)."""
        kept = [e for e in self.experiments if e.status == Status.KEEP and e.sha]
        if kept:
            return kept[-1].sha  # kept experiments form a chain; the latest kept is the branch head
        run = self.store.get_run(self.tag)
        return (run or {}).get("base_sha") or self.workspace.head()

    def _save(self, exp: Experiment) -> Experiment:
        self.store.save(exp)
        return exp

    def _new(self, status: Status, **fields: Any) -> Experiment:
        now = time.time()
        return Experiment(number=self.store.next_number(self.tag), tag=self.tag, status=status,
                          created_at=now, **fields)

    # -- the verbs -----------------------------------------------------------------------------------
    def baseline(self) -> Experiment:
        """Run the editable file as it is and record it: the first experiment of every run.

        Returns the existing baseline when the run already has one.
        """
        for e in self.experiments:
            if e.description == "baseline" and e.status.ran:
                return e
        self.setup()  # before the row exists: a broken setup leaves nothing half-done behind
        parent = self._best_sha()
        source = self.workspace.read(parent)
        exp = self._save(self._new(Status.PROPOSED, description="baseline", parent_sha=parent, content=source,
                                   content_hash=content_hash(source), agent="baseline"))
        self._emit(EventKind.PROPOSED, exp)
        exp = self.run(exp)
        exp = self._repeat_baseline(exp)  # noise_repeats runs with seeds seed+i: the noise floor
        return self.decide(exp)

    def propose(self, in_flight: tuple[Experiment, ...] = ()) -> Experiment:
        """Ask the agent for one experiment. Returns it with its diff, not yet run.

        A proposal that does not apply or compile is recorded as ``invalid``, one whose file was already
        tried as ``skipped``; neither raises. A fatal agent error (bad key, spend limit) raises
        :class:`AgentError`; an empty queue raises :class:`QueueExhausted`.
        """
        parent = self._best_sha()
        source = self.workspace.read(parent)
        history = tuple(self.experiments)
        if self.config.max_cost_usd is not None and self.total_cost_usd >= self.config.max_cost_usd:
            raise BudgetExceeded(f"the run has spent ${self.total_cost_usd:.2f} of max_cost_usd "
                                 f"${self.config.max_cost_usd:.2f}")
        last = history[-1] if history else None
        tail = log_tail(last.log_path) if last and last.status in (Status.CRASH, Status.TIMEOUT) else None
        best = self.best
        context = Context(program=self._program(), editable=self.config.editable, source=source,
                          in_flight=tuple(in_flight),
                          history=history, config=self.config, best=best, last_log_tail=tail,
                          cost_so_far_usd=self.total_cost_usd)
        agent_name = getattr(self.agent, "name", type(self.agent).__name__)
        try:
            proposal = self.agent.propose(context)
        except (AgentError, BudgetExceeded, QueueExhausted):
            raise
        except Exception as e:  # a bug in an agent is recorded, not fatal to an overnight run
            log.exception("agent %s failed", agent_name)
            exp = self._save(self._new(Status.INVALID, description="(agent error)", parent_sha=parent,
                                       agent=agent_name, reason=f"the agent raised {type(e).__name__}: {e}"))
            self._emit(EventKind.PROPOSED, exp)
            return exp
        usage = proposal.usage
        common = dict(description=(proposal.description or "").strip() or "(no description)",
                      parent_sha=parent, agent=agent_name, model=proposal.model,
                      input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                      cache_write_tokens=usage.cache_write_tokens, cache_read_tokens=usage.cache_read_tokens,
                      cost_usd=usage.cost_usd)
        status, reason, content = Status.PROPOSED, "", None
        try:
            if proposal.error:
                raise EditError(proposal.error)
            content = proposal.content if proposal.content is not None else apply_edits(source, proposal.edits)
            if content == source:
                raise EditError("the proposal changes nothing")
            check_python(self.config.editable, content)
        except EditError as e:
            status, reason = Status.INVALID, str(e)
        diff = unified_diff(source, content, self.config.editable) if content is not None else ""
        digest = content_hash(content) if content is not None else None
        if status == Status.PROPOSED:
            twin = next((e for e in history if e.content_hash == digest and e.status != Status.INVALID), None)
            if twin is not None:
                status, reason = Status.SKIPPED, f"same file as experiment {twin.number} ({twin.status.value})"
        exp = self._save(self._new(status, diff=diff, content=content, content_hash=digest, reason=reason,
                                   **common))
        self._emit(EventKind.PROPOSED, exp)
        if status != Status.PROPOSED:
            self._tell(exp)
        return exp

    def edit(self, exp: Experiment, content: str, description: str | None = None) -> Experiment:
        """Replace a proposal's file (step mode: the user edits before approving). The edit is what runs."""
        if exp.status != Status.PROPOSED:
            raise ConfigError(f"experiment {exp.number} is {exp.status.value}; only a proposal can be edited")
        source = self.workspace.read(exp.parent_sha or self._best_sha())
        try:
            check_python(self.config.editable, content)
        except EditError as e:
            raise ConfigError(str(e)) from None
        exp = exp.with_(content=content, content_hash=content_hash(content),
                        diff=unified_diff(source, content, self.config.editable),
                        description=description or exp.description + " (edited)")
        self._emit(EventKind.PROPOSED, self._save(exp))
        return exp

    def reject(self, exp: Experiment, reason: str = "rejected by the user") -> Experiment:
        """Drop a proposal without running it (recorded as ``invalid``)."""
        if exp.status != Status.PROPOSED:
            raise ConfigError(f"experiment {exp.number} is {exp.status.value}; only a proposal can be rejected")
        exp = self._save(exp.with_(status=Status.INVALID, reason=reason, ended_at=time.time()))
        self._emit(EventKind.DECIDED, exp)
        self._tell(exp)
        return exp

    def run(self, exp: Experiment, seed: int | None = None) -> Experiment:
        """Commit the proposal on its parent and run it under the time budget.

        Returns the record with the metric and summary. Statuses set here: ``crash``, ``timeout``,
        ``violation``, ``interrupted``; a clean run stays ``running`` until :meth:`decide`.
        """
        exp = self.store.get(self.tag, exp.number) or exp
        if exp.status != Status.PROPOSED:
            raise ConfigError(f"experiment {exp.number} is {exp.status.value}; only a proposal can run")
        self.setup()
        if exp.content is None:
            raise ConfigError(f"experiment {exp.number} has no file content to run")
        parent = exp.parent_sha or self._best_sha()
        if self.workspace.head() != parent or self.workspace.changed_paths():
            self.workspace.reset(parent)
        sha = parent
        if exp.content != self.workspace.read(parent):
            sha = self.workspace.commit(exp.content, commit_message(exp))
        self.workspace.keep_ref(exp.number, sha)
        seed = self._seed(seed)
        log_path = self._log_path(f"{exp.number:04d}")
        exp = self._save(exp.with_(status=Status.RUNNING, sha=sha, started_at=time.time(), seed=seed,
                                   log_path=str(log_path)))
        self.store.clear_points(self.tag, exp.number)
        env = self._run_env(seed, exp.number)
        running = exp

        seen = [0]

        def on_point(point: CurvePoint) -> None:
            seen[0] += 1
            # A chatty target must not write a million rows: past MAX_STORED_POINTS keep every 10th.
            if seen[0] <= MAX_STORED_POINTS or seen[0] % 10 == 0:
                self._pending_points.append(point)
            now = time.monotonic()
            if now - self._points_flushed_at > 1.0 or len(self._pending_points) >= 200:
                self._flush_points(running.number)
            self._emit(EventKind.PROGRESS, running, point, repeat=0, seed=seed)

        def on_start(pid: int) -> None:
            nonlocal running
            running = self._save(running.with_(pid=pid))

        self._emit(EventKind.RUN_STARTED, exp)
        self._current = Run(self.config.command, self.workspace.path, log_path,
                            timeout_s=self.config.hard_timeout_s, env=env, on_point=on_point, on_start=on_start)
        if self._stop.is_set() and self._force:
            self._current.cancel()
        try:
            result = self._current.wait()
        except KeyboardInterrupt:  # a notebook's "interrupt kernel": end the run cleanly, then re-raise
            self._current.cancel()
            result = self._current.wait()
            self._finish_run(running, result)
            raise
        finally:
            self._current = None
        return self._finish_run(running, result)

    def _seed(self, seed: int | None = None) -> int:
        """The seed a run gets: the one asked for, else the configured one, else the default."""
        if seed is not None:
            return seed
        return self.config.seed if self.config.seed is not None else DEFAULT_SEED

    def _log_path(self, name: str) -> Path:
        return self.repo_root / STATE_DIR / "logs" / self.tag / f"{name}.log"

    def _run_env(self, seed: int, number: int | str) -> dict[str, str]:
        """The scrubbed environment of one run; ``AUTORESEARCH_RUN`` lets a reopened loop find its orphans."""
        return scrub_env(allow=self.config.env_allow, extra={
            "AUTORESEARCH_TIME_BUDGET": f"{self.config.time_budget_s:g}",
            "AUTORESEARCH_SEED": str(seed),
            "AUTORESEARCH_RUN": f"{self.tag}/{number}",
            "PYTHONUNBUFFERED": "1",
        })

    def _limit(self, n: int | None, timeout_s: float | None, start: float, count: int) -> str:
        """Why ``optimize`` should stop proposing after ``count`` experiments, or "" to go on."""
        if n is not None and count >= n:
            return f"{n} experiments"
        if timeout_s is not None and time.monotonic() - start >= timeout_s:
            return f"timeout of {timeout_s:g} s"
        cap = self.config.max_experiments
        if cap is not None and len(self.experiments) >= cap:
            return f"max_experiments={cap} reached"
        return ""

    def setup(self) -> None:
        """Run the configured ``setup`` command once per session (data preparation, tokenizer training).

        It runs in the worktree before the first experiment, outside any experiment's timeout (30 min of its
        own), so a one-time cost never turns the baseline into a timeout. A failing setup raises: the harness,
        not an experiment, is broken.
        """
        if not self.config.setup or self._setup_done:
            return
        log_path = self._log_path("setup")
        self._emit(EventKind.SETUP_STARTED, message=f"setup: {self.config.setup}")
        env = scrub_env(allow=self.config.env_allow, extra={"PYTHONUNBUFFERED": "1"})
        self._current = Run(self.config.setup, self.workspace.path, log_path, timeout_s=SETUP_TIMEOUT_S, env=env)
        try:
            result = self._current.wait()
        finally:
            self._current = None
        if self.workspace.changed_paths():
            self.workspace.reset(self.workspace.head())
        if result.interrupted:
            raise KeyboardInterrupt("setup interrupted")
        if result.exit_code != 0 or result.timed_out:
            raise AutoresearchError(f"the setup command {self.config.setup!r} failed "
                                    f"({result.error or f'exit code {result.exit_code}'}); see {log_path}")
        self._setup_done = True

    _setup_done = False

    def _flush_points(self, number: int) -> None:
        points, self._pending_points = self._pending_points, []
        self._points_flushed_at = time.monotonic()
        try:
            self.store.add_points(self.tag, number, points)
        except Exception:
            log.exception("could not store curve points")

    def _finish_run(self, exp: Experiment, result: RunResult, changed: list[str] | None = None) -> Experiment:
        self._flush_points(exp.number)
        summary = dict(result.summary)
        metric = summary.get(self.config.metric)
        metric = float(metric) if isinstance(metric, (int, float)) else None
        if metric is not None and metric != metric:  # NaN
            metric = None
        status, reason = Status.RUNNING, ""
        if result.interrupted:
            status, reason = Status.INTERRUPTED, "stopped by the user"
        elif result.timed_out:
            status, reason = Status.TIMEOUT, result.error or "timeout"
        elif result.exit_code != 0 or result.failed:
            status, reason = Status.CRASH, result.error or f"exit code {result.exit_code}"
        elif metric is None:
            status, reason = Status.CRASH, f"no {self.config.metric!r} in the run's summary (a '---' line, " \
                                           f"then 'key: value' lines)"
        if changed is None:
            changed = self._violations()
        else:  # a parallel worker's report, in the same words as _violations
            changed = [p + " (rewritten by the run)" if p == self.config.editable else p for p in changed]
        if changed and status != Status.INTERRUPTED:
            status, reason = Status.VIOLATION, "the run changed files besides " \
                f"{self.config.editable}: {', '.join(changed[:10])} (reverted)"
        training = summary.get("training_seconds")
        exp = exp.with_(status=status, reason=reason, metric=metric,
                        summary=summary, exit_code=result.exit_code, error=result.error,
                        ended_at=time.time(), wall_seconds=result.wall_s,
                        training_seconds=float(training) if isinstance(training, (int, float)) else None)
        exp = self._save(exp)
        self._emit(EventKind.RUN_FINISHED, exp)
        return exp

    def _violations(self) -> list[str]:
        changed = self.workspace.changed_paths()
        out = [p for p in changed if p != self.config.editable]
        if self.config.editable in changed:
            out.insert(0, self.config.editable + " (rewritten by the run)")
        return out

    def decide(self, exp: Experiment) -> Experiment:
        """Keep the experiment if its metric beats the best kept one, else move the branch back to its parent.

        The row is written before any git reset, and the commit stays reachable under
        ``refs/autoresearch/<tag>/<number>``.
        """
        exp = self.store.get(self.tag, exp.number) or exp
        if exp.status.finished and exp.status not in (Status.CRASH, Status.TIMEOUT, Status.VIOLATION,
                                                      Status.INTERRUPTED):
            return exp  # already decided
        if exp.status == Status.PROPOSED:
            raise ConfigError(f"experiment {exp.number} has not run yet; call run() first")
        parent = exp.parent_sha or self._best_sha()
        if exp.status == Status.RUNNING:
            exp = self._judge(exp, self.best)  # noise.judge; marginal passes get confirmation runs first
        exp = self._save(exp)  # the record first, then git (Karpathy's PR #306)
        self._write_tsv()
        if exp.status != Status.KEEP:
            if self.workspace.head() != parent or self.workspace.changed_paths():
                self.workspace.reset(parent)
        self._emit(EventKind.DECIDED, exp)
        self._tell(exp)
        if exp.status == Status.KEEP and not is_baseline(exp):
            self._maybe_revalidate()
        return exp

    def rule(self, exp: Experiment, best: Experiment | None) -> tuple[bool, str]:
        """The keep rule (:func:`autoresearch_nb.noise.judge`): better than the best by more than the noise.

        With ``noise_k=0``, or before a noise floor is measured: strictly better (Karpathy's rule). A marginal
        pass (``confirm``) counts as not kept here; :meth:`decide` runs its confirmation runs.
        """
        if is_baseline(exp):
            return True, "baseline"
        d = self._decision(exp, best)
        return d.keep, d.reason

    def step(self) -> Experiment:
        """Propose, run and decide one experiment (runs the baseline first if the run has none)."""
        if not any(e.status.ran for e in self.experiments):
            return self.baseline()
        exp = self.propose()
        if exp.status != Status.PROPOSED:
            return exp
        exp = self.run(exp)
        return self.decide(exp)

    def optimize(self, n: int | None = None, timeout_s: float | None = None) -> list[Experiment]:
        """Repeat :meth:`step` until ``n`` experiments, ``timeout_s`` seconds, ``max_experiments`` in the run,
        the agent runs out of ideas, the cost limit, or :meth:`stop`. Returns the experiments of this call.
        """
        self._stop.clear()
        self._force = False
        self._stop_reason = ""
        if self.config.workers > 1 or self.config.executor == "ray":
            from .parallel import ParallelDriver  # K experiments in flight; see its docstring for the rules
            return ParallelDriver(self).optimize(n=n, timeout_s=timeout_s)
        done: list[Experiment] = []
        start = time.monotonic()
        idle = 0
        self._emit(EventKind.LOOP_STARTED, message=f"run {self.tag}")
        reason = "done"
        try:
            while True:
                if self._stop.is_set():
                    reason = self._stop_reason or "stopped"
                    break
                limit = self._limit(n, timeout_s, start, len(done))
                if limit:
                    reason = limit
                    break
                try:
                    exp = self.step()
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
            self._emit(EventKind.LOOP_FINISHED, message=f"{type(e).__name__}: {e}", error=True)
            raise
        self._emit(EventKind.LOOP_FINISHED, message=reason)
        return done

    def stop(self, force: bool = False, reason: str = "stopped by the user") -> None:
        """Stop after the current experiment; with ``force`` also end the running one now (as interrupted)."""
        self._stop_reason = reason
        self._force = force
        self._stop.set()
        if force and self._current is not None:
            self._current.cancel()

    _force = False

    def start(self, n: int | None = None, timeout_s: float | None = None) -> threading.Thread:
        """Run :meth:`optimize` in a background thread and return at once; :meth:`stop` ends it."""
        if self.running:
            raise ConfigError("this loop is already running in the background")
        self._stop.clear()

        def target() -> None:
            try:
                self.optimize(n=n, timeout_s=timeout_s)
            except BaseException as e:  # kept for the user: loop.error
                self.error = e
                log.error("background loop ended with %s: %s", type(e).__name__, e)

        self.error = None
        self._thread = threading.Thread(target=target, name=f"autoresearch-{self.tag}", daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> None:
        """Block until a background run started with :meth:`start` ends."""
        if self._thread:
            self._thread.join(timeout)

    def dashboard(self, mode: str = "auto", **kwargs: Any) -> Any:
        """Show this run live: the widget dashboard in Jupyter, console lines elsewhere (papermill, a terminal).

        >>> dash = loop.dashboard(); loop.start(n=10)   # doctest: +SKIP
        """
        from .dashboard import dashboard  # lazy: the core never imports ipywidgets

        return dashboard(self, mode=mode, **kwargs)

    # -- helpers ---------------------------------------------------------------------------------------
    def _program(self) -> str:
        path = self.repo_root / self.config.program
        return path.read_text() if path.is_file() else ""

    def _tell(self, exp: Experiment) -> None:
        tell = getattr(self.agent, "tell", None)
        if callable(tell):
            try:
                tell(exp)
            except Exception:
                log.exception("agent.tell failed")

    def _write_tsv(self) -> None:
        try:
            _results.write_tsv(self.results_tsv, self.experiments, self.config.metric, self.config.memory_key)
        except OSError:
            log.exception("could not write %s", self.results_tsv)

    def __repr__(self) -> str:
        best = self.best
        return (f"<Loop tag={self.tag!r} experiments={len(self.experiments)} "
                f"best={best.metric if best else None} agent={getattr(self.agent, 'name', '?')}>")


def _acquire_lock(root: Path, tag: str) -> Any:
    """An exclusive lock on the run, released by the OS if the process dies (so kill -9 leaves none)."""
    path = root / STATE_DIR / "locks" / f"{tag}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip()
        f.close()
        raise ConfigError(f"run {tag!r} is already open in another process ({holder or 'unknown'}); "
                          "close that loop first, or read results with autoresearch_nb.load_results") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    return f


def _release_lock(f: Any) -> None:
    try:
        fcntl.flock(f, fcntl.LOCK_UN)
    finally:
        f.close()


def commit_message(exp: Experiment) -> str:
    """The commit message of an experiment: its number and description, then the run's tag."""
    first = " ".join(exp.description.split())[:72] or "experiment"
    return f"exp {exp.number}: {first}\n\nautoresearch_nb tag {exp.tag}"


def _kill_orphan(pid: int, tag: str, number: int) -> None:
    """Kill the process group of a run left behind by a dead loop, if it is still ours."""
    try:
        import psutil
        proc = psutil.Process(pid)
        if proc.environ().get("AUTORESEARCH_RUN") != f"{tag}/{number}":
            return  # the pid was reused by something else
    except Exception:
        return
    kill_group(pid, grace_s=1.0)
