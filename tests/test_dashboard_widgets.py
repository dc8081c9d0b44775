# pytest tests/test_dashboard_widgets.py -q
"""The dashboard at the model level: loop events update the right widgets, the controls change the loop.

A real loop on the demo target (a toy train.py in a temp git repo, 1-second budget, a noise floor from two baseline
runs) and the queue agent; for parallel workers, a sleep-bound target and a list agent as in test_parallel.
"""
from __future__ import annotations

import re
import threading
from html import unescape
import time

import pytest

from autoresearch_nb import Loop, Status
from autoresearch_nb.dashboard import Console, display_mode, make_demo_repo, plotdata
from autoresearch_nb.dashboard.html import diff_html, table_html
from autoresearch_nb.dashboard.widgets import Dashboard
from autoresearch_nb.events import Event, EventKind
from autoresearch_nb.records import CurvePoint, Experiment

SLOW_QUEUE = '''[[experiment]]
description = "lower the learning rate to 0.003"
edits = [{ search = "LR = 0.01", replace = "LR = 0.003" }]

[[experiment]]
description = "a very long run"
edits = [{ search = "EXTRA_SECONDS = 0.0", replace = "EXTRA_SECONDS = 60.0" }]
'''


def shown(html: str) -> str:
    """The text a browser shows for ``html`` (the diff's code is split into Pygments' coloured spans)."""
    return unescape(re.sub(r"<[^>]+>", "", html))


def _open(tmp_path, queue):
    repo = make_demo_repo(tmp_path / "target", queue=queue)
    return Loop.open(repo, tag="dash", agent="queue", time_budget_s=1, noise_repeats=2)  # a floor from 2 runs


@pytest.fixture
def loop(tmp_path):
    lp = _open(tmp_path, SLOW_QUEUE)
    yield lp
    lp.close()


@pytest.fixture
def quick_loop(tmp_path):
    """The same loop with the demo's own queue: every experiment takes the 1 s budget (no 60 s run)."""
    lp = _open(tmp_path, None)
    yield lp
    lp.close()


@pytest.fixture
def dash(loop):
    d = Dashboard(loop, live=False, bar_interval_s=0.0, curve_interval_s=0.0)
    yield d
    d.close()


@pytest.fixture
def quick_dash(quick_loop):
    d = Dashboard(quick_loop, live=False, bar_interval_s=0.0, curve_interval_s=0.0)
    yield d
    d.close()


def fake(loop, kind, number=0, status=Status.RUNNING, **kw):
    return Event(kind, Experiment(number, loop.tag, status, description=kw.pop("description", "x"), **kw),
                 kw.pop("point", None))


def test_progress_event_moves_the_bar_and_draws_the_running_curve(loop, dash):
    dash(fake(loop, EventKind.RUN_STARTED, 3, description="try a thing"))
    assert dash.bar.value == 0 and dash.bar.max == 1.0
    for i in range(1, 6):
        dash(Event(EventKind.PROGRESS, None, CurvePoint(i, i * 0.1, 4.0 - i * 0.1)))
    assert dash.bar.value == pytest.approx(0.5)
    assert "loss 3.5000" in dash.bar_text.value
    dash.flush()
    assert 'id="curve-running"' in dash.curves.value and "#3 running (5 pts)" in dash.curves.value
    assert "try a thing" in dash.status.value


def test_the_curve_controls_redraw_against_steps_on_a_log_axis_smoothed(loop, dash):
    """Issue 26's figures: the x axis (seconds, steps, the budget's share), a log loss axis and smoothing, from the
    controls under the curves or from code; each control shows the choice either way."""
    dash(fake(loop, EventKind.RUN_STARTED, 3, description="try a thing"))
    for i in range(1, 6):
        dash(Event(EventKind.PROGRESS, None, CurvePoint(100 * i, i * 0.1, 4.0 - i * 0.1)))
    dash.flush()
    assert "seconds of training" in dash.curves.value
    dash.x_axis.value = "steps"     # what a click on the toggle does
    assert "optimizer steps" in dash.curves.value and dash.view.x == "steps"
    dash.log_box.value = True
    assert "loss (log scale)" in dash.curves.value
    dash.view_curves(x="progress", smooth=0.5)
    assert "share of the time budget" in dash.curves.value and "smoothed 0.5" in dash.curves.value
    assert dash.x_axis.value == "progress" and dash.smooth_slider.value == 0.5 and dash.log_box.value
    assert "share of the time budget" in dash.snapshot()  # the saved copy shows what the widget shows


def test_bar_colour_follows_the_outcome(loop, dash):
    dash(fake(loop, EventKind.RUN_STARTED, 1))
    assert dash.bar.style.bar_color == "#1f77b4"
    dash(fake(loop, EventKind.DECIDED, 1, Status.CRASH, reason="exit code 1"))
    assert dash.bar.style.bar_color == "#d62728"
    dash(fake(loop, EventKind.DECIDED, 1, Status.KEEP, metric=1.0))
    assert dash.bar.style.bar_color == "#2ca02c"


def test_progress_updates_are_throttled(loop):
    d = Dashboard(loop, live=False, bar_interval_s=10.0)
    d(fake(loop, EventKind.RUN_STARTED, 1))
    d(Event(EventKind.PROGRESS, None, CurvePoint(1, 0.1, 3.0)))
    d(Event(EventKind.PROGRESS, None, CurvePoint(2, 0.2, 2.9)))
    assert d.bar.value == pytest.approx(0.1)  # the second update waits for the interval...
    assert len(d.curve_data()[-1]) == 2       # ...but no point is lost
    d.close()


def test_diff_view_shows_the_changed_lines_and_review_controls(loop, dash):
    loop.baseline()
    exp = loop.propose()
    assert exp.status == Status.PROPOSED
    assert "LR = 0.003" in shown(dash.diff.value) and "LR = 0.01" in shown(dash.diff.value)
    assert "lower the learning rate" in dash.diff.value
    dash.side_by_side.value = True   # the old file on the left, the new on the right
    assert "arnb-side-by-side" in dash.diff.value and "LR = 0.003" in shown(dash.diff.value)
    dash.side_by_side.value = False
    assert "arnb-side-by-side" not in dash.diff.value
    assert dash.review_box.layout.display == "flex"
    html = diff_html("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-A = 1\n+A = 2\n")
    assert "A = 2" in shown(html) and "style=" in html  # coloured inline


def test_table_has_a_row_per_experiment_and_the_chart_after_decisions(loop, dash):
    loop.baseline()
    loop.step()
    dash.flush()
    assert dash.table.value.count("<tr") == 1 + 2  # header + one row per experiment
    assert "#d8f5d0" in dash.table.value            # the best row is highlighted
    assert 'id="progress-kept"' in dash.progress.value and 'id="progress-best"' in dash.progress.value
    assert "2 experiments" in dash.status.value
    # the lineage under the chart: the baseline, and the step tried from it (kept or not, it was tried there)
    assert "lineage" in dash.progress.value and "<b>#0</b> baseline" in dash.progress.value
    assert "tried from here: 1 (" in dash.progress.value
    html = table_html(loop.results, loop.config.metric)
    assert html.index(">1<") < html.index(">0<")  # newest first


def test_edit_then_approve_runs_the_edited_file(loop, dash):
    loop.baseline()
    exp = loop.propose()
    dash.edit_button.click()
    assert dash.editor.value == exp.content and dash.editor_box.layout.display == "flex"
    dash.editor.value = exp.content.replace("LR = 0.003", "LR = 0.004")
    dash.save_button.click()
    assert "LR = 0.004" in shown(dash.diff.value)
    dash.approve_button.click()
    dash.wait(60)
    done = loop.store.get(loop.tag, exp.number)
    assert done.status in (Status.KEEP, Status.DISCARD)
    assert "LR = 0.004" in done.diff and "(edited)" in done.description


def test_reject_records_the_proposal_as_invalid(loop, dash):
    loop.baseline()
    exp = loop.propose()
    dash.reject_button.click()
    assert loop.store.get(loop.tag, exp.number).status == Status.INVALID
    assert dash.review_box.layout.display == "none"



def test_propose_waits_for_the_pending_review_and_is_refused_during_a_background_loop(loop, dash):
    # Issue 26, bug 9: a second Propose orphaned the first proposal as "proposed" for ever, and loop.propose()
    # during loop.start() made a row the background loop skipped.
    from autoresearch_nb.errors import StateError

    loop.baseline()
    first = loop.propose()
    assert dash.propose_button.disabled and dash.screen.pending.number == first.number
    dash.propose()  # a click queued before the button went grey
    dash.wait(30)
    assert [e.number for e in loop.experiments if e.status == Status.PROPOSED] == [first.number]
    assert "waits for review" in dash.status.value
    loop.reject(first)
    assert not dash.propose_button.disabled
    loop.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(e.description == "a very long run" and
                                                  e.status == Status.RUNNING for e in loop.experiments):
        time.sleep(0.2)
    rows = len(loop.experiments)
    with pytest.raises(StateError, match="background"):
        loop.propose()
    assert len(loop.experiments) == rows
    loop.stop(force=True)
    loop.wait(30)
    assert not loop.running

def test_stop_now_ends_a_background_loop(loop):
    dash = Dashboard(loop, live=True, curve_interval_s=0.2)
    loop.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(e.description == "a very long run" and
                                                  e.status == Status.RUNNING for e in loop.experiments):
        time.sleep(0.2)
    assert not dash.stop_now_button.disabled and loop.running
    started = time.monotonic()
    dash.stop_now_button.click()
    loop.wait(30)
    # generous: it tells "stop now" from waiting out the very long run
    assert not loop.running and time.monotonic() - started < 15
    assert loop.experiments[-1].status == Status.INTERRUPTED
    assert "loop finished" in dash.status.value and dash.stop_now_button.disabled
    deadline = time.monotonic() + 30  # the table redraws on the last event, from the UI's thread
    while time.monotonic() < deadline and dash.table.value.count("<tr") != 1 + len(loop.experiments):
        time.sleep(0.05)
    assert dash.table.value.count("<tr") == 1 + len(loop.experiments)
    dash.close()


def test_stop_after_this_lets_the_running_experiment_finish(loop):
    dash = Dashboard(loop, live=False)
    loop.baseline()
    started = threading.Event()
    loop.subscribe(lambda e: e.kind == EventKind.RUN_STARTED and e.experiment.number == 1 and started.set())
    loop.start()
    assert started.wait(60)
    dash.stop_after_button.click()
    loop.wait(60)
    assert not loop.running
    assert [e.number for e in loop.experiments] == [0, 1]  # #1 finished, #2 never started
    assert loop.experiments[1].status in (Status.KEEP, Status.DISCARD)
    dash.close()


def test_auto_display_is_console_outside_a_notebook(loop, monkeypatch):
    monkeypatch.delenv("AUTORESEARCH_NB_DISPLAY", raising=False)
    assert display_mode() == "console"
    monkeypatch.setenv("AUTORESEARCH_NB_DISPLAY", "widgets")
    assert display_mode() == "widgets" and display_mode("console") == "console"
    shown = loop.dashboard(mode="console")
    assert isinstance(shown, Console) and not shown.interactive
    shown.close()


def test_repeat_runs_are_shown_as_such_and_keep_off_the_main_curve(loop, dash):
    dash(fake(loop, EventKind.RUN_STARTED, 4, description="marginal change"))
    for i in range(1, 4):
        dash(Event(EventKind.PROGRESS, fake(loop, EventKind.PROGRESS, 4).experiment, CurvePoint(i, i * 0.1, 3.0)))
    dash(fake(loop, EventKind.RUN_FINISHED, 4, description="marginal change"))
    e4 = fake(loop, EventKind.MESSAGE, 4, description="marginal change").experiment
    dash(Event(EventKind.REPEAT_STARTED, e4, None, "confirmation run of abc1234, seed 43",
               purpose="confirmation", seed=43, repeat=1))
    most = loop.config.max_seeds  # the paired rule (the default): up to max_seeds runs of a candidate
    assert f"#4</b> marginal change · <b>confirmation run 2/{most}, seed 43" in dash.status.value
    for i in range(1, 6):
        dash(Event(EventKind.PROGRESS, e4, CurvePoint(i, i * 0.1, 9.0),
                   purpose="confirmation", repeat=1))
    own, repeat = dash.live_curves()
    assert (own.label, len(own), own.role) == ("#4 finished", 3, "last") and 9.0 not in own.y
    assert (repeat.label, len(repeat), repeat.role) == (f"#4 confirmation run 2/{most}", 5, "repeat")
    assert dash.bar.value == pytest.approx(0.5)  # the bar follows the repeat going on
    dash.flush()
    assert 'id="curve-repeat"' in dash.curves.value
    dash(fake(loop, EventKind.DECIDED, 4, Status.KEEP, metric=1.0, runs=[1.0, 1.0], description="marginal change"))
    assert [c.label for c in dash.live_curves()] == ["#4 keep"]
    assert "confirmation run" not in dash.status.value and "mean of 2 runs" in dash.status.value


def test_several_runs_in_flight_each_get_a_curve_and_a_status_line(loop, dash):
    for n, w in ((5, 0), (6, 1)):
        dash(Event(EventKind.RUN_STARTED, Experiment(n, loop.tag, Status.RUNNING, description=f"idea {n}",
                                                     worker=w), None, "", worker=w))
    for i in range(1, 4):  # interleaved, as from two worker threads
        for n, w in ((5, 0), (6, 1)):
            e = Experiment(n, loop.tag, Status.RUNNING, description=f"idea {n}", worker=w)
            dash(Event(EventKind.PROGRESS, e, CurvePoint(i, i * 0.1 * (n - 4), 5.0 - n * 0.1), worker=w))
    running = [c for c in dash.live_curves() if c.role == "running"]
    assert [(c.label, len(c)) for c in running] == [("#5 w0 running", 3), ("#6 w1 running", 3)]
    assert running[0].color != running[1].color
    assert "idea 5 · <b style='color:#1f77b4'>running</b> on worker 0" in dash.status.value
    assert "on worker 1" in dash.status.value
    assert "#5 w0" in dash.bar_text.value and "#6 w1" in dash.bar_text.value
    dash.flush()
    assert dash.curves.value.count('id="curve-running"') == 2
    dash(Event(EventKind.DECIDED, Experiment(5, loop.tag, Status.DISCARD, description="idea 5", worker=0)))
    assert dash.in_flight[0].number == 6 and dash.bar.style.bar_color == "#1f77b4"  # #6 still going
    assert "on worker 1" in dash.status.value and "on worker 0" not in dash.status.value


def test_noise_floor_repeats_and_endings_drawn_at_once(loop):
    dash = Dashboard(loop, live=True, curve_interval_s=60.0)  # the render thread would wait a minute
    during: list[str] = []
    loop.subscribe(lambda ev: ev.kind == EventKind.REPEAT_STARTED and
                   during.append(dash.status.value))
    base = loop.baseline()
    assert len(base.runs) == 2 and loop.noise["sigma"] > 0
    assert len(during) == 1 and "#0</b> baseline · <b>noise-floor run 2/2, seed 43" in during[0]
    own = next(c for c in dash.live_curves() if c.label.startswith("#0"))
    assert len(own) == len(loop.curve(0))  # the repeats' points never went into the baseline's curve
    # Drawn as soon as the baseline was decided: its final state, no stale "running", the kept mark.
    assert "#0 keep" in dash.curves.value and "running" not in dash.curves.value
    assert 'id="progress-kept"' in dash.progress.value
    assert "noise σ" in dash.status.value and "keep past" in dash.status.value
    loop.step()
    assert ">effect<" in dash.table.value and ">runs<" in dash.table.value and "σ</td>" in dash.table.value
    assert 'id="progress-threshold"' in dash.progress.value
    dash.close()


# The baseline runs 2 s; an experiment (A or B changed) runs until it is stopped, so the two are in flight
# together for as long as the test needs to see it, however busy the machine.
PARALLEL_TARGET = '''import time
A = 0
B = 0
for i in range(1, 41 if A == B == 0 else 10 ** 6):
    time.sleep(0.05)
    print(f"step {i} | loss: {10 - A - B + 1.0 / i:.4f}", flush=True)
print("---")
print(f"score: {10 - A - B}")
'''


class ListAgent:
    """Proposes its edits in order; raises QueueExhausted when done (as in test_parallel)."""

    name = "list"

    def __init__(self, items):
        self.items = list(items)

    def propose(self, context):
        from autoresearch_nb import Edit, Proposal, QueueExhausted

        while self.items:
            desc, search, replace = self.items.pop(0)
            if search in context.source:
                return Proposal(desc, edits=(Edit(search, replace),))
        raise QueueExhausted("done")


def test_two_workers_two_live_curves_and_stop_now_ends_both(tmp_path):
    repo = make_demo_repo(tmp_path / "target", train=PARALLEL_TARGET)
    agent = ListAgent([("A", "A = 0", "A = 1"), ("B", "B = 0", "B = 1")])
    with Loop.open(repo, tag="par", agent=agent, metric="score", time_budget_s=5, timeout_s=60, workers=2,
                   noise_repeats=1, noise_k=0) as lp:
        dash = Dashboard(lp, live=True, curve_interval_s=0.2, resources=False)
        lp.start()
        both: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not both:
            live = [c for c in dash.live_curves() if c.role == "running" and len(c) >= 2]
            if len(live) == 2:
                both = sorted(c.label for c in live)
            time.sleep(0.02)
        assert both == ["#1 w0 running", "#2 w1 running"] or both == ["#1 w1 running", "#2 w0 running"], both
        status = dash.status.value
        assert "on worker 0" in status and "on worker 1" in status
        dash.stop_now_button.click()
        lp.wait(30)
        assert not lp.running
        assert [e.status for e in lp.experiments[1:3]] == [Status.INTERRUPTED, Status.INTERRUPTED]
        assert dash.in_flight == [] and not any(c.role == "running" for c in dash.live_curves())
        assert "running" not in dash.curves.value and "loop finished" in dash.status.value
        dash.close()


def test_propose_in_a_run_without_a_baseline_runs_the_baseline_first_and_says_so(loop, dash):
    said: list[str] = []
    loop.subscribe(lambda ev: ev.kind == EventKind.RUN_STARTED and said.append(dash.status.value))
    assert not dash.propose_button.disabled and dash.stop_now_button.disabled
    dash.propose_button.click()
    dash.wait(60)
    exps = loop.experiments
    assert exps[0].description == "baseline" and exps[0].status == Status.KEEP and exps[0].diff == ""
    assert exps[-1].status == Status.PROPOSED and exps[-1].description == "lower the learning rate to 0.003"
    assert "no baseline yet" in said[0] and "running the baseline first" in said[0]
    assert dash.review_box.layout.display == "flex"  # the proposal waits for review, as after a plain Propose


def test_stop_now_acts_during_a_run_started_by_approve(tmp_path):
    queue = SLOW_QUEUE.split("\n\n")
    repo = make_demo_repo(tmp_path / "target", queue=queue[1] + "\n\n" + queue[0])  # the long run first
    loop = Loop.open(repo, tag="stop", agent="queue", time_budget_s=1, noise_repeats=1)
    dash = Dashboard(loop, live=False)
    loop.baseline()
    long = loop.propose()   # "a very long run": 60 s over a 1 s budget
    dash.approve_button.click()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not dash.in_flight:
        time.sleep(0.02)
    assert dash.in_flight and not dash.stop_now_button.disabled and dash.propose_button.disabled
    dash.stop_now_button.click()
    dash.wait(30)
    assert loop.store.get(loop.tag, long.number).status == Status.INTERRUPTED
    assert dash.stop_now_button.disabled and not dash.propose_button.disabled
    after = loop.run(loop.propose())   # the stop ended that run only: the next one runs
    assert after.status == Status.RUNNING and after.metric is not None
    dash.close()
    loop.close()


def test_a_new_dashboard_for_the_same_run_replaces_the_old_one(loop, dash):
    again = Dashboard(loop, live=False)   # the dashboard cell run a second time
    before = dash.status.value
    again(fake(loop, EventKind.RUN_STARTED, 9, description="only the new one hears this"))
    loop.events.emit(fake(loop, EventKind.RUN_STARTED, 9, description="only the new one hears this"))
    assert "only the new one hears this" in again.status.value and dash.status.value == before
    again.close()


def test_choose_an_experiment_to_see_its_reason_diff_and_curve(loop, dash):
    loop.baseline()
    loop.step()
    dash.flush()
    numbers = [v for _, v in dash.chooser.options]
    assert numbers[0] == -1 and set(numbers[1:]) == {0, 1}
    dash.chooser.value = 1
    assert "arnb-detail" in dash.diff.value and "LR = 0.003" in shown(dash.diff.value) and "why:" in dash.diff.value
    assert "#1 chosen" in dash.curves.value
    dash.chooser.value = -1
    assert "arnb-detail" not in dash.diff.value


def test_compare_overlays_chosen_experiments_curves_with_a_legend(quick_loop, quick_dash):
    loop, dash = quick_loop, quick_dash
    loop.baseline()
    loop.step()
    dash.flush()
    assert {v for _, v in dash.compare_picker.options} == {0, 1}
    assert "curve-compare" not in dash.curves.value
    dash.compare_picker.value = (1, 0)   # as a click in the picker would
    svg = dash.curves.value
    assert svg.count('id="curve-compare"') == 2
    assert f"stroke='{plotdata.compare_color(0)}'" in svg and f"stroke='{plotdata.compare_color(1)}'" in svg
    assert "#1 " in svg and "#0 keep · baseline" in svg  # the legend names each one
    ours = [c for c in dash.curve_data() if c.role == "compare"]
    assert [c.label.split()[0] for c in ours] == ["#1", "#0"]
    assert ours[0].x == plotdata.curve(loop.curve(1), 1).x and len(ours[0]) > 0  # the stored curve
    loop.step()                          # a new row in the table must not drop the comparison
    dash.flush()
    assert tuple(dash.compare_picker.value) == (1, 0) and dash.screen.compared == (1, 0)
    dash.compare([2])                    # the public method moves the picker too
    assert tuple(dash.compare_picker.value) == (2,) and dash.curves.value.count('id="curve-compare"') == 1
    dash.compare(None)
    assert dash.compare_picker.value == () and "curve-compare" not in dash.curves.value


def test_the_static_snapshot_holds_the_current_dashboard(loop, dash):
    loop.baseline()
    snap = dash.snapshot()
    assert "arnb-snapshot" in snap and "static copy" in snap and ".jp-OutputArea:has(.arnb-dashboard)" in snap
    assert dash.table.value in snap and dash.progress.value in snap and "<svg" in snap



def test_an_interrupted_run_is_drawn_as_such_at_once_and_in_the_saved_copy(loop, dash):
    # Issue 26, bug 2: after Kernel > Interrupt the panel still said "running" (RUN_FINISHED, no DECIDED follows).
    class Handle:
        html = ""

        def update(self, obj):
            Handle.html = obj.data

    dash._snapshot = Handle()
    dash(fake(loop, EventKind.PROPOSED, 1, Status.PROPOSED, description="try a thing"))
    dash(fake(loop, EventKind.RUN_STARTED, 1, description="try a thing"))
    assert "running · agent" in dash.diff.value and dash.propose_button.disabled
    dash(fake(loop, EventKind.RUN_FINISHED, 1, Status.INTERRUPTED, description="try a thing",
              reason="interrupted by the user"))
    assert "interrupted · interrupted by the user" in dash.diff.value and "running · agent" not in dash.diff.value
    assert not dash.propose_button.disabled and dash.stop_now_button.disabled
    assert "interrupted · interrupted by the user" in Handle.html

def test_a_stop_click_arriving_after_the_run_ended_does_not_cancel_the_next_run(loop, dash):
    loop.baseline()   # a cell's run: the kernel took the click only after it
    dash.stop(force=True)
    after = loop.run(loop.propose())
    assert after.status == Status.RUNNING and after.metric is not None


def test_a_frontend_without_widgets_is_told_why_it_sees_text(dash):
    bundle = dash._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == dash.widget.model_id
    assert "@jupyter-widgets/jupyterlab-manager" in bundle["text/plain"]  # not "VBox(children=(..."
    assert "'dash'" in bundle["text/plain"]
