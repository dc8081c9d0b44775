"""The live dashboard: an observer of loop events built from stock ipywidgets.

Layout: a status line, a progress bar over the time budget and the Stop buttons; the proposal's diff (with
Approve / Reject / Edit when a proposal waits for you) beside the training curves; the progress chart beside the
experiment table. Plots are matplotlib SVG inside ``HTML`` widgets: they render in JupyterLab 4 without any
extension beyond ipywidgets, and their content can be read back (by tests, and by the browser test).

Several experiments can be in flight (``workers=K``): each gets its own live curve (coloured by worker) and a
line in the status area; repeat runs of one commit (the baseline's noise-floor runs, confirmation runs) get a
dotted curve of their own and a status line such as ``#4 confirmation run 2/2, seed 43``, so they never mix
into an experiment's curve. The status area also shows the noise floor σ and the keep threshold.

Threading: the loop calls :meth:`Dashboard.__call__` from whatever thread it runs in (with workers, progress
events interleave from several). The handler only records what changed and moves the bar (at most every
``bar_interval_s``); a render thread redraws curves, table and chart at most every ``curve_interval_s``, so a
fast progress stream never waits on matplotlib. An experiment's end (run finished, decided, loop finished) is
drawn at once, in the loop's thread, so the screen never shows a finished run as running. ``live=False`` turns
the render thread off; then :meth:`Dashboard.flush` draws (the tests do this).

>>> dash = Dashboard(loop); dash      # doctest: +SKIP
>>> loop.start(n=10)                   # doctest: +SKIP
"""
from __future__ import annotations

import html
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..events import Event, EventKind
from ..records import CurvePoint, Experiment, Status
from . import draw, plots
from .resources import Sampler

if TYPE_CHECKING:
    from ..loop import Loop

log = logging.getLogger("autoresearch_nb")

_TABLE_CSS = [
    {"selector": "", "props": "border-collapse: collapse; font-size: 12px; width: 100%;"},
    {"selector": "th", "props": "text-align: left; padding: 2px 6px; border-bottom: 1px solid #ccc;"},
    {"selector": "td", "props": "padding: 2px 6px; border-bottom: 1px solid #eee; vertical-align: top;"},
]


def diff_html(diff: str, title: str = "", note: str = "") -> str:
    """A unified diff as syntax-coloured HTML (Pygments, inline styles), under a title and a note."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import DiffLexer

        body = highlight(diff, DiffLexer(), HtmlFormatter(noclasses=True, nobackground=True))
    except ImportError:  # pragma: no cover - pygments ships with IPython
        body = f"<pre>{html.escape(diff)}</pre>"
    head = f"<div style='font-weight:600'>{html.escape(title)}</div>" if title else ""
    sub = f"<div style='color:#555;font-size:12px'>{html.escape(note)}</div>" if note else ""
    if not diff.strip():
        body = "<div style='color:grey'>(no change: the file as it is)</div>"
    return (f"<div class='arnb-diff'>{head}{sub}<div style='max-height:340px;overflow:auto;font-size:12px'>"
            f"{body}</div></div>")


def table_html(results: Any, metric: str = "metric", limit: int = 50) -> str:
    """The experiment table (newest first, best row highlighted) as HTML from pandas' Styler; ``effect`` is the
    improvement in units of the noise floor, ``runs`` how many seeds the metric is the mean of."""
    df = plots.table(results, metric, limit=limit)
    if df.empty:
        return "<div style='color:grey'>no experiments yet</div>"
    best = df.pop("is_best")
    if not df["cost_usd"].fillna(0).any():  # the tuner and the queue cost nothing: room for the description
        df = df.drop(columns="cost_usd")

    def row_style(row: Any) -> list[str]:
        if best.iloc[row.name]:
            return ["background-color: #d8f5d0; font-weight: 600"] * len(row)
        return [""] * len(row)

    def status_style(v: Any) -> str:
        return f"color: {plots.status_color(str(v))}"

    fmt = {metric: "{:.6f}", "delta": "{:+.6f}", "effect": "{:+.2f}σ", "duration_s": "{:.1f}",
           "cost_usd": "${:.3f}"}
    # effect: the improvement in units of the noise floor (> 0 better); runs: seeds behind the metric (a mean)
    df = df.rename(columns={"effect_sigma": "effect", "n_runs": "runs"})
    styler = (df.style.apply(row_style, axis=1).map(status_style, subset=["status"])
              .format({k: v for k, v in fmt.items() if k in df}, na_rep="")
              .hide(axis="index").set_table_styles(_TABLE_CSS))
    return f"<div class='arnb-table' style='max-height:340px;overflow:auto'>{styler.to_html()}</div>"


PURPOSE_WORDS = {"noise": "noise-floor run", "confirmation": "confirmation run", "revalidation": "re-validation run"}


@dataclass
class _Live:
    """One run on screen: an experiment's own run, or a repeat of a commit (``purpose`` set)."""

    exp: Experiment | None
    points: list[CurvePoint] = field(default_factory=list)
    running: bool = True
    worker: int | None = None
    purpose: str | None = None   # noise, confirmation, revalidation; None for the experiment's own run
    seed: int | None = None
    index: int | None = None     # this repeat is run ``index`` of ``total`` of its commit
    total: int | None = None

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


class Dashboard:
    """Live view of a :class:`~autoresearch_nb.Loop`: subscribe on creation, display it in a cell.

    ``curve_interval_s``: at most one redraw of the curves per interval. ``resources``: sample GPU (NVML) or
    CPU/RAM while a run is going. ``controls``: show Stop and the proposal review buttons.
    """

    interactive = True

    def __init__(self, loop: "Loop", *, live: bool = True, curve_interval_s: float = 1.0,
                 bar_interval_s: float = 0.25, table_limit: int = 50, resources: bool = True,
                 controls: bool = True) -> None:
        import ipywidgets as w

        self.loop = loop
        self.metric = loop.config.metric
        self.budget_s = float(loop.config.time_budget_s)
        self.curve_interval_s = curve_interval_s
        self.bar_interval_s = bar_interval_s
        self.table_limit = table_limit
        self._lock = threading.RLock()
        self._draw_lock = threading.Lock()   # one redraw at a time (render thread and loop thread)
        self._runs: dict[int, _Live] = {}     # experiments' own runs on screen, oldest first
        self._repeats: dict[str, _Live] = {}  # repeat runs going on, by their label (``0004.1``)
        self._focus: object = None            # what the bar follows (the oldest run going on)
        self._note = ""                       # the latest outcome or message, under the running lines
        self._res: dict[str, tuple[list[float], list[float]]] = {}
        self._ref_curves: dict[int, list[CurvePoint]] = {}
        self._shown: Experiment | None = None   # the experiment whose diff is on screen
        self._pending: Experiment | None = None  # a proposal waiting for approve / reject / edit
        self._loop_running = False
        self._worker: threading.Thread | None = None
        self._dirty = {"curves": False, "table": True, "progress": True}
        self._last_bar = 0.0
        self._last_curve = 0.0
        self._last_sample = 0.0
        self._closed = threading.Event()
        self._sampler = Sampler() if resources else None
        self.last_message = ""

        box = dict(border="1px solid #ddd", padding="6px", margin="2px")
        half = w.Layout(flex="1 1 420px", min_width="360px", overflow="auto", **box)
        self.status = w.HTML(layout=w.Layout(width="100%"))
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=self.budget_s, description="", bar_style="",
                                   layout=w.Layout(width="60%"))
        self.bar.style.bar_color = plots.COLORS["running"]
        self.bar_text = w.HTML()
        self.stop_after_button = w.Button(description="Stop after this", icon="pause", disabled=True,
                                          tooltip="finish the running experiment, then stop the loop")
        self.stop_now_button = w.Button(description="Stop now", icon="stop", button_style="danger",
                                        disabled=True, tooltip="end the running experiment (interrupted)")
        self.propose_button = w.Button(description="Propose", icon="lightbulb-o",
                                       tooltip="ask the agent for one experiment to review")
        self.approve_button = w.Button(description="Approve & run", icon="check", button_style="success")
        self.reject_button = w.Button(description="Reject", icon="times", button_style="warning")
        self.edit_button = w.Button(description="Edit", icon="pencil")
        self.editor = w.Textarea(layout=w.Layout(width="100%", height="320px"))
        self.save_button = w.Button(description="Use this version", icon="save", button_style="primary")
        self.cancel_button = w.Button(description="Cancel")
        self.editor_box = w.VBox([self.editor, w.HBox([self.save_button, self.cancel_button])],
                                 layout=w.Layout(display="none"))
        self.review_box = w.HBox([self.approve_button, self.reject_button, self.edit_button],
                                 layout=w.Layout(display="none"))
        self.diff = w.HTML(diff_html("", "waiting for a proposal"))
        self.curves = w.HTML()
        self.progress = w.HTML()
        self.table = w.HTML()
        buttons = [self.stop_after_button, self.stop_now_button] + ([self.propose_button] if controls else [])
        top = w.VBox([self.status, w.HBox([self.bar, self.bar_text]),
                      w.HBox(buttons, layout=w.Layout(display="flex" if controls else "none"))])
        left = w.VBox([self.diff, self.review_box, self.editor_box], layout=half)
        right = w.VBox([self.curves], layout=half)
        wrap = w.Layout(flex_flow="row wrap", width="100%")
        self.widget = w.VBox([top, w.HBox([left, right], layout=wrap),
                              w.HBox([w.VBox([self.progress], layout=half), w.VBox([self.table], layout=half)],
                                     layout=wrap)])
        self.widget.add_class("arnb-dashboard")
        for widget, cls in ((self.status, "arnb-status"), (self.diff, "arnb-diff-view"),
                            (self.curves, "arnb-curves"), (self.progress, "arnb-progress"),
                            (self.table, "arnb-table-view"), (self.bar, "arnb-bar"),
                            (self.stop_now_button, "arnb-stop-now"), (self.stop_after_button, "arnb-stop-after"),
                            (self.approve_button, "arnb-approve"), (self.reject_button, "arnb-reject"),
                            (self.edit_button, "arnb-edit"), (self.propose_button, "arnb-propose")):
            widget.add_class(cls)

        self.stop_after_button.on_click(lambda _b: self.stop(force=False))
        self.stop_now_button.on_click(lambda _b: self.stop(force=True))
        self.propose_button.on_click(lambda _b: self._in_worker(self.loop.propose))
        self.approve_button.on_click(lambda _b: self.approve())
        self.reject_button.on_click(lambda _b: self.reject())
        self.edit_button.on_click(lambda _b: self._open_editor())
        self.save_button.on_click(lambda _b: self.save_edit())
        self.cancel_button.on_click(lambda _b: self._close_editor())

        self._note = f"budget {self.budget_s:g} s per experiment" + (
            f" · {loop.config.workers} workers" if loop.config.workers > 1 else "")
        self._refresh_status()
        self._draw_curves()
        self.flush()
        self._unsubscribe = loop.subscribe(self)
        self._thread: threading.Thread | None = None
        if live:
            self._thread = threading.Thread(target=self._render_loop, name="autoresearch-dashboard", daemon=True)
            self._thread.start()

    # -- display ---------------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def display(self) -> "Dashboard":
        from IPython.display import display

        display(self.widget)
        return self

    def close(self) -> None:
        """Stop listening and drawing (the loop is not affected)."""
        self._closed.set()
        self._unsubscribe()
        self.widget.close()

    # -- controls --------------------------------------------------------------------------------------
    def stop(self, force: bool = False) -> None:
        """What the Stop buttons do: stop after the running experiment(s), or (``force``) end them all now."""
        self.loop.stop(force=force)  # force cancels every worker's run, not only one
        self.stop_after_button.disabled = True
        if force:
            self.stop_now_button.disabled = True
        with self._lock:
            several = sum(1 for r in self._runs.values() if r.running) > 1
            what = "the running experiments" if several else "this experiment"
            self._note += f" · <b>stopping{' now' if force else f' after {what}'}</b>"
            self._refresh_status()

    def approve(self) -> None:
        """Run the waiting proposal (as edited, if it was), then decide it; in the background."""
        exp = self._pending
        if exp is None:
            return
        self._hide_review()

        def run_and_decide() -> None:
            self.loop.decide(self.loop.run(exp))
        self._in_worker(run_and_decide)

    def reject(self, reason: str = "rejected by the user") -> None:
        exp = self._pending
        if exp is None:
            return
        self._hide_review()
        try:
            self.loop.reject(exp, reason)
        except Exception as e:
            self._error(e)

    def save_edit(self) -> None:
        """Replace the waiting proposal's file with the editor's text (what runs and is recorded)."""
        exp = self._pending
        if exp is None:
            return
        try:
            self.loop.edit(exp, self.editor.value)
        except Exception as e:
            self._error(e)
            return
        self._close_editor()

    def _open_editor(self) -> None:
        if self._pending is None:
            return
        self.editor.value = self._pending.content or ""
        self.editor_box.layout.display = "flex"

    def _close_editor(self) -> None:
        self.editor_box.layout.display = "none"

    def _hide_review(self) -> None:
        self._close_editor()
        self.review_box.layout.display = "none"

    def _in_worker(self, fn: Any) -> None:
        if self._worker is not None and self._worker.is_alive() or self.loop.running:
            self._set_message("busy: the loop is running")
            return

        def target() -> None:
            try:
                fn()
            except Exception as e:
                self._error(e)
        self._worker = threading.Thread(target=target, name="autoresearch-dashboard-action", daemon=True)
        self._worker.start()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a button's action (approve, propose) to finish."""
        if self._worker is not None:
            self._worker.join(timeout)

    # -- events ----------------------------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        e = event.experiment
        kind = event.kind
        if kind == EventKind.PROGRESS and event.point is not None:
            self._on_point(event)
            return
        with self._lock:
            if kind == EventKind.LOOP_STARTED:
                self._loop_running = True
                self.stop_after_button.disabled = self.stop_now_button.disabled = False
                self.propose_button.disabled = True
                self._hide_review()
                self._note = f"loop started: {html.escape(event.message)}"
            elif kind == EventKind.PROPOSED and e is not None:
                self._show_proposal(e)
                if e.status != Status.PROPOSED:
                    self._dirty["table"] = True
            elif kind == EventKind.RUN_STARTED and e is not None:
                self._start_run(e, event.worker)
            elif kind == EventKind.RUN_FINISHED and e is not None:
                live = self._runs.get(e.number)
                if live is not None:
                    live.exp, live.running = e, False
                self._dirty["curves"] = True
                self._follow_outcome(e.status)
            elif kind == EventKind.DECIDED and e is not None:
                live = self._runs.get(e.number)
                if live is not None:  # its curve stays on screen, in the outcome's colour, until the next run
                    live.exp, live.running = e, False
                self._end_repeats(lambda r: r.number == e.number)
                self._ref_curves.clear()  # the best may have changed
                self._dirty.update(table=True, progress=True, curves=True)
                if self._pending is not None and self._pending.number == e.number:
                    self._pending = None
                    self._hide_review()
                self._follow_outcome(e.status)
                metric = f"{e.metric:.6g}" if e.metric is not None else "-"
                runs = f" (mean of {len(e.runs)} runs)" if len(e.runs) > 1 else ""
                self._note = (f"<b>#{e.number}</b> {html.escape(e.description[:80])} · <b style='color:"
                              f"{plots.status_color(e.status)}'>{e.status.value}</b> {self.metric} {metric}{runs}"
                              f" — {html.escape(e.reason or '')}")
            elif kind == EventKind.LOOP_FINISHED:
                self._loop_running = False
                self.stop_after_button.disabled = self.stop_now_button.disabled = True
                self.propose_button.disabled = False
                self._end_repeats(lambda r: True)
                for live in self._runs.values():
                    live.running = False
                self._dirty.update(table=True, progress=True, curves=True)
                self.last_message = f"loop finished: {event.message}"
            elif kind in (EventKind.MESSAGE, EventKind.REPEAT_STARTED, EventKind.NOISE_FLOOR,
                          EventKind.REVALIDATED, EventKind.SETUP_STARTED, EventKind.SETUP_FINISHED):
                self._on_message(event)
            if kind != EventKind.LOOP_FINISHED:
                self._refresh_status()
        if kind in (EventKind.RUN_FINISHED, EventKind.DECIDED, EventKind.LOOP_FINISHED):
            # An ending is drawn now, in this thread: the screen must not show a finished run as running, and
            # "loop finished" appears only once the last mark and the final curves are on it.
            self.flush()
        if kind == EventKind.LOOP_FINISHED:
            with self._lock:
                self._note = f"<b class='arnb-finished'>{html.escape(self.last_message)}</b>"
                self._refresh_status()

    def _on_message(self, event: Event) -> None:
        e = event.experiment
        if event.kind == EventKind.REPEAT_STARTED:
            # A repeat of a commit begins: it replaces the previous repeat of the same experiment.
            number = e.number if e is not None else None
            self._end_repeats(lambda r: r.number == number)
            purpose = event.purpose
            total = {"confirmation": 1 + int(self.loop.config.confirm_runs),
                     "noise": int(self.loop.config.noise_repeats) if e is not None else None}.get(purpose)
            index = event.repeat if event.repeat is not None else 0
            self._repeats[_repeat_key(event)] = _Live(e, purpose=purpose, seed=event.seed, index=index + 1,
                                                      total=total, worker=None)
            self._dirty["curves"] = True
            return
        if event.kind == EventKind.NOISE_FLOOR:
            self._end_repeats(lambda r: r.purpose == "noise")
        if event.kind == EventKind.REVALIDATED:
            self._end_repeats(lambda r: r.purpose == "revalidation")
        self._note = html.escape(event.message)

    def _end_repeats(self, which: Any) -> None:
        for label in [k for k, r in self._repeats.items() if which(r)]:
            del self._repeats[label]
            self._dirty["curves"] = True

    def _on_point(self, event: Event) -> None:
        point = event.point
        assert point is not None
        with self._lock:
            live = self._live_for(event)
            if live is None:
                return
            live.points.append(point)
            self._dirty["curves"] = True
            now = time.monotonic()
            if now - self._last_bar < self.bar_interval_s:
                return
            self._last_bar = now
            self._update_bar(sample=True)

    def _update_bar(self, sample: bool = False) -> None:
        """Move the bar to the followed run's latest point; sample resources (at most once a second)."""
        focus = self._focus_live()
        if focus is None:
            return
        if focus is not self._focus:  # a new run to follow: its resources start afresh
            self._focus, self._res = focus, {}
        last = focus.points[-1] if focus.points else None
        now = time.monotonic()
        if sample and last is not None and self._sampler is not None and now - self._last_sample >= 1.0:
            self._last_sample = now
            for name, value in self._sampler.sample().items():
                xs, ys = self._res.setdefault(name, ([], []))
                xs.append(last.elapsed_s)
                ys.append(value)
        if last is not None:
            self.bar.max = max(self.budget_s, last.elapsed_s)
            self.bar.value = last.elapsed_s
        self.bar_text.value = self._bar_text()

    def _live_for(self, event: Event) -> _Live | None:
        """The run a progress event belongs to: its repeat, its experiment, or (older callers) the latest run."""
        e = event.experiment
        if event.purpose != "experiment":
            key = _repeat_key(event)
            if key not in self._repeats:  # the dashboard was attached mid-repeat
                self._repeats[key] = _Live(e, purpose=event.purpose)
            return self._repeats[key]
        if e is not None:
            live = self._runs.get(e.number)
            if live is None:  # attached mid-run
                live = self._runs[e.number] = _Live(e, worker=e.worker if e.worker is not None else event.worker)
            return live
        worker = event.worker
        going = [r for r in self._runs.values() if r.running and (worker is None or r.worker == worker)]
        return going[-1] if going else None

    def _focus_live(self) -> _Live | None:
        """The run the bar follows: the oldest experiment running, else a repeat going on."""
        going = [r for r in self._runs.values() if r.running] + list(self._repeats.values())
        return going[0] if going else None

    def _bar_text(self) -> str:
        """Elapsed, step and loss of every run going on (one: the old single-run line)."""
        going = [r for r in self._runs.values() if r.running] + list(self._repeats.values())
        parts = []
        for r in going:
            p = r.points[-1] if r.points else None
            if p is None:
                continue
            loss = f" · loss {p.loss:.4f}" if p.loss is not None else ""
            step = f" · step {p.step}" if p.step is not None else ""
            what = "" if len(going) == 1 else f"<b>{r.name()}</b>{' ' + r.purpose if r.purpose else ''} "
            parts.append(f"{what}{p.elapsed_s:.1f} / {self.budget_s:g} s{step}{loss}")
        res = " · ".join(f"{k} {v[1][-1]:.0f}" for k, v in self._res.items() if v[1])
        return "&nbsp;" + " &nbsp;|&nbsp; ".join(parts) + (f" · {res}" if res and parts else "")

    def _show_proposal(self, e: Experiment) -> None:
        self._shown = e
        note = e.reason if e.status in (Status.INVALID, Status.SKIPPED) else f"agent {e.agent or '?'}"
        self.diff.value = diff_html(e.diff, f"#{e.number} {e.description}", f"{e.status.value} · {note}")
        head = f"<b>#{e.number}</b> {html.escape(e.description[:80])}"
        if e.status == Status.PROPOSED and not self._loop_running and e.description != "baseline":
            self._pending = e
            self.review_box.layout.display = "flex"
            self._note = (f"{head} · <b>proposed</b>: approve, reject or edit it here, or run "
                          "<code>loop.run(exp)</code>")
        else:
            if self._pending is not None and self._pending.number == e.number:
                self._pending = None
            self._hide_review()
            if e.status in (Status.INVALID, Status.SKIPPED):  # an outcome; a proposal about to run is not
                self._note = f"{head} · <b>{e.status.value}</b> {html.escape(e.reason or '')}"

    def _start_run(self, e: Experiment, worker: int | None = None) -> None:
        # Finished runs leave the screen when a new one starts; runs still going stay.
        for number in [n for n, r in self._runs.items() if not r.running]:
            del self._runs[number]
        self._end_repeats(lambda r: r.exp is None)
        self._runs[e.number] = _Live(e, worker=e.worker if e.worker is not None else worker)
        self._hide_review()
        if self._shown is None or self._shown.number != e.number:
            self._show_proposal(e)
            self._hide_review()
        self._pending = None
        if sum(1 for r in self._runs.values() if r.running) == 1:  # the bar follows this one
            self._focus, self._res = self._runs[e.number], {}
            self.bar.max = self.budget_s
            self.bar.value = 0.0
            self.bar_text.value = f"&nbsp;0 / {self.budget_s:g} s"
        self._color_bar(Status.RUNNING)
        self._dirty["curves"] = True

    def _follow_outcome(self, status: Status) -> None:
        """Colour the bar by an outcome, unless other runs are still going (then it follows the next one)."""
        going = self._focus_live()
        if going is None:
            self._color_bar(status)
            if status == Status.RUNNING:  # a clean finish, not yet decided: the budget is used up
                self.bar.value = self.bar.max
            return
        self._color_bar(Status.RUNNING)
        self.bar_text.value = self._bar_text()

    def _color_bar(self, status: Status) -> None:
        color = plots.COLORS["running"] if status == Status.RUNNING else plots.status_color(status)
        self.bar.style.bar_color = color

    @property
    def in_flight(self) -> list[Experiment]:
        """The experiments whose runs are going on now, oldest first."""
        with self._lock:
            return [r.exp for r in self._runs.values() if r.running and r.exp is not None]

    # -- status text -----------------------------------------------------------------------------------
    def _agent_name(self) -> str:
        return str(getattr(self.loop.agent, "name", type(self.loop.agent).__name__))

    def _summary(self) -> str:
        """Run, agent, experiments, best, noise floor and threshold, cost."""
        try:
            exps = self.loop.experiments
            noise = self.loop.noise
        except Exception:
            return f"run <b>{html.escape(self.loop.tag)}</b>"
        cfg = self.loop.config
        best = None
        for x in exps:
            if x.status == Status.KEEP and x.metric is not None and (best is None or cfg.better(x.metric,
                                                                                                  best.metric)):
                best = x
        best_txt = f"best {self.metric} {best.metric:.6g} (#{best.number})" if best is not None else "no best yet"
        floor = plots.floor(noise, float(cfg.noise_k), max(len(best.runs), 1) if best is not None else 1)
        cost = sum(x.cost_usd or 0.0 for x in exps)
        return (f"run <b>{html.escape(self.loop.tag)}</b> · agent {html.escape(self._agent_name())} · "
                f"{len(exps)} experiments · {best_txt}" + (f" · ${cost:.2f}" if cost else "")
                + f"<br><span class='arnb-floor'>{html.escape(plots.floor_text(floor))}</span>")

    def _running_lines(self) -> list[str]:
        """One line per run going on: ``#5 w1 <description> · running``, or ``#4 … · confirmation run 2/2``."""
        lines = []
        repeats = {r.number: r for r in self._repeats.values()}
        shown: set[int | None] = set()
        for live in self._runs.values():
            rep = repeats.get(live.number)
            if not live.running and rep is None:
                continue
            shown.add(live.number)
            e = live.exp
            desc = html.escape((e.description if e else "")[:80])
            what = f"<b style='color:{plots.COLORS['running']}'>running</b>"
            if live.running and live.worker is not None:
                what += f" on worker {live.worker}"
            if rep is not None:
                what = f"<b>{html.escape(rep.repeat_text())}</b>"
            lines.append(f"<b>{live.name()}</b> {desc} · {what}")
        for rep in self._repeats.values():
            if rep.number in shown:
                continue
            desc = html.escape(rep.exp.description[:80]) + " · " if rep.exp is not None else ""
            lines.append(f"<b>{rep.name()}</b> {desc}<b>{html.escape(rep.repeat_text())}</b>")
        return lines

    def _refresh_status(self) -> None:
        with self._lock:
            parts = [self._summary(), *self._running_lines()] + ([self._note] if self._note else [])
            self.status.value = f"<div style='font-size:13px'>{'<br>'.join(parts)}</div>"

    def _set_message(self, text: str) -> None:
        with self._lock:
            self._note = html.escape(text)
            self._refresh_status()

    def _error(self, e: BaseException) -> None:
        log.warning("dashboard action failed: %s", e)
        with self._lock:
            self._note = (f"<b style='color:{plots.COLORS['crash']}'>{html.escape(type(e).__name__)}: "
                          f"{html.escape(str(e))}</b>")
            self._refresh_status()

    # -- drawing ---------------------------------------------------------------------------------------
    def _render_loop(self) -> None:
        while not self._closed.wait(0.2):
            try:
                self.flush(throttle=True)
            except Exception:
                log.exception("dashboard redraw failed")

    def flush(self, throttle: bool = False) -> None:
        """Redraw whatever changed since the last redraw (with ``throttle``, live curves at most every
        ``curve_interval_s``)."""
        if self._closed.is_set():
            return
        with self._draw_lock:
            with self._lock:
                dirty = dict(self._dirty)
                now = time.monotonic()
                going = any(r.running for r in self._runs.values()) or bool(self._repeats)
                if throttle and dirty["curves"] and going and now - self._last_curve < self.curve_interval_s:
                    dirty["curves"] = False
                for k, v in dirty.items():
                    if v:
                        self._dirty[k] = False
                if dirty["curves"] and going:
                    self._update_bar()  # progress updates skipped by the bar's interval still show here
            if dirty["curves"]:
                self._last_curve = time.monotonic()
                self._draw_curves()
            if dirty["table"] or dirty["progress"]:
                try:
                    results = self.loop.results
                    noise = self.loop.noise
                except Exception:  # the loop was closed under us
                    return
                if dirty["table"]:
                    self.table.value = table_html(results, self.metric, self.table_limit)
                if dirty["progress"]:
                    cfg = self.loop.config
                    f = plots.frontier(results, cfg.maximize, (noise or {}).get("sigma"), float(cfg.noise_k))
                    fig = draw.progress_figure(f, self.metric, cfg.maximize, f"progress · run {self.loop.tag}")
                    self.progress.value = draw.to_svg(fig)

    def live_curves(self) -> list[plots.Curve]:
        """The curves of the runs on screen (experiments going on or just finished, repeats going on); no I/O."""
        with self._lock:
            runs = [(r, list(r.points)) for r in self._runs.values()]
            repeats = [(r, list(r.points)) for r in self._repeats.values()]
        out = []
        for r, points in runs:
            status = r.exp.status.value if r.exp is not None else "running"
            if status == Status.RUNNING.value and not r.running:
                status = "finished"  # ran cleanly, not decided yet (repeats may follow)
            role = "running" if r.running else "last"
            out.append(plots.curve(points, self.budget_s, f"{r.name()} {status}", role,
                                   color=plots.live_color(r.worker) if r.running else None))
        for r, points in repeats:
            label = f"{r.name()} {PURPOSE_WORDS.get(r.purpose or '', 'repeat')}"
            if r.index is not None:
                label += f" {r.index}" + (f"/{r.total}" if r.total else "")
            out.append(plots.curve(points, self.budget_s, label, "repeat"))
        return out

    def curve_data(self) -> list[plots.Curve]:
        """The curves on screen: the baseline's, the best's, and every experiment's going on (or just ended)."""
        with self._lock:
            on_screen = set(self._runs)
        out: list[plots.Curve] = []
        try:
            exps = self.loop.experiments
            best = self.loop.best
        except Exception:
            return out
        base = next((x for x in exps if x.description == "baseline" and x.status.ran), None)
        for ref, role in ((base, "baseline"), (best, "best")):
            if ref is None or ref.number in on_screen:
                continue
            if role == "best" and base is not None and ref.number == base.number:
                continue
            if ref.number not in self._ref_curves:
                self._ref_curves[ref.number] = self.loop.curve(ref.number)
            out.append(plots.curve(self._ref_curves[ref.number], self.budget_s, f"#{ref.number} {role}", role))
        return out + self.live_curves()

    def _draw_curves(self) -> None:
        curves = self.curve_data()
        with self._lock:
            res = {k: (list(v[0]), list(v[1])) for k, v in self._res.items()}
        title = "training curves" + (f" · {self._sampler.device}" if self._sampler and self._sampler.device else "")
        fig = draw.curves_figure(curves, self.budget_s, res or None, title)
        self.curves.value = draw.to_svg(fig)


def _repeat_key(event: Event) -> tuple[int | None, str, int | None]:
    """Which repeat run an event belongs to: (experiment number, purpose, repeat index)."""
    e = event.experiment
    return (e.number if e is not None else None, event.purpose, event.repeat)
