# pytest tests/test_dashboard_plots.py -q
"""Plot data is pure: the frontier, curves, the table and the small helpers, tested without drawing."""
from __future__ import annotations

import pandas as pd

from autoresearch_nb.dashboard import draw, plots
from autoresearch_nb.records import CurvePoint, Experiment, Status
from autoresearch_nb.results import dataframe


def exp(number: int, status: Status, metric: float | None = None, desc: str = "", **kw) -> Experiment:
    return Experiment(number=number, tag="t", status=status, metric=metric, description=desc or f"e{number}", **kw)


RUN = [exp(0, Status.KEEP, 2.0, "baseline"), exp(1, Status.DISCARD, 2.5), exp(2, Status.CRASH),
       exp(3, Status.KEEP, 1.5), exp(4, Status.INVALID), exp(5, Status.DISCARD, 1.7), exp(6, Status.KEEP, 1.2)]


def test_frontier_splits_kept_discarded_and_failed():
    f = plots.frontier(RUN)
    assert f.kept_x == [0, 3, 6] and f.kept_y == [2.0, 1.5, 1.2]
    assert f.discarded_x == [1, 5] and f.failed_x == [2]
    assert 4 not in f.best_x  # a proposal that never ran is not on the chart


def test_frontier_running_best_is_monotone_step_line():
    f = plots.frontier(RUN)
    assert f.best_x == [0, 1, 2, 3, 5, 6]
    assert f.best_y == [2.0, 2.0, 2.0, 1.5, 1.5, 1.2]
    assert all(b <= a for a, b in zip(f.best_y, f.best_y[1:]))


def test_frontier_maximize_keeps_the_highest():
    runs = [exp(0, Status.KEEP, 0.5), exp(1, Status.KEEP, 0.7), exp(2, Status.DISCARD, 0.6)]
    assert plots.frontier(runs, maximize=True).best_y == [0.5, 0.7, 0.7]


def test_frontier_accepts_the_results_dataframe():
    df = dataframe(RUN, "val_bpb")
    assert plots.frontier(df).best_y == plots.frontier(RUN).best_y


def test_curve_keeps_points_with_loss_and_fixes_x_to_the_budget():
    pts = [CurvePoint(1, 0.5, 3.0), CurvePoint(2, 1.0, None), CurvePoint(3, 1.5, 2.5), CurvePoint(4, 0.1, 4.0)]
    c = plots.curve(pts, budget_s=60, label="#1")
    assert c.x == [0.1, 0.5, 1.5] and c.y == [4.0, 3.0, 2.5]
    assert c.xmax == 60


def test_curve_grows_x_bound_when_the_run_overran():
    assert plots.curve([CurvePoint(1, 75.0, 1.0)], budget_s=60).xmax == 75.0


def test_curve_is_thinned_but_keeps_the_last_point():
    pts = [CurvePoint(i, i * 0.01, 10 - i * 0.001) for i in range(5001)]
    c = plots.curve(pts, budget_s=60, max_points=400)
    assert len(c) <= 401 and c.x[-1] == pts[-1].elapsed_s


def test_y_limits_ignore_the_initial_drop():
    c = plots.Curve("a", [0.0, 1.0, 5.0, 9.0], [100.0, 3.0, 2.5, 2.0], xmax=10.0)
    lo, hi = plots.y_limits([c])
    assert lo < 2.0 and hi < 10


def test_table_is_newest_first_with_duration_and_renamed_metric():
    df = dataframe([exp(0, Status.KEEP, 2.0, wall_seconds=3.0), exp(1, Status.DISCARD, 2.1)], "val_bpb")
    t = plots.table(df, "val_bpb")
    assert list(t["number"]) == [1, 0]
    assert {"val_bpb", "delta", "duration_s", "cost_usd", "description", "is_best"} <= set(t.columns)
    assert t.loc[t["number"] == 0, "is_best"].item() and t.loc[t["number"] == 0, "duration_s"].item() == 3.0


def test_keep_rate_leaves_out_the_baseline_and_proposals():
    assert plots.keep_rate(dataframe(RUN)) == 2 / 5


def test_improvements_rank_by_gain():
    top = plots.improvements(dataframe(RUN), n=5)
    assert list(top["number"]) == [3, 6]


def test_cost_over_time_is_cumulative():
    runs = [exp(i, Status.DISCARD, 1.0, cost_usd=0.5, ended_at=1000.0 + 1800 * i) for i in range(3)]
    hours, cost = plots.cost_over_time(dataframe(runs))
    assert hours == [0.0, 0.5, 1.0] and cost == [0.5, 1.0, 1.5]
    assert plots.cost_over_time(pd.DataFrame()) == ([], [])


def test_status_colours_and_budget_fraction():
    assert plots.status_color(Status.KEEP) == plots.COLORS["keep"]
    assert plots.status_color("timeout") == plots.status_color(Status.CRASH)
    assert plots.budget_fraction(30, 60) == 0.5 and plots.budget_fraction(90, 60) == 1.0


def test_drawing_tags_artists_in_the_svg():
    svg = draw.to_svg(draw.progress_figure(plots.frontier(RUN), "val_bpb"))
    assert svg.startswith("<svg") and 'id="progress-kept"' in svg and 'id="progress-best"' in svg
    c = plots.curve([CurvePoint(i, i * 0.1, 5 - i * 0.01) for i in range(50)], 10, "#1", "running")
    svg = draw.to_svg(draw.curves_figure([c], 10, {"CPU %": ([0, 1], [10, 20])}))
    assert 'id="curve-running"' in svg and 'id="resource-cpu"' in svg
