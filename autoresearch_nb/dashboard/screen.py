"""What the dashboard shows, without any widget: a plain object fed loop events.

It knows which runs are live (an experiment's own run, a repeat of a commit), the proposal waiting for review,
what a button started, the note under the status, the bar's position and colour, and which controls make sense
now. Every text it returns says what is true now: a decided run is no longer "running", an idle bar reads in the
past tense, the setup line goes when the setup is done. :mod:`.widgets` copies this state onto ipywidgets; the
tests read it directly.

>>> screen = Screen(loop); screen.feed(event); screen.status_html()   # doctest: +SKIP
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..console import counted, overall_progress
from ..events import Event, EventKind
from ..records import CurvePoint, Experiment, Status, is_baseline
from ..view import best_of
from . import plotdata
from .html import esc

PROPOSING = "a proposal"  # the action of the Propose button
WAITING = "measured, waiting for decide()"  # a clean run a cell ran, before the cell's decide()
DECIDING = "measured, deciding"             # the same while the loop or a button goes on to decide it
# what a run is doing in each pipeline phase (pipeline.PHASES), for the bar and the running lines
PHASE_WORDS = {"prepare": "preparing", "start": "starting (imports, data)", "train": "training",
               "evaluate": "evaluating", "verify": "verifying"}
PURPOSE_WORDS = {"noise": "noise-floor run", "confirmation": "confirmation run", "pairing": "paired run of the best",
                 "revalidation": "re-validation run"}


@dataclass
class Live:
    """One run on screen: an experiment's own run, or a repeat of a commit (``purpose`` set)."""

    exp: Experiment | None
    points: list[CurvePoint] = field(default_factory=list)
    running: bool = True
    worker: int | None = None
    purpose: str | None = None   # noise, confirmation, revalidation; None for the experiment's own run
    seed: int | None = None
    index: int | None = None     # this repeat is run ``index`` of ``total`` of its commit
    total: int | None = None
    phase: str | None = None     # the pipeline phase it is in (PHASE events), and since when (monotonic)
    phase_since: float = 0.0
    started: float = field(default_factory=time.monotonic)  # for the ETA, which moves while it runs

    def doing(self) -> str:
        """What the run is doing now, in words: ``evaluating 4 s``, ``training``, else ``running``."""
        word = PHASE_WORDS.get(self.phase or "", "running")
        if self.phase in ("evaluate", "verify"):  # no progress lines then: how long it has been at it
            word += f" {time.monotonic() - self.phase_since:.0f} s"
        return word

    @property
    def number(self) -> int | None:
        return self.exp.number if self.exp is not None else None

    def name(self) -> str:
        """``#4`` and, with parallel workers, ``#4 w1``."""
        head = f"#{self.number}" if self.number is not None else ""
        return head + (f" w{self.worker}" if self.worker is not None else "")

    def repeat_text(self) -> str:
        """``confirmation run 2/2, seed 43``."""
        what = PURPOSE_WORDS.get(self.purpose or "", f"{self.purpose} run")
        if self.index is not None:
            what += f" {self.index}" + (f"/{self.total}" if self.total else "")
        return what + (f", seed {self.seed}" if self.seed is not None else "")


def has_baseline(experiments: list[Experiment]) -> bool:
    """True once the run's baseline has run (proposals build on it)."""
    return any(is_baseline(e) and e.status.ran for e in experiments)


@dataclass
class Bar:
    """The progress bar: where it is, its scale and colour, and the text beside it."""

    value: float = 0.0
    max: float = 1.0
    color: str = plotdata.COLORS["running"]


class Screen:
    """The dashboard's state, fed :class:`~autoresearch_nb.events.Event` objects by :meth:`feed`.

    ``source`` is the loop (or a :class:`~autoresearch_nb.view.RunView`): read for the summary line only.
    Not thread-safe: the widget layer serialises calls.
    """

    def __init__(self, source: Any) -> None:
        self.source = source
        self.metric = source.config.metric
        self.budget_s = float(source.config.time_budget_s)
        self.runs: dict[int, Live] = {}       # experiments' own runs on screen, oldest first
        self.repeats: dict[tuple, Live] = {}  # repeat runs going on, by (number, purpose, index)
        self.shown: Experiment | None = None  # the experiment whose diff is on screen
        self.pending: Experiment | None = None  # a proposal waiting for approve / reject / edit
        self.selected: int | None = None      # an experiment the user chose to look at (None: the live one)
        self.compared: tuple[int, ...] = ()   # experiments whose stored curves are drawn over the live ones
        self.loop_running = False
        self.action = ""                      # what a button started and is still doing ("", "the baseline", ...)
        self.action_note = ""                 # what the action is doing, in words (HTML), while it does
        self.setup = ""                       # the setup command while it runs
        self.stop_asked = ""                  # "after" or "now" once a Stop button was pressed, until idle
        self.note = ""                        # the latest outcome or message (HTML)
        self.finished = ""                    # the last "loop finished: ..." message
        self.last_run = ""                    # the idle bar's text: how the last run ended
        self.overall_text = ""                # experiment k / n · ETA, as of the last status refresh
        self._overall: tuple | None = None   # what that text was made of, for an ETA that moves with the run
        self.bar = Bar(max=self.budget_s)
        self.dirty = {"curves": True, "table": True, "progress": True, "diff": True}
        self.res: dict[str, tuple[list[float], list[float]]] = {}
        self._focus: Live | None = None
        self._handlers: dict[EventKind, Callable[[Event], None]] = {
            EventKind.LOOP_STARTED: self._loop_started, EventKind.PROPOSED: self._proposed,
            EventKind.RUN_STARTED: self._run_started, EventKind.PROGRESS: self._progress,
            EventKind.RUN_FINISHED: self._run_finished, EventKind.DECIDED: self._decided,
            EventKind.LOOP_FINISHED: self._loop_finished, EventKind.REPEAT_STARTED: self._repeat_started,
            EventKind.NOISE_FLOOR: self._noise_floor, EventKind.REVALIDATED: self._revalidated,
            EventKind.SETUP_STARTED: self._setup_started, EventKind.SETUP_FINISHED: self._setup_finished,
            EventKind.MESSAGE: self._message, EventKind.PHASE: self._phase}
        workers = int(getattr(source.config, "workers", 1) or 1)
        self.note = f"budget {self.budget_s:g} s per experiment" + (f" · {workers} workers" if workers > 1 else "")

    # -- events ----------------------------------------------------------------------------------------
    def feed(self, event: Event) -> None:
        """Take one loop event into the state."""
        handler = self._handlers.get(event.kind)
        if handler is not None:
            handler(event)

    def _loop_started(self, event: Event) -> None:
        self.loop_running = True
        self.stop_asked = ""
        self.pending = None
        self.finished = ""
        self.note = f"loop started: {esc(event.message)}"

    def _proposed(self, event: Event) -> None:
        e = event.experiment
        if e is None:
            return
        self.shown = e
        self.dirty["diff"] = True
        head = f"<b>#{e.number}</b> {esc(e.description[:80])}"
        asked = self.action in ("", PROPOSING)  # a cell's propose() or the Propose button, not the loop's own
        if e.status == Status.PROPOSED and not self.loop_running and asked and not is_baseline(e):
            self.pending = e
            self.note = f"{head} · <b>proposed</b>: approve, reject or edit it here, or run <code>loop.run(exp)</code>"
            return
        if self.pending is not None and self.pending.number == e.number:
            self.pending = None
        if e.status != Status.PROPOSED:  # an outcome (invalid, skipped); a proposal about to run is not
            self.dirty["table"] = True
            self.note = f"{head} · <b>{esc(plotdata.shown_status(e.status.value, e.reason))}</b> {esc(e.reason)}"

    def _run_started(self, event: Event) -> None:
        e = event.experiment
        if e is None:
            return
        # Finished runs leave the screen when a new one starts; runs still going stay.
        for number in [n for n, r in self.runs.items() if not r.running]:
            del self.runs[number]
        self._end_repeats(lambda r: r.exp is None)
        self.runs[e.number] = Live(e, worker=e.worker if e.worker is not None else event.worker)
        self.shown = e
        self.pending = None
        self.setup = ""
        self.note = ""  # "proposed: approve ..." is no longer true
        self.dirty.update(diff=True, table=True, curves=True)  # the running experiment is a row
        if sum(1 for r in self.runs.values() if r.running) == 1:  # the bar follows this one
            self._focus, self.res = self.runs[e.number], {}
            self.bar = Bar(0.0, self.budget_s)

    def _progress(self, event: Event) -> None:
        live = self.live_for(event)
        if live is not None and event.point is not None:
            live.points.append(event.point)
            self.dirty["curves"] = True

    def _phase(self, event: Event) -> None:
        live = self.live_for(event)
        if live is not None and event.message in PHASE_WORDS:
            live.phase, live.phase_since = event.message, time.monotonic()
            self.dirty["progress"] = True

    def _run_finished(self, event: Event) -> None:
        e = event.experiment
        if e is None:
            return
        live = self.runs.get(e.number)
        if live is not None:
            live.exp, live.running = e, False
        self.dirty.update(curves=True, table=True)
        if self.shown is not None and self.shown.number == e.number:
            self.shown = e  # an interrupted run's diff no longer reads "running"
            self.dirty["diff"] = True
        self._follow_outcome(e.status)
        took = f" after {e.wall_seconds:.1f} s" if e.wall_seconds is not None else ""
        if e.status == Status.RUNNING:  # a clean finish, not decided yet
            self.last_run = f"#{e.number} {self.measured_words()}{took}"
            return
        shown = plotdata.shown_status(e.status.value, e.reason)
        self.last_run = f"#{e.number} {shown}{took}"
        self.note = (f"<b>#{e.number}</b> {esc(e.description[:80])} · <b style='color:"
                     f"{plotdata.status_color(e.status)}'>{esc(shown)}</b> {esc(e.reason)}")

    def _decided(self, event: Event) -> None:
        e = event.experiment
        if e is None:
            return
        live = self.runs.get(e.number)
        if live is not None:  # its curve stays on screen, in the outcome's colour, until the next run
            live.exp, live.running = e, False
        self._end_repeats(lambda r: r.number == e.number)
        self.dirty.update(table=True, progress=True, curves=True)
        if self.pending is not None and self.pending.number == e.number:
            self.pending = None
        if self.shown is not None and self.shown.number == e.number:
            self.shown = e  # the diff's subtitle says the outcome, not "proposed"
            self.dirty["diff"] = True
        self._follow_outcome(e.status)
        metric = f"{e.metric:.6g}" if e.metric is not None else "-"
        runs = f" (mean of {len(e.runs)} runs)" if len(e.runs) > 1 else ""
        shown = plotdata.shown_status(e.status.value, e.reason)
        self.note = (f"<b>#{e.number}</b> {esc(e.description[:80])} · <b style='color:"
                     f"{plotdata.status_color(e.status)}'>{esc(shown)}</b> {esc(self.metric)} {metric}{runs}"
                     f" — {esc(e.reason)}")
        took = f" after {e.wall_seconds:.1f} s" if e.wall_seconds is not None else ""
        self.last_run = f"#{e.number} {shown}{took}"

    def _loop_finished(self, event: Event) -> None:
        self.loop_running = False
        self._end_repeats(lambda r: True)
        for live in self.runs.values():
            live.running = False
        self.dirty.update(table=True, progress=True, curves=True)
        self.finished = f"loop finished: {event.message}"
        self.note = f"<b class='arnb-finished'>{esc(self.finished)}</b>"

    def _repeat_started(self, event: Event) -> None:
        # A repeat of a commit begins: it replaces the previous repeat of the same experiment.
        e = event.experiment
        number = e.number if e is not None else None
        self._end_repeats(lambda r: r.number == number)
        cfg = self.source.config
        paired = getattr(cfg, "decision", "unpaired") == "paired"
        total = {"confirmation": int(getattr(cfg, "max_seeds", 0) or 0) if paired
                 else 1 + int(getattr(cfg, "confirm_runs", 0) or 0),
                 "noise": int(getattr(cfg, "noise_repeats", 0) or 0) if e is not None else None}.get(event.purpose)
        index = event.repeat if event.repeat is not None else 0
        self.repeats[_repeat_key(event)] = Live(e, purpose=event.purpose, seed=event.seed, index=index + 1,
                                                total=total)
        self.dirty["curves"] = True
        self.note = esc(event.message)

    def _noise_floor(self, event: Event) -> None:
        self._end_repeats(lambda r: r.purpose == "noise")
        self.note = esc(event.message)

    def _revalidated(self, event: Event) -> None:
        self._end_repeats(lambda r: r.purpose == "revalidation")
        self.note = esc(event.message)

    def _setup_started(self, event: Event) -> None:
        self.setup = event.message or "setup"

    def _setup_finished(self, event: Event) -> None:
        self.setup = ""

    def _message(self, event: Event) -> None:
        self.note = esc(event.message)

    def _end_repeats(self, which: Callable[[Live], bool]) -> None:
        for key in [k for k, r in self.repeats.items() if which(r)]:
            del self.repeats[key]
            self.dirty["curves"] = True

    def _follow_outcome(self, status: Status) -> None:
        """Colour the bar by an outcome, unless other runs are still going (then it follows the next one)."""
        if self.focus() is not None:
            self.bar.color = plotdata.COLORS["running"]
            return
        self.bar.color = plotdata.COLORS["running"] if status == Status.RUNNING else plotdata.status_color(status)
        if status == Status.RUNNING:  # a clean finish, not yet decided: the budget is used up
            self.bar.value = self.bar.max

    # -- what a button did -----------------------------------------------------------------------------
    def started(self, what: str, note: str = "") -> None:
        """A button started ``what`` in the background (the baseline, an approved run, a proposal)."""
        self.action = what
        self.action_note = note
        self.pending = None

    def done(self) -> None:
        self.action = self.action_note = ""

    def error(self, e: BaseException) -> None:
        self.note = (f"<b style='color:{plotdata.COLORS['crash']}'>{esc(type(e).__name__)}: {esc(e)}</b>")

    def stopping(self, force: bool) -> None:
        self.stop_asked = "now" if force else "after"
        several = sum(1 for r in self.runs.values() if r.running) > 1
        what = "the running experiments" if several else "this experiment"
        self.note += f" · <b>stopping{' now' if force else f' after {what}'}</b>"

    # -- reading the state -----------------------------------------------------------------------------
    def live_for(self, event: Event) -> Live | None:
        """The run a progress event belongs to: its repeat, its experiment, or (older callers) the latest run."""
        e = event.experiment
        if event.purpose != "experiment":
            key = _repeat_key(event)
            if key not in self.repeats:  # the dashboard was attached mid-repeat
                self.repeats[key] = Live(e, purpose=event.purpose)
            return self.repeats[key]
        if e is not None:
            live = self.runs.get(e.number)
            if live is None:  # attached mid-run
                live = self.runs[e.number] = Live(e, worker=e.worker if e.worker is not None else event.worker)
            return live
        going = [r for r in self.runs.values() if r.running and (event.worker is None or r.worker == event.worker)]
        return going[-1] if going else None

    def going(self) -> list[Live]:
        """Every run going on: experiments' own runs, then repeats."""
        return [r for r in self.runs.values() if r.running] + list(self.repeats.values())

    def focus(self) -> Live | None:
        """The run the bar follows: the oldest experiment running, else a repeat going on."""
        going = self.going()
        return going[0] if going else None

    @property
    def busy(self) -> bool:
        """Something is running: the loop, a button's action, a cell's run (the baseline, ``loop.run``)."""
        return self.loop_running or bool(self.action) or bool(self.going()) or bool(self.setup)

    def controls(self) -> dict[str, bool]:
        """Which controls make sense now: Stop while anything runs (each once), Propose when idle with no
        proposal waiting (another would leave the first ``proposed`` for ever), the review buttons when one waits."""
        busy = self.busy
        if not busy:
            self.stop_asked = ""  # a stop applies to what was running then
        return {"stop_after": busy and not self.stop_asked, "stop_now": busy and self.stop_asked != "now",
                "propose": not busy and self.pending is None, "review": self.pending is not None and not busy}

    def move_bar(self) -> bool:
        """Move the bar to the followed run's latest point; True when the followed run changed."""
        focus = self.focus()
        if focus is None:
            return False
        changed = focus is not self._focus
        if changed:  # a new run to follow: its resources start afresh
            self._focus, self.res = focus, {}
        last = focus.points[-1] if focus.points else None
        if last is not None:
            self.bar.max = max(self.budget_s, last.elapsed_s)
            self.bar.value = last.elapsed_s
        return changed

    def add_sample(self, sample: dict[str, float]) -> None:
        """Resource use (percentages) at the followed run's latest point."""
        focus = self.focus()
        if focus is None or not focus.points:
            return
        x = focus.points[-1].elapsed_s
        for name, value in sample.items():
            xs, ys = self.res.setdefault(name, ([], []))
            xs.append(x)
            ys.append(value)

    def bar_text(self) -> str:
        """Elapsed, step and loss of every run going on; idle: how the last run ended, in the past tense."""
        going = self.going()
        parts = []
        for r in going:
            p = r.points[-1] if r.points else None
            if p is None:
                word = PHASE_WORDS["start"] if r.phase in (None, "start", "train") else r.doing()
                parts.append(f"<b>{r.name()}</b> {word}" if len(going) > 1 else word)
                continue
            loss = f" · loss {p.loss:.4f}" if p.loss is not None else ""
            step = f" · step {p.step}" if p.step is not None else ""
            what = "" if len(going) == 1 else f"<b>{r.name()}</b>{' ' + r.purpose if r.purpose else ''} "
            after = f" · {r.doing()}" if r.phase in ("evaluate", "verify") else ""  # trained; busy still
            parts.append(f"{what}{p.elapsed_s:.1f} / {self.budget_s:g} s{step}{loss}{after}")
        if not going:
            parts = [esc(self.setup)] if self.setup else ([f"idle · last run {esc(self.last_run)}"]
                                                          if self.last_run else ["idle"])
        overall = self.overall_text
        focus = self.focus()
        if self._overall is not None and focus is not None:  # the ETA counts down as the run goes
            overall = overall_progress(*self._overall, elapsed_s=time.monotonic() - focus.started)
        # One line (resource use is in the curves' lower panel): a wrapped bar text would make the layout jump.
        return ("<span style='white-space:nowrap'>&nbsp;" + " &nbsp;|&nbsp; ".join(parts)
                + (f" &nbsp;·&nbsp; <b>{esc(overall)}</b>" if overall else "") + "</span>")

    def overall(self, exps: list[Experiment]) -> str:
        """``experiment 4 / 7 · ETA 3 min`` against ``max_experiments`` (the count and pace without one)."""
        done = sum(1 for e in exps if e.status.finished)
        took = [e.wall_seconds for e in exps if e.wall_seconds and e.status.ran]
        each = sum(took) / len(took) if took else None
        # No ETA while idle: nothing is on its way to the total until something runs again. A run measured and
        # waiting for decide() is the current experiment, not the last one decided.
        measured = any(e.status == Status.RUNNING for e in exps)
        self._overall = (done, getattr(self.source.config, "max_experiments", None), each if self.busy else None,
                         bool(self.going()) or measured)
        return overall_progress(*self._overall)

    def measured_words(self) -> str:
        """What a cleanly finished, undecided run is waiting for: the cell's ``decide()``, or nothing (the loop
        or a button decides it next)."""
        return DECIDING if self.loop_running or self.action else WAITING

    def summary(self, exps: list[Experiment]) -> str:
        """Run, agent, experiments, best, the noise rule in words (statistics in the tooltip), cost."""
        cfg = self.source.config
        agent = getattr(self.source, "agent", None)
        name = str(getattr(agent, "name", type(agent).__name__)) if agent is not None else "-"
        best = best_of(exps, cfg.maximize)
        best_txt = f"best {esc(self.metric)} {best.metric:.6g} (#{best.number})" if best is not None else "no best yet"
        try:
            noise = self.source.noise
        except Exception:
            noise = None
        floor = plotdata.floor(noise, float(cfg.noise_k), max(len(best.runs), 1) if best is not None else 1)
        cost = sum(x.cost_usd or 0.0 for x in exps)
        return (f"run <b>{esc(self.source.tag)}</b> · agent {esc(name)} · {counted(len(exps), 'experiment')}"
                f" · {best_txt}"
                + (f" · ${cost:.2f}" if cost else "") + self.duty()
                + f"<br><span class='arnb-floor' title='{esc(plotdata.floor_text(floor))}'>"
                  f"{esc(plotdata.floor_words(floor))}</span>")

    def duty(self) -> str:
        """`` · device busy 97 %`` (experiments, repeats, confirmations over wall time), once measured."""
        try:
            stats = self.source.stats
        except Exception:  # a source without overlap figures (an older loop object, a bare test double)
            return ""
        share, moved = stats.get("duty_cycle"), stats.get("reapplied") or 0
        if share is None:
            return ""
        conflicts = f", {stats.get('conflicts', 0)}/{moved} re-applied changes conflicted" if moved else ""
        return (f" · <span title='seconds the device ran experiments, repeats and confirmations over wall seconds'>"
                f"device busy {100 * share:.0f} %{conflicts}</span>")

    def running_lines(self) -> list[str]:
        """One line per run going on: ``#5 w1 <description> · running``, or ``#4 … · confirmation run 2/2``."""
        lines = []
        repeats = {r.number: r for r in self.repeats.values()}
        shown: set[int | None] = set()
        for live in self.runs.values():
            rep = repeats.get(live.number)
            if not live.running and rep is None:
                continue
            shown.add(live.number)
            desc = esc((live.exp.description if live.exp else "")[:80])
            what = f"<b style='color:{plotdata.COLORS['running']}'>{live.doing()}</b>"
            if live.running and live.worker is not None:
                what += f" on worker {live.worker}"
            if rep is not None:
                what = f"<b>{esc(rep.repeat_text())}</b> · {rep.doing()}"
            lines.append(f"<b>{live.name()}</b> {desc} · {what}")
        for rep in self.repeats.values():
            if rep.number in shown:
                continue
            desc = esc(rep.exp.description[:80]) + " · " if rep.exp is not None else ""
            lines.append(f"<b>{rep.name()}</b> {desc}<b>{esc(rep.repeat_text())}</b>")
        return lines

    def status_html(self) -> str:
        """The status area: summary, a line per run going on, the setup while it runs, the latest note."""
        try:
            exps = self.source.experiments
            head = self.summary(exps)
            self.overall_text = self.overall(exps)  # kept for the bar: no store read per progress line
        except Exception:  # the loop was closed under us
            head = f"run <b>{esc(self.source.tag)}</b>"
        parts = [head, *self.running_lines()]
        if self.setup:
            parts.append(f"<b>{esc(self.setup)}</b> (once per session, before the first run)")
        if self.action_note:
            parts.append(f"<span class='arnb-action'>{self.action_note}</span>")
        if self.note:
            parts.append(self.note)
        return f"<div style='font-size:13px'>{'<br>'.join(parts)}</div>"

    def diff_view(self) -> tuple[str, str, str] | None:
        """(diff, title, subtitle) of the experiment on screen, or None before any."""
        e = self.shown
        if e is None:
            return None
        if e.status == Status.RUNNING and e.ended_at is not None:
            metric = f" · {self.metric} {e.metric:.6g}" if e.metric is not None else ""
            note = f"{self.measured_words()}{metric}"
        elif e.status == Status.RUNNING:
            note = f"running · agent {e.agent or '?'}"
        elif e.status == Status.PROPOSED:
            note = f"proposed · agent {e.agent or '?'}"
        else:
            note = f"{plotdata.shown_status(e.status.value, e.reason)} · {e.reason or ''}"
        return e.diff, f"#{e.number} {e.description}", note

    def live_curves(self) -> list[plotdata.Curve]:
        """The curves of the runs on screen (experiments going on or just finished, repeats going on)."""
        out = []
        for r in self.runs.values():
            status = r.exp.status.value if r.exp is not None else "running"
            if status == Status.RUNNING.value and not r.running:
                status = "finished"  # ran cleanly, not decided yet (repeats may follow)
            role = "running" if r.running else "last"
            out.append(plotdata.curve(list(r.points), self.budget_s, f"{r.name()} {status}", role,
                                      color=plotdata.live_color(r.worker) if r.running else None,
                                      stopped=status == Status.PRUNED.value))
        for r in self.repeats.values():
            label = f"{r.name()} {PURPOSE_WORDS.get(r.purpose or '', 'repeat')}"
            if r.index is not None:
                label += f" {r.index}" + (f"/{r.total}" if r.total else "")
            out.append(plotdata.curve(list(r.points), self.budget_s, label, "repeat"))
        return out

    def take_dirty(self, throttle_curves: bool) -> dict[str, bool]:
        """What to redraw now (and mark it clean); with ``throttle_curves`` the live curves wait."""
        dirty = dict(self.dirty)
        if throttle_curves and self.going():
            dirty["curves"] = False
        for k, v in dirty.items():
            if v:
                self.dirty[k] = False
        return dirty



def _repeat_key(event: Event) -> tuple[int | None, str, int | None]:
    """Which repeat run an event belongs to: (experiment number, purpose, repeat index)."""
    e = event.experiment
    return (e.number if e is not None else None, event.purpose, event.repeat)
