"""The live dashboard's widget layout: stock ipywidgets showing a :class:`~.screen.Screen`.

Layout: a status line, a progress bar over the time budget (with the overall progress) and the buttons; the diff
(or the detail of the experiment chosen in the drop-down) with Approve / Reject / Edit when a proposal waits, beside
the training curves; the progress chart beside the experiment table. Plots are matplotlib SVG inside ``HTML``
widgets: they render in JupyterLab 4 with nothing beyond ipywidgets, and tests can read them back.

All state lives in the screen; this module only copies it onto widgets and turns clicks into loop verbs. A static
HTML copy of the dashboard is displayed beside the widget and updated at each decision, so a saved notebook
reopened without its kernel shows the last state instead of "Error displaying widget: model not found".

Threading: the loop calls :meth:`Dashboard.__call__` from whatever thread it runs in. A progress event only
records the point and moves the bar (at most every ``bar_interval_s``); a render thread redraws curves at most
every ``curve_interval_s``. An ending (run finished, decided, loop finished) is drawn at once, in the loop's
thread. ``live=False`` turns the render thread off; then :meth:`Dashboard.flush` draws (the tests do this).

>>> dash = Dashboard(loop); dash      # doctest: +SKIP
>>> loop.start(n=10)                   # doctest: +SKIP
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .. import waiting
from ..events import Event, EventKind
from ..records import Status, is_baseline
from ..view import best_of
from . import draw, plotdata, pump, svgplot
from .html import detail_html, diff_html, lineage_html, snapshot_html, table_html
from .resources import Sampler
from .screen import PROPOSING, Screen, has_baseline

if TYPE_CHECKING:
    from ..loop import Loop

log = logging.getLogger("autoresearch_nb")
_ENDINGS = (EventKind.RUN_FINISHED, EventKind.DECIDED, EventKind.LOOP_FINISHED)
_REDRAWN = (EventKind.RUN_STARTED, EventKind.PROPOSED)
DRAW_SHARE = 0.005  # the live curves' redraws may take at most this share of one core
NO_WIDGETS = ("if you read this in JupyterLab, it did not load the ipywidgets extension: `python -m "
              "jupyterlab.labextensions list`, run by the Python that runs JupyterLab, should list "
              "@jupyter-widgets/jupyterlab-manager (notebooks/README.md, 'The dashboard does not show')")
# One live dashboard per run in a kernel: re-running the dashboard (or the Loop.open) cell replaces the old one.
_OPEN: "weakref.WeakValueDictionary[tuple[str, str], Dashboard]" = weakref.WeakValueDictionary()


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

        key = (str(loop.repo_root), loop.tag)
        earlier = _OPEN.get(key)
        if earlier is not None:
            earlier.close()
        _OPEN[key] = self
        self.loop = loop
        self.screen = Screen(loop)
        self.metric = loop.config.metric
        self.budget_s = float(loop.config.time_budget_s)
        self.curve_interval_s = curve_interval_s
        self.bar_interval_s = bar_interval_s
        self.table_limit = table_limit
        self._lock = threading.RLock()
        self._draw_lock = threading.Lock()   # one redraw at a time (render thread and loop thread)
        self._ref_curves: dict[int, list] = {}
        # (chosen, compared, baseline, best, chosen experiment, experiments) as of the last decision or choice
        self._refs: tuple | None = None
        self._worker: threading.Thread | None = None
        self._last_bar = self._last_curve = self._last_sample = 0.0
        self._closed = threading.Event()
        self._sampler = Sampler() if resources else None
        self._snapshot: Any = None
        self._disarm = False
        self._disarm_cell = False
        self._curve_gap = curve_interval_s
        self._picker_quiet = False
        self.last_message = ""

        box = dict(border="1px solid #ddd", padding="6px", margin="2px")
        half = w.Layout(flex="1 1 420px", min_width="360px", overflow="auto", **box)
        # "auto", not 100 %: the widget margin came on top of 100 % and put a scrollbar under the buttons
        self.status = w.HTML(layout=w.Layout(width="auto"))
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=self.budget_s, layout=w.Layout(width="40%"))
        self.bar_text = w.HTML()
        self.stop_after_button = w.Button(description="Stop after this", icon="pause", disabled=True,
                                          tooltip="finish the running experiment, then stop")
        self.stop_now_button = w.Button(description="Stop now", icon="stop", button_style="danger",
                                        disabled=True, tooltip="end the running experiment (interrupted)")
        self.propose_button = w.Button(description="Propose", icon="lightbulb-o",
                                       tooltip="ask the agent for one experiment to review (runs the baseline "
                                               "first if the run has none)")
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
        self.chooser = w.Dropdown(options=[("the live experiment", -1)], value=-1, description="show",
                                  layout=w.Layout(width="auto", max_width="100%"))
        self.compare_picker = w.SelectMultiple(options=[], value=(), description="compare", rows=4,
                                               tooltip="overlay the stored curves of these experiments",
                                               layout=w.Layout(width="auto", max_width="100%"))
        # how the curves are drawn (TensorBoard's choices): x as seconds, steps or the budget's share, log, smoothing
        self.view = plotdata.CurveView()
        self.x_axis = w.ToggleButtons(options=[("time", "seconds"), ("steps", "steps"), ("share", "progress")],
                                      value="seconds", tooltips=["x: seconds of training", "x: optimizer steps",
                                                                 "x: share of the time budget"],
                                      style={"button_width": "56px"}, layout=w.Layout(width="auto"))
        self.log_box = w.Checkbox(value=False, description="log loss", indent=False, layout=w.Layout(width="80px"))
        self.smooth_slider = w.FloatSlider(value=0.0, min=0.0, max=0.95, step=0.05, description="smooth",
                                           continuous_update=False, readout_format=".2f",
                                           layout=w.Layout(width="210px"), style={"description_width": "52px"})
        self.side_by_side = w.Checkbox(value=False, description="side by side", indent=False,
                                       tooltip="the old file on the left, the new on the right",
                                       layout=w.Layout(width="110px"))
        self.diff = w.HTML(diff_html("", "waiting for a proposal"))
        self.curves = w.HTML()
        self.progress = w.HTML()
        self.table = w.HTML()
        buttons = [self.stop_after_button, self.stop_now_button] + ([self.propose_button] if controls else [])
        top = w.VBox([self.status, w.HBox([self.bar, self.bar_text]),
                      w.HBox(buttons, layout=w.Layout(display="flex" if controls else "none"))])
        left = w.VBox([w.HBox([self.chooser, self.side_by_side], layout=w.Layout(align_items="center")),
                       self.diff, self.review_box, self.editor_box], layout=half)
        view_box = w.HBox([self.x_axis, self.log_box, self.smooth_slider],
                          layout=w.Layout(flex_flow="row wrap", align_items="center"))
        right = w.VBox([self.curves, view_box, self.compare_picker], layout=half)
        wrap = w.Layout(flex_flow="row wrap", width="100%")
        # What ipywidgets' own options cannot say: the editor in the code font, and a disabled Stop now grey
        # rather than red (it looked live). Scoped to the dashboard's classes.
        self.style = w.HTML("<style>.arnb-editor textarea{font-family:var(--jp-code-font-family,monospace);"
                            "font-size:12px;white-space:pre}.arnb-stop-now:disabled,"
                            ".arnb-stop-now.mod-danger:disabled{background:#e0e0e0;color:#888}</style>",
                            layout=w.Layout(height="0px", margin="0px"))
        self.editor.add_class("arnb-editor")
        self.widget = w.VBox([self.style, top, w.HBox([left, right], layout=wrap),
                              w.HBox([w.VBox([self.progress], layout=half), w.VBox([self.table], layout=half)],
                                     layout=wrap)])
        self.widget.add_class("arnb-dashboard")
        top.add_class("arnb-top")
        for widget, cls in ((self.status, "arnb-status"), (self.diff, "arnb-diff-view"),
                            (self.curves, "arnb-curves"), (self.progress, "arnb-progress"),
                            (self.table, "arnb-table-view"), (self.bar, "arnb-bar"), (self.chooser, "arnb-choose"),
                            (self.compare_picker, "arnb-compare"), (self.x_axis, "arnb-x-axis"),
                            (self.log_box, "arnb-log-scale"), (self.smooth_slider, "arnb-smooth"),
                            (self.side_by_side, "arnb-side-by-side"),
                            (self.stop_now_button, "arnb-stop-now"), (self.stop_after_button, "arnb-stop-after"),
                            (self.approve_button, "arnb-approve"), (self.reject_button, "arnb-reject"),
                            (self.edit_button, "arnb-edit"), (self.propose_button, "arnb-propose")):
            widget.add_class(cls)

        self.stop_after_button.on_click(lambda _b: self.stop(force=False))
        self.stop_now_button.on_click(lambda _b: self.stop(force=True))
        self.propose_button.on_click(lambda _b: self.propose())
        self.approve_button.on_click(lambda _b: self.approve())
        self.reject_button.on_click(lambda _b: self.reject())
        self.edit_button.on_click(lambda _b: self._open_editor())
        self.save_button.on_click(lambda _b: self.save_edit())
        self.cancel_button.on_click(lambda _b: self._close_editor())
        self.chooser.observe(lambda change: self.choose(change["new"]), names="value")
        self.compare_picker.observe(self._picked, names="value")
        self.side_by_side.observe(lambda _change: self._redraw_diff(), names="value")
        self.x_axis.observe(lambda change: self.view_curves(x=change["new"]), names="value")
        self.log_box.observe(lambda change: self.view_curves(log=change["new"]), names="value")
        self.smooth_slider.observe(lambda change: self.view_curves(smooth=change["new"]), names="value")

        self._sync()
        self.flush()
        self._unsubscribe = loop.subscribe(self)
        self._thread: threading.Thread | None = None
        self._unpump: Callable[[], None] = lambda: None
        if live:
            # a click acts while a cell blocks (loop.run, dash.wait), not when the cell ends (issue 26 bug 1)
            self._unpump = pump.install()
            self._thread = threading.Thread(target=self._render_loop, name="autoresearch-dashboard", daemon=True)
            self._thread.start()

    # -- display ---------------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget view (what ipywidgets itself returns), so ``dash`` as a cell's last line shows it. A
        frontend that cannot draw widgets shows the text instead: there it says why, not ``VBox(children=...``."""
        return {"text/plain": f"{self!r}: {NO_WIDGETS}",
                "application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                             "model_id": self.widget.model_id}}

    def __repr__(self) -> str:
        return f"<dashboard of run {self.loop.tag!r}>"

    def display(self) -> "Dashboard":
        """Show the widget, and below it the static copy a saved notebook keeps (hidden while the widget is live)."""
        from IPython.display import HTML, display

        display(self)
        self._snapshot = display(HTML(self.snapshot()), display_id=True)
        return self

    def snapshot(self) -> str:
        """The dashboard as it looks now, as static HTML (status, diff, curves, progress chart, table)."""
        return snapshot_html(self.status.value, self.diff.value, self.curves.value, self.progress.value,
                             self.table.value, time.strftime("%Y-%m-%d %H:%M"))

    def close(self) -> None:
        """Stop listening and drawing (the loop is not affected)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._unsubscribe()
        self._unpump()
        self.widget.close()

    # -- controls --------------------------------------------------------------------------------------
    def stop(self, force: bool = False) -> None:
        """What the Stop buttons do: stop after the running experiment(s), or (``force``) end them all now."""
        with self._lock:
            if not (self.screen.busy or self.loop.running):  # a click queued while a cell held the kernel, arriving after its run ended
                return
        self.loop.stop(force=force, quiet=True)  # force: every worker's run; the note below says it
        if force and not self.loop.running and self._worker is not None and self._worker.is_alive():
            # A button's single run (no optimize() to clear the flag at its start): once it has ended, the
            # flag must not cancel the next run the moment it starts.
            self._disarm = True
        elif force and not self.loop.running:
            # A cell's own run (loop.run, loop.baseline): once it has ended, the next cell's run must not be
            # cancelled the moment it starts; disarmed at that run's end (see __call__).
            self._disarm_cell = True
        with self._lock:
            self.screen.stopping(force)
            self._sync()

    def baseline(self) -> None:
        """Run the baseline in the background: the cell returns at once (under papermill, with no front end to
        click, the console dashboard runs it in the cell). ``dash.wait()`` waits for it, and takes Stop meanwhile."""
        self._in_worker("the baseline", self.loop.baseline, "running the baseline (the file as it is)")

    def propose(self) -> None:
        """Ask the agent for one experiment to review; a run without a baseline runs it first (proposals are
        measured against it), and says so. Nothing while a proposal waits for review (a click queued before the
        button went grey would leave that one ``proposed`` for ever)."""
        with self._lock:
            waiting = self.screen.pending
            if waiting is not None:
                self.screen.note = f"<b>#{waiting.number}</b> waits for review: approve, reject or edit it first"
                self._sync()
                return

        def baseline_then_propose() -> None:
            if not has_baseline(self.loop.experiments):
                self.loop.baseline()
                if not has_baseline(self.loop.experiments):  # stopped, or it crashed: nothing to build on
                    return
                with self._lock:
                    self.screen.started(PROPOSING, "baseline done; now asking the agent for a proposal")
                    self._sync()
            self.loop.propose()

        first = "" if has_baseline(self.loop.experiments) else (
            "<b>no baseline yet</b>: running the baseline first (the file as it is), then asking for a proposal")
        self._in_worker(PROPOSING if not first else "the baseline", baseline_then_propose,
                        first or "asking the agent for a proposal")

    def approve(self) -> None:
        """Run the waiting proposal (as edited, if it was), then decide it; in the background."""
        exp = self.screen.pending
        if exp is None:
            return
        self._hide_review()
        self._in_worker(f"#{exp.number}", lambda: self.loop.decide(self.loop.run(exp)))

    def reject(self, reason: str = "rejected by the user") -> None:
        exp = self.screen.pending
        if exp is None:
            return
        self._hide_review()
        try:
            self.loop.reject(exp, reason)
        except Exception as e:
            self._error(e)

    def save_edit(self) -> None:
        """Replace the waiting proposal's file with the editor's text (what runs and is recorded)."""
        exp = self.screen.pending
        if exp is None:
            return
        try:
            self.loop.edit(exp, self.editor.value)
        except Exception as e:
            self._error(e)
            return
        self._close_editor()

    def choose(self, number: int | None) -> None:
        """Show experiment ``number`` (its diff, curve, reason, log tail) instead of the live one (None, -1)."""
        with self._lock:
            self.screen.selected = None if number is None or number < 0 else int(number)
            self.screen.dirty.update(diff=True, curves=True)
        if self.chooser.value != (-1 if self.screen.selected is None else self.screen.selected):
            self.chooser.value = -1 if self.screen.selected is None else self.screen.selected
        self.flush()

    def compare(self, numbers: Iterable[int] | None) -> None:
        """Draw the stored curves of experiments ``numbers`` over the live panel, a colour each, with a legend
        (None or empty: none). An unknown number is left out; the picker below the curves shows the choice."""
        chosen = tuple(dict.fromkeys(int(n) for n in (numbers or ())))
        with self._lock:
            if chosen == self.screen.compared:
                return
            self.screen.compared = chosen
            self.screen.dirty["curves"] = True
        known = {v for _, v in self.compare_picker.options}
        shown = tuple(n for n in chosen if n in known)
        if tuple(self.compare_picker.value) != shown:
            self.compare_picker.value = shown
        self.flush()

    def view_curves(self, x: str | None = None, log: bool | None = None, smooth: float | None = None) -> None:
        """Draw the curves against ``x`` (seconds, steps or progress: the share of the budget), on a ``log``
        loss axis, with TensorBoard's ``smooth`` weight; None keeps that choice. The controls under the curves
        show the choice."""
        with self._lock:
            v = self.view
            self.view = plotdata.CurveView(x if x is not None else v.x, v.log if log is None else bool(log),
                                           v.smooth if smooth is None else float(smooth))
            self.screen.dirty["curves"] = True
        if self.x_axis.value != self.view.x:
            self.x_axis.value = self.view.x
        if self.log_box.value != self.view.log:
            self.log_box.value = self.view.log
        if self.smooth_slider.value != self.view.smooth:
            self.smooth_slider.value = self.view.smooth
        self.flush()

    def _picked(self, change: dict) -> None:
        if not self._picker_quiet:
            self.compare(change["new"])

    def _open_editor(self) -> None:
        if self.screen.pending is None:
            return
        self.editor.value = self.screen.pending.content or ""
        self.editor_box.layout.display = "flex"

    def _close_editor(self) -> None:
        self.editor_box.layout.display = "none"

    def _hide_review(self) -> None:
        self._close_editor()
        self.review_box.layout.display = "none"

    def _in_worker(self, what: str, fn: Callable[[], Any], note: str = "") -> None:
        """Run a button's action in a thread (the kernel stays free to take the Stop click)."""
        with self._lock:
            # a cell's own run (the screen is busy, no worker) counts: a click served while that cell
            # waits must not start a second experiment beside it
            if self._worker is not None and self._worker.is_alive() or self.loop.running or self.screen.busy:
                self.screen.note = "busy: the loop is running"
                self._sync()
                return
            self.screen.started(what, note)
            self._sync()

        def target() -> None:
            try:
                fn()
            except Exception as e:
                self._error(e)
            finally:
                if self._disarm:
                    self._disarm = False
                    self.loop.stop(force=False, quiet=True)
                with self._lock:
                    self.screen.done()
                    self._sync()
        self._worker = threading.Thread(target=target, name="autoresearch-dashboard-action", daemon=True)
        self._worker.start()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a button's action (approve, propose, the baseline) to finish."""
        if self._worker is not None:
            waiting.join(self._worker, timeout)  # Stop, clicked while this cell waits, acts now

    def _error(self, e: BaseException) -> None:
        log.warning("dashboard action failed: %s", e)
        with self._lock:
            self.screen.error(e)
            self._sync()

    # -- events ----------------------------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        if event.kind == EventKind.RUN_FINISHED and self._disarm_cell:
            self._disarm_cell = False
            self.loop.stop(force=False, quiet=True)
        if event.kind == EventKind.PROGRESS:
            with self._lock:
                self.screen.feed(event)
                now = time.monotonic()
                if now - self._last_bar >= self.bar_interval_s:
                    self._last_bar = now
                    self._move_bar(sample=True)
            return
        with self._lock:
            self.screen.feed(event)
            if event.kind == EventKind.DECIDED:
                self._ref_curves.clear()  # the best may have changed
                self._refs = None
            if event.kind == EventKind.LOOP_FINISHED:
                self.last_message = self.screen.finished
            self._sync()
        if event.kind in _ENDINGS or event.kind in _REDRAWN:
            # An ending is drawn now, in this thread: the screen must not show a finished run as running.
            self.flush()
        # the saved copy follows decisions, and an interrupted run (a kernel interrupt: no decision follows)
        interrupted = event.kind == EventKind.RUN_FINISHED and event.experiment is not None \
            and event.experiment.status == Status.INTERRUPTED
        if (event.kind in (EventKind.DECIDED, EventKind.LOOP_FINISHED) or interrupted) and self._snapshot is not None:
            from IPython.display import HTML

            self._snapshot.update(HTML(self.snapshot()))

    def _move_bar(self, sample: bool = False) -> None:
        s = self.screen
        s.move_bar()
        now = time.monotonic()
        if sample and self._sampler is not None and now - self._last_sample >= 1.0 and s.focus() is not None:
            self._last_sample = now
            s.add_sample(self._sampler.sample())
        self.bar.max = max(s.bar.max, 1e-9)
        self.bar.value = s.bar.value
        self.bar_text.value = s.bar_text()

    def _sync(self) -> None:
        """Copy the screen's state onto the widgets (a trait set only sends when the value changed)."""
        s = self.screen
        self.status.value = s.status_html()
        self._move_bar()
        if not s.going():
            self.bar.max, self.bar.value = max(s.bar.max, 1e-9), s.bar.value
        self.bar.style.bar_color = s.bar.color
        self.bar_text.value = s.bar_text()
        on = s.controls()
        self.stop_after_button.disabled = not on["stop_after"]
        self.stop_now_button.disabled = not on["stop_now"]
        self.propose_button.disabled = not on["propose"]
        if not on["review"]:
            self._hide_review()
        else:
            self.review_box.layout.display = "flex"

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
                wait = throttle and time.monotonic() - self._last_curve < self._curve_gap
                dirty = self.screen.take_dirty(throttle_curves=wait)
                if dirty["curves"] and self.screen.going():
                    self._move_bar()  # progress updates skipped by the bar's interval still show here
            if dirty["curves"]:
                self._last_curve = time.monotonic()
                cpu = time.thread_time()
                self._draw_curves()
                # Adaptive: a redraw that costs c CPU seconds waits at least c / DRAW_SHARE before the next.
                self._curve_gap = max(self.curve_interval_s, (time.thread_time() - cpu) / DRAW_SHARE)
            if dirty["diff"]:
                self._draw_diff()
            if dirty["table"] or dirty["progress"]:
                self._draw_tables(dirty)

    def _draw_tables(self, dirty: dict[str, bool]) -> None:
        try:
            results = self.loop.results
            noise = self.loop.noise
        except Exception:  # the loop was closed under us
            return
        if dirty["table"]:
            self.table.value = table_html(results, self.metric, self.table_limit, clickable=True)
            options = [("the live experiment", -1)] + [
                (f"#{int(n)} {plotdata.shown_status(str(st), r, t)} · {str(d)[:50]}", int(n))
                for n, st, r, d, t in zip(results["number"], results["status"], results["reason"],
                                          results["description"],
                                          results.get("ended_at", [None] * len(results)))][::-1]
            if options != [tuple(o) for o in self.chooser.options]:  # new rows, or a row's status changed
                self.chooser.options = options
                # Setting options clears a SelectMultiple's value: put the comparison back, quietly (this runs
                # inside a redraw, and the comparison itself has not changed).
                self._picker_quiet = True
                try:
                    self.compare_picker.options = options[1:]
                    self.compare_picker.value = tuple(n for n in self.screen.compared
                                                      if n in {v for _, v in options[1:]})
                finally:
                    self._picker_quiet = False
        if dirty["progress"]:
            cfg = self.loop.config
            f = plotdata.frontier(results, cfg.maximize, (noise or {}).get("sigma"), float(cfg.noise_k))
            fig = draw.progress_figure(f, self.metric, cfg.maximize, f"progress · run {self.loop.tag}")
            # under the chart, the lineage: the kept chain and what was tried from each kept state
            self.progress.value = draw.to_svg(fig) + lineage_html(plotdata.lineage(results), self.metric)

    def _draw_diff(self) -> None:
        number = self.screen.selected
        if number is not None:
            try:
                e = self.loop.store.get(self.loop.tag, number)
            except Exception:
                return
            if e is not None:
                from ..runner import log_tail

                floor = plotdata.floor(self.loop.noise, float(self.loop.config.noise_k))
                self.diff.value = detail_html(e, self.metric, log_tail(e.log_path, 20) if e.log_path else "",
                                              plotdata.floor_words(floor), self.side_by_side.value)
                return
        view = self.screen.diff_view()
        if view is not None:
            self.diff.value = diff_html(*view, side_by_side=self.side_by_side.value)

    def _redraw_diff(self) -> None:
        with self._lock:
            self.screen.dirty["diff"] = True
        self.flush()

    @property
    def in_flight(self) -> list:
        """The experiments whose runs are going on now, oldest first."""
        with self._lock:
            return [r.exp for r in self.screen.runs.values() if r.running and r.exp is not None]

    def live_curves(self) -> list[plotdata.Curve]:
        """The curves of the runs on screen (experiments going on or just finished, repeats going on); no I/O."""
        with self._lock:
            return self.screen.live_curves()

    def curve_data(self) -> list[plotdata.Curve]:
        """The curves on screen: the baseline's, the best's, the chosen experiment's, and every run going on."""
        with self._lock:
            chosen = self.screen.selected
            compared = self.screen.compared
            going = {n for n, r in self.screen.runs.items() if r.running}
            # A chosen or compared run that ended comes from the store, not from the live points.
            from_store = ({chosen} | set(compared)) - going
            on_screen = set(self.screen.runs) - from_store
        out: list[plotdata.Curve] = []
        if self._refs is None or self._refs[:2] != (chosen, compared):  # read the store at decisions, not every redraw
            try:
                exps = self.loop.experiments
            except Exception:
                return out
            self._refs = (chosen, compared, next((x for x in exps if is_baseline(x) and x.status.ran), None),
                          best_of(exps, self.loop.config.maximize), next((x for x in exps if x.number == chosen), None),
                          exps)
        _, _, base, best, picked, exps = self._refs
        for ref, role in ((base, "baseline"), (best, "best"), (picked, "kept")):
            if ref is None or ref.number in on_screen or ref.number in compared:
                continue  # a compared one is drawn below, in its own colour
            if role != "baseline" and base is not None and ref.number == base.number:
                continue
            label = f"#{ref.number} {role if role != 'kept' else 'chosen · ' + ref.status.value}"
            out.append(plotdata.curve(self._stored_curve(ref.number), self.budget_s, label, role,
                                      stopped=ref.status == Status.PRUNED))
        out += plotdata.compare_curves(compared, exps, self._stored_curve, self.budget_s, skip=going)
        ended = {f"#{n} " for n in from_store if n is not None}
        return out + [c for c in self.live_curves() if not any(c.label.startswith(p) for p in ended)
                      or (c.role == "repeat" and not c.label.startswith(f"#{chosen} "))]

    def _stored_curve(self, number: int) -> list:
        """Experiment ``number``'s stored curve, read once until the next decision."""
        if number not in self._ref_curves:
            self._ref_curves[number] = self.loop.curve(number)
        return self._ref_curves[number]

    def _draw_curves(self) -> None:
        curves = self.curve_data()
        with self._lock:
            res = {k: (list(v[0]), list(v[1])) for k, v in self.screen.res.items()}
        title = "training curves" + (f" · {self._sampler.device}" if self._sampler and self._sampler.device else "")
        self.curves.value = svgplot.curves_svg(curves, self.budget_s, res or None, title, self.view)

