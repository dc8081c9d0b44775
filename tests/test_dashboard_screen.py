# pytest tests/test_dashboard_screen.py -q
"""The dashboard's state without widgets: events in, what the screen says out (issue 16's stale texts and
controls). A real loop opened on the demo target is the source; events are built by hand."""
from __future__ import annotations

import pytest

from autoresearch_nb import Loop, Status
from autoresearch_nb.console import overall_progress
from autoresearch_nb.dashboard import make_demo_repo
from autoresearch_nb.dashboard.screen import Screen
from autoresearch_nb.events import Event, EventKind
from autoresearch_nb.records import CurvePoint, Experiment


@pytest.fixture
def loop(tmp_path):
    repo = make_demo_repo(tmp_path / "target")
    lp = Loop.open(repo, tag="scr", agent="queue", time_budget_s=20, max_experiments=7)
    yield lp
    lp.close()


def ex(number, status=Status.RUNNING, **kw):
    kw.setdefault("description", f"idea {number}")
    return Experiment(number, "scr", status, **kw)


def test_stop_is_enabled_while_a_cell_runs_the_baseline(loop):
    s = Screen(loop)
    idle = {"stop_after": False, "stop_now": False, "propose": True, "review": False}
    assert s.controls() == idle
    base = ex(0, description="baseline", agent="baseline")
    s.feed(Event(EventKind.PROPOSED, base.with_(status=Status.PROPOSED)))
    s.feed(Event(EventKind.RUN_STARTED, base))
    assert s.controls()["stop_now"] and not s.controls()["propose"]   # no loop started: the cell's own run
    s.stopping(force=False)   # Stop after this: pressed once; Stop now still there
    assert not s.controls()["stop_after"] and s.controls()["stop_now"]
    s.feed(Event(EventKind.DECIDED, base.with_(status=Status.KEEP, metric=1.0, reason="baseline")))
    assert s.controls() == idle
    s.feed(Event(EventKind.RUN_STARTED, ex(1)))
    assert s.controls()["stop_after"]   # a new run: the earlier stop is spent


def test_stop_is_enabled_while_a_button_runs_something(loop):
    s = Screen(loop)
    s.started("#3", "")
    assert s.controls()["stop_now"] and not s.controls()["review"]
    s.done()
    assert not s.controls()["stop_now"]


def test_a_running_experiment_is_not_also_waiting_for_review(loop):
    s = Screen(loop)
    s.feed(Event(EventKind.PROPOSED, ex(1, Status.PROPOSED, diff="-A\n+B\n")))
    assert s.pending is not None and "approve, reject or edit" in s.status_html() and s.controls()["review"]
    s.feed(Event(EventKind.RUN_STARTED, ex(1)))
    html = s.status_html()
    assert "approve, reject or edit" not in html and "running" in html and not s.controls()["review"]
    assert s.diff_view()[2].startswith("running")


def test_the_diff_subtitle_follows_the_decision(loop):
    s = Screen(loop)
    s.feed(Event(EventKind.PROPOSED, ex(2, Status.PROPOSED)))
    assert s.diff_view()[2].startswith("proposed")
    s.feed(Event(EventKind.RUN_STARTED, ex(2)))
    s.feed(Event(EventKind.DECIDED, ex(2, Status.DISCARD, metric=2.0, reason="worse than #0")))
    assert s.diff_view()[2] == "discard · worse than #0"


def test_a_user_rejection_reads_rejected(loop):
    s = Screen(loop)
    s.feed(Event(EventKind.PROPOSED, ex(3, Status.PROPOSED)))
    s.feed(Event(EventKind.DECIDED, ex(3, Status.INVALID, reason="rejected by the user")))
    assert ">rejected<" in s.note and "invalid" not in s.note and s.pending is None


def test_the_setup_line_goes_when_the_setup_is_done(loop):
    s = Screen(loop)
    s.feed(Event(EventKind.SETUP_STARTED, message="setup: python prepare.py"))
    assert "setup: python prepare.py" in s.status_html() and s.controls()["stop_now"]
    s.feed(Event(EventKind.SETUP_FINISHED))
    assert "prepare.py" not in s.status_html() and "prepare.py" not in s.bar_text()


def test_an_idle_bar_reads_in_the_past_tense(loop):
    s = Screen(loop)
    s.feed(Event(EventKind.RUN_STARTED, ex(0)))
    s.feed(Event(EventKind.PROGRESS, ex(0), CurvePoint(92, 20.2, 3.1)))
    s.move_bar()
    assert "20.2 / 20 s · step 92" in s.bar_text()
    s.feed(Event(EventKind.DECIDED, ex(0, Status.KEEP, metric=1.0, wall_seconds=20.2)))
    text = s.bar_text()
    assert "20.2 / 20 s" not in text and "step 92" not in text and "idle · last run #0 keep after 20.2 s" in text


def test_overall_progress_and_eta():
    assert overall_progress(3, 7, 45.0, running=True) == "experiment 4 / 7 · ETA 3 min"
    assert overall_progress(7, 7, 45.0) == "experiment 7 / 7"
    assert overall_progress(2, None, 30.0, running=True) == "experiment 3 · 30 s each"
    # issue 26: the ETA moves during a run (it stayed "39 s" through a whole run): what the running one has
    # taken is off the total, up to the mean (a run longer than the mean leaves the others' time)
    assert overall_progress(3, 4, 40.0, running=True, elapsed_s=30.0) == "experiment 4 / 4 · ETA 10 s"
    assert overall_progress(3, 5, 40.0, running=True, elapsed_s=99.0) == "experiment 4 / 5 · ETA 40 s"
    assert overall_progress(3, 5, 40.0, running=False, elapsed_s=30.0) == "experiment 3 / 5 · ETA 80 s"


def test_the_status_shows_overall_progress_against_max_experiments(loop):
    s = Screen(loop)
    s.status_html()
    assert s.overall_text == ""   # nothing yet
    s.feed(Event(EventKind.RUN_STARTED, ex(0)))
    s.status_html()
    assert "experiment 1 / 7" in s.bar_text()


def test_the_noise_rule_in_words_with_the_statistics_in_a_tooltip(loop, monkeypatch):
    s = Screen(loop)
    html = s.status_html()
    assert "a change is kept when it beats the best" in html and "title='noise floor not measured" in html


def test_the_status_says_how_busy_the_device_was_once_optimize_measured_it(tmp_path):
    repo = make_demo_repo(tmp_path / "busy")
    with Loop.open(repo, tag="busy", agent="queue", time_budget_s=1, noise_k=0, max_experiments=2) as lp:
        screen = Screen(lp)
        assert "device busy" not in screen.summary(lp.experiments)  # nothing measured before any optimize
        lp.optimize()
        share = lp.stats["duty_cycle"]
        assert share is not None and 0 < share <= 1
        assert f"device busy {100 * share:.0f} %" in screen.summary(lp.experiments)


def test_a_clean_run_waiting_for_decide_says_so_not_running_nor_the_last_outcome(tmp_path):
    # Issue 26, bug 3: between a cell's run() and decide() the bar read "idle · last run #0 keep" and the row
    # "running".
    from autoresearch_nb.dashboard import plotdata

    repo = make_demo_repo(tmp_path / "wait")
    with Loop.open(repo, tag="wait", agent="queue", time_budget_s=1, noise_k=0, max_experiments=3) as lp:
        s = Screen(lp)
        lp.subscribe(s.feed)
        lp.baseline()
        assert "last run #0 keep" in s.bar_text()
        exp = lp.run(lp.propose())
        assert exp.status == Status.RUNNING and exp.ended_at is not None
        s.status_html()
        text = s.bar_text()
        assert "last run #1 measured, waiting for decide()" in text and "keep" not in text
        assert "experiment 2 / 3" in text  # #1 is the current experiment, not #0
        assert s.diff_view()[2].startswith("measured, waiting for decide()")
        table = plotdata.table(lp.results)
        assert table.loc[table["number"] == 1, "status"].item() == "measured, not decided yet"
        lp.decide(exp)
        assert "waiting for decide()" not in s.bar_text() and "waiting" not in s.diff_view()[2]


def test_an_interrupted_run_no_longer_reads_running(loop):
    # Issue 26, bug 2: after Kernel > Interrupt, Loop.run closes the row as interrupted and emits RUN_FINISHED
    # (no DECIDED follows: the interrupt propagates); the diff panel still said "running".
    s = Screen(loop)
    s.feed(Event(EventKind.PROPOSED, ex(1, Status.PROPOSED)))
    s.feed(Event(EventKind.RUN_STARTED, ex(1)))
    assert s.diff_view()[2].startswith("running")
    s.feed(Event(EventKind.RUN_FINISHED, ex(1, Status.INTERRUPTED, reason="interrupted by the user",
                                            wall_seconds=3.0)))
    assert s.diff_view()[2] == "interrupted · interrupted by the user"
    assert "idle · last run #1 interrupted after 3.0 s" in s.bar_text()
    assert ">interrupted<" in s.status_html() and s.controls()["propose"] and not s.controls()["stop_now"]


def test_one_experiment_is_singular(loop):
    s = Screen(loop)
    base = ex(0, Status.KEEP, metric=1.0, description="baseline", agent="baseline")
    assert "· 1 experiment ·" in s.summary([base]) and "· 2 experiments ·" in s.summary([base, ex(1)])


def test_every_phase_of_a_run_is_on_screen_not_only_its_training(loop):
    # Issue 26: ~10 s showed only "starting" and ~11 s sat at "20.2/20 s" with no word of evaluating.
    s = Screen(loop)
    s.feed(Event(EventKind.RUN_STARTED, ex(1)))
    s.feed(Event(EventKind.PHASE, ex(1), message="start"))
    assert "starting (imports, data)" in s.bar_text() and "starting (imports, data)" in s.status_html()
    s.feed(Event(EventKind.PHASE, ex(1), message="train"))
    s.feed(Event(EventKind.PROGRESS, ex(1), CurvePoint(9, 20.2, 3.1)))
    assert "20.2 / 20 s" in s.bar_text() and "evaluating" not in s.bar_text() and ">training<" in s.status_html()
    s.feed(Event(EventKind.PHASE, ex(1), message="evaluate"))
    assert "20.2 / 20 s · step 9 · loss 3.1000 · evaluating 0 s" in s.bar_text()
    assert ">evaluating 0 s<" in s.status_html()
    # a repeat run's phases too
    s.feed(Event(EventKind.REPEAT_STARTED, ex(1), message="noise run", purpose="noise", seed=43, repeat=1))
    s.feed(Event(EventKind.PHASE, ex(1), message="verify", purpose="noise", seed=43, repeat=1))
    assert "verifying 0 s" in s.status_html()
