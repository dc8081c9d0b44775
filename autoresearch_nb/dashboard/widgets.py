"""The live dashboard: an observer of loop events built from stock ipywidgets.

Layout: a status line, a progress bar over the time budget and the Stop buttons; the proposal's diff (with
Approve / Reject / Edit when a proposal waits for you) beside the training curves; the progress chart beside the
experiment table. Plots are matplotlib SVG inside ``HTML`` widgets: they render in JupyterLab 4 without any
extension beyond ipywidgets, and their content can be read back (by tests, and by the browser test).

Threading: the loop calls :meth:`Dashboard.__call__` from whatever thread it runs in. The handler only records
what changed and moves the bar (at most every ``bar_interval_s``); a render thread redraws curves, table and
chart at most every ``curve_interval_s``, so a fast progress stream never waits on matplotlib. ``live=False``
turns the render thread off; then :meth:`Dashboard.flush` draws (the tests do this).

>>> dash = Dashboard(loop); dash      # doctest: +SKIP
>>> loop.start(n=10)                   # doctest: +SKIP
"""
from __future__ import annotations

import html
import logging
import threading
import time
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
    """The experiment table (newest first, best row highlighted) as HTML from pandas' Styler."""
    df = plots.table(results, metric, limit=limit)
    if df.empty:
        return "<div style='color:grey'>no experiments yet</div>"
    best = df.pop("is_best")

    def row_style(row: Any) -> list[str]:
        if best.iloc[row.name]:
            return ["background-color: #d8f5d0; font-weight: 600"] * len(row)
        return [""] * len(row)

    def status_style(v: Any) -> str:
        return f"color: {plots.status_color(str(v))}"

    fmt = {metric: "{:.6f}", "delta": "{:+.6f}", "duration_s": "{:.1f}", "cost_usd": "${:.3f}"}
    styler = (df.style.apply(row_style, axis=1).map(status_style, subset=["status"])
              .format({k: v for k, v in fmt.items() if k in df}, na_rep="")
              .hide(axis="index").set_table_styles(_TABLE_CSS))
    return f"<div class='arnb-table' style='max-height:340px;overflow:auto'>{styler.to_html()}</div>"


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
        self._points: list[CurvePoint] = []
        self._res: dict[str, tuple[list[float], list[float]]] = {}
        self._ref_curves: dict[int, list[CurvePoint]] = {}
        self._running: Experiment | None = None
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

        self._set_status(f"run <b>{html.escape(loop.tag)}</b> · agent {html.escape(self._agent_name())} · "
                         f"budget {self.budget_s:g} s · {len(loop.experiments)} experiments so far")
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
        """What the Stop buttons do: stop after the running experiment, or (``force``) end it now."""
        self.loop.stop(force=force)
        self.stop_after_button.disabled = True
        if force:
            self.stop_now_button.disabled = True
        self._set_status(self.status.value + f" · <b>stopping{' now' if force else ' after this experiment'}</b>")

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
            self._on_point(event.point)
            return
        with self._lock:
            if kind == EventKind.LOOP_STARTED:
                self._loop_running = True
                self.stop_after_button.disabled = self.stop_now_button.disabled = False
                self.propose_button.disabled = True
                self._hide_review()
                self._set_message(f"loop started: {event.message}")
            elif kind == EventKind.PROPOSED and e is not None:
                self._show_proposal(e)
                if e.status != Status.PROPOSED:
                    self._dirty["table"] = True
            elif kind == EventKind.RUN_STARTED and e is not None:
                self._start_run(e)
            elif kind == EventKind.RUN_FINISHED and e is not None:
                self._running = e
                self._dirty["curves"] = True
                self._color_bar(e.status)
                self.bar.value = self.bar.max if e.status == Status.RUNNING else self.bar.value
            elif kind == EventKind.DECIDED and e is not None:
                if self._running is not None and self._running.number == e.number:
                    self._running = e  # its curve stays on screen, in the outcome's colour, until the next run
                self._color_bar(e.status)
                self._ref_curves.clear()  # the best may have changed
                self._dirty.update(table=True, progress=True, curves=True)
                if self._pending is not None and self._pending.number == e.number:
                    self._pending = None
                    self._hide_review()
                metric = f"{e.metric:.6g}" if e.metric is not None else "-"
                self._set_run_status(e, f"<b style='color:{plots.status_color(e.status)}'>{e.status.value}</b> "
                                        f"{self.metric} {metric} — {html.escape(e.reason or '')}")
            elif kind == EventKind.LOOP_FINISHED:
                self._loop_running = False
                self.stop_after_button.disabled = self.stop_now_button.disabled = True
                self.propose_button.disabled = False
                self._dirty.update(table=True, progress=True)
                self.last_message = f"loop finished: {event.message}"
                self._set_status(self._summary() + f" · <b class='arnb-finished'>{html.escape(self.last_message)}"
                                                   "</b>")
            elif kind == EventKind.MESSAGE:
                self._set_message(event.message)
        if kind in (EventKind.DECIDED, EventKind.LOOP_FINISHED) and self._thread is None:
            self.flush()

    def _on_point(self, point: CurvePoint) -> None:
        with self._lock:
            self._points.append(point)
            now = time.monotonic()
            if now - self._last_bar < self.bar_interval_s:
                return
            self._last_bar = now
            if self._sampler is not None and now - self._last_sample >= 1.0:
                self._last_sample = now
                for name, value in self._sampler.sample().items():
                    xs, ys = self._res.setdefault(name, ([], []))
                    xs.append(point.elapsed_s)
                    ys.append(value)
            self.bar.max = max(self.budget_s, point.elapsed_s)
            self.bar.value = point.elapsed_s
            loss = f" · loss {point.loss:.4f}" if point.loss is not None else ""
            step = f"step {point.step}" if point.step is not None else ""
            res = " · ".join(f"{k} {v[1][-1]:.0f}" for k, v in self._res.items() if v[1])
            self.bar_text.value = (f"&nbsp;{point.elapsed_s:.1f} / {self.budget_s:g} s · {step}{loss}"
                                   + (f" · {res}" if res else ""))
            self._dirty["curves"] = True

    def _show_proposal(self, e: Experiment) -> None:
        self._shown = e
        note = e.reason if e.status in (Status.INVALID, Status.SKIPPED) else f"agent {e.agent or '?'}"
        self.diff.value = diff_html(e.diff, f"#{e.number} {e.description}", f"{e.status.value} · {note}")
        if e.status == Status.PROPOSED and not self._loop_running and e.description != "baseline":
            self._pending = e
            self.review_box.layout.display = "flex"
            self._set_run_status(e, "<b>proposed</b>: approve, reject or edit it here, or run "
                                    "<code>loop.run(exp)</code>")
        else:
            if self._pending is not None and self._pending.number == e.number:
                self._pending = None
            self._hide_review()
            self._set_run_status(e, f"<b>{e.status.value}</b> " + html.escape(e.reason or ""))

    def _start_run(self, e: Experiment) -> None:
        self._running = e
        self._points = []
        self._res = {}
        self._hide_review()
        if self._shown is None or self._shown.number != e.number:
            self._show_proposal(e)
            self._hide_review()
        self._pending = None
        self.bar.max = self.budget_s
        self.bar.value = 0.0
        self._color_bar(Status.RUNNING)
        self.bar_text.value = f"&nbsp;0 / {self.budget_s:g} s"
        self._set_run_status(e, "<b style='color:%s'>running</b>" % plots.COLORS["running"])
        self._dirty["curves"] = True

    def _color_bar(self, status: Status) -> None:
        color = plots.COLORS["running"] if status == Status.RUNNING else plots.status_color(status)
        self.bar.style.bar_color = color

    # -- status text -----------------------------------------------------------------------------------
    def _agent_name(self) -> str:
        return str(getattr(self.loop.agent, "name", type(self.loop.agent).__name__))

    def _summary(self) -> str:
        try:
            exps = self.loop.experiments
            best = self.loop.best
        except Exception:
            return f"run <b>{html.escape(self.loop.tag)}</b>"
        best_txt = f"best {self.metric} {best.metric:.6g} (#{best.number})" if best and best.metric is not None \
            else "no best yet"
        cost = sum(x.cost_usd or 0.0 for x in exps)
        return (f"run <b>{html.escape(self.loop.tag)}</b> · agent {html.escape(self._agent_name())} · "
                f"{len(exps)} experiments · {best_txt}" + (f" · ${cost:.2f}" if cost else ""))

    def _set_run_status(self, e: Experiment, what: str) -> None:
        self._set_status(f"{self._summary()}<br><b>#{e.number}</b> {html.escape(e.description[:100])} · {what}")

    def _set_status(self, text: str) -> None:
        with self._lock:
            self.status.value = f"<div style='font-size:13px'>{text}</div>"

    def _set_message(self, text: str) -> None:
        self._set_status(f"{self._summary()} · {html.escape(text)}")

    def _error(self, e: BaseException) -> None:
        log.warning("dashboard action failed: %s", e)
        self._set_status(f"{self._summary()}<br><b style='color:{plots.COLORS['crash']}'>"
                         f"{html.escape(type(e).__name__)}: {html.escape(str(e))}</b>")

    # -- drawing ---------------------------------------------------------------------------------------
    def _render_loop(self) -> None:
        while not self._closed.wait(0.2):
            try:
                self.flush(throttle=True)
            except Exception:
                log.exception("dashboard redraw failed")

    def flush(self, throttle: bool = False) -> None:
        """Redraw whatever changed since the last redraw (curves at most every ``curve_interval_s``)."""
        with self._lock:
            dirty = dict(self._dirty)
            now = time.monotonic()
            if throttle and dirty["curves"] and self._running is not None \
                    and now - self._last_curve < self.curve_interval_s:
                dirty["curves"] = False
            for k, v in dirty.items():
                if v:
                    self._dirty[k] = False
        if dirty["curves"]:
            self._last_curve = time.monotonic()
            self._draw_curves()
        if dirty["table"] or dirty["progress"]:
            try:
                results = self.loop.results
            except Exception:  # the loop was closed under us
                return
            if dirty["table"]:
                self.table.value = table_html(results, self.metric, self.table_limit)
            if dirty["progress"]:
                fig = draw.progress_figure(plots.frontier(results, self.loop.config.maximize), self.metric,
                                           self.loop.config.maximize, f"progress · run {self.loop.tag}")
                self.progress.value = draw.to_svg(fig)

    def curve_data(self) -> list[plots.Curve]:
        """The curves on screen: the baseline's, the best's, and the running (or last) experiment's."""
        with self._lock:
            points = list(self._points)
            running = self._running
        out: list[plots.Curve] = []
        try:
            exps = self.loop.experiments
            best = self.loop.best
        except Exception:
            return out
        base = next((x for x in exps if x.description == "baseline" and x.status.ran), None)
        for ref, role in ((base, "baseline"), (best, "best")):
            if ref is None or (running is not None and ref.number == running.number):
                continue
            if role == "best" and base is not None and ref.number == base.number:
                continue
            if ref.number not in self._ref_curves:
                self._ref_curves[ref.number] = self.loop.curve(ref.number)
            out.append(plots.curve(self._ref_curves[ref.number], self.budget_s, f"#{ref.number} {role}", role))
        if running is not None:
            role = "running" if running.status in (Status.RUNNING, Status.PROPOSED) else "last"
            out.append(plots.curve(points, self.budget_s, f"#{running.number} {running.status.value}", role))
        return out

    def _draw_curves(self) -> None:
        curves = self.curve_data()
        with self._lock:
            res = {k: (list(v[0]), list(v[1])) for k, v in self._res.items()}
        title = "training curves" + (f" · {self._sampler.device}" if self._sampler and self._sampler.device else "")
        fig = draw.curves_figure(curves, self.budget_s, res or None, title)
        self.curves.value = draw.to_svg(fig)
