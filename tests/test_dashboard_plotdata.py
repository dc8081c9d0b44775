# pytest tests/test_dashboard_plotdata.py -q
"""Plot data is pure: the frontier, curves, the table and the small helpers, tested without drawing."""
from __future__ import annotations

import pandas as pd
import pytest

from autoresearch_nb.dashboard import draw, plotdata
from autoresearch_nb.records import CurvePoint, Experiment, Status
from autoresearch_nb.results import dataframe


def exp(number: int, status: Status, metric: float | None = None, desc: str = "", **kw) -> Experiment:
    return Experiment(number=number, tag="t", status=status, metric=metric, description=desc or f"e{number}", **kw)


RUN = [exp(0, Status.KEEP, 2.0, "baseline"), exp(1, Status.DISCARD, 2.5), exp(2, Status.CRASH),
       exp(3, Status.KEEP, 1.5), exp(4, Status.INVALID), exp(5, Status.DISCARD, 1.7), exp(6, Status.KEEP, 1.2)]


def test_frontier_splits_kept_discarded_and_failed():
    f = plotdata.frontier(RUN)
    assert f.kept_x == [0, 3, 6] and f.kept_y == [2.0, 1.5, 1.2]
    assert f.discarded_x == [1, 5] and f.failed_x == [2]
    assert 4 not in f.best_x  # a proposal that never ran is not on the chart



@pytest.mark.parametrize("as_frame", [False, True])
def test_interrupted_runs_are_grey_marks_and_never_run_proposals_are_left_out(as_frame):
    # Issue 26, bug 8: both were red "failed" marks on the progress chart.
    run = RUN[:4] + [exp(7, Status.INTERRUPTED, started_at=100.0, sha="abc"),  # stopped while it ran
                     exp(8, Status.INTERRUPTED, reason="the loop stopped before it ran")]  # never ran
    f = plotdata.frontier(dataframe(run, "val_bpb") if as_frame else run)
    assert f.failed_x == [2] and f.interrupted_x == [7] and 8 not in f.best_x
    svg = draw.to_svg(draw.progress_figure(f))
    assert 'id="progress-interrupted"' in svg and svg.count('id="progress-failed"') == 1

def test_frontier_running_best_is_monotone_step_line():
    f = plotdata.frontier(RUN)
    assert f.best_x == [0, 1, 2, 3, 5, 6]
    assert f.best_y == [2.0, 2.0, 2.0, 1.5, 1.5, 1.2]
    assert all(b <= a for a, b in zip(f.best_y, f.best_y[1:]))


def test_frontier_maximize_keeps_the_highest():
    runs = [exp(0, Status.KEEP, 0.5), exp(1, Status.KEEP, 0.7), exp(2, Status.DISCARD, 0.6)]
    assert plotdata.frontier(runs, maximize=True).best_y == [0.5, 0.7, 0.7]


def test_frontier_accepts_the_results_dataframe():
    df = dataframe(RUN, "val_bpb")
    assert plotdata.frontier(df).best_y == plotdata.frontier(RUN).best_y


def test_curve_keeps_points_with_loss_and_fixes_x_to_the_budget():
    pts = [CurvePoint(1, 0.5, 3.0), CurvePoint(2, 1.0, None), CurvePoint(3, 1.5, 2.5), CurvePoint(4, 0.1, 4.0)]
    c = plotdata.curve(pts, budget_s=60, label="#1")
    assert c.x == [0.1, 0.5, 1.5] and c.y == [4.0, 3.0, 2.5]
    assert c.xmax == 60


def test_curve_grows_x_bound_when_the_run_overran():
    assert plotdata.curve([CurvePoint(1, 75.0, 1.0)], budget_s=60).xmax == 75.0


def test_curve_is_thinned_but_keeps_the_last_point():
    pts = [CurvePoint(i, i * 0.01, 10 - i * 0.001) for i in range(5001)]
    c = plotdata.curve(pts, budget_s=60, max_points=400)
    assert len(c) <= 401 and c.x[-1] == pts[-1].elapsed_s


def test_compare_curves_are_the_chosen_experiments_in_order_each_in_its_own_colour():
    stored = {n: [CurvePoint(1, 0.5 * n + 0.1, 3.0 - 0.1 * n)] for n in range(7)}
    read = []

    def curves(n):
        read.append(n)
        return stored[n]

    got = plotdata.compare_curves([3, 1, 3, 99, 6], RUN, curves, budget_s=60, skip={6})
    assert [c.label.split()[0] for c in got] == ["#3", "#1"]  # duplicates once, unknown and on-screen left out
    assert got[0].label.startswith("#3 keep · e3") and got[1].label.startswith("#1 discard")
    assert {c.role for c in got} == {"compare"} and got[0].y == [2.7] and got[0].xmax == 60
    assert [c.color for c in got] == [plotdata.compare_color(0), plotdata.compare_color(1)]
    assert len(set(plotdata.COMPARE_COLORS)) == len(plotdata.COMPARE_COLORS)
    assert not set(plotdata.COMPARE_COLORS) & (set(plotdata.LIVE_COLORS) | set(plotdata.COLORS.values()))
    assert read == [3, 1]  # a skipped experiment's curve is not read
    # a colour belongs to a position in the choice: skipping one (it is live) does not recolour the others
    assert plotdata.compare_curves([1, 3], RUN, curves, 60, skip={1})[0].color == plotdata.compare_color(1)
    assert plotdata.compare_curves([], RUN, curves, 60) == []


def test_y_limits_ignore_the_initial_drop():
    c = plotdata.Curve("a", [0.0, 1.0, 5.0, 9.0], [100.0, 3.0, 2.5, 2.0], xmax=10.0)
    lo, hi = plotdata.y_limits([c])
    assert lo < 2.0 and hi < 10


def test_table_is_newest_first_with_duration_and_renamed_metric():
    df = dataframe([exp(0, Status.KEEP, 2.0, wall_seconds=3.0), exp(1, Status.DISCARD, 2.1)], "val_bpb")
    t = plotdata.table(df, "val_bpb")
    assert list(t["number"]) == [1, 0]
    assert {"val_bpb", "delta", "duration_s", "cost_usd", "description", "is_best"} <= set(t.columns)
    assert t.loc[t["number"] == 0, "is_best"].item() and t.loc[t["number"] == 0, "duration_s"].item() == 3.0


def test_keep_rate_leaves_out_the_baseline_and_proposals():
    assert plotdata.keep_rate(dataframe(RUN)) == 2 / 5


def test_improvements_rank_by_gain():
    top = plotdata.improvements(dataframe(RUN), n=5)
    assert list(top["number"]) == [3, 6]


def test_cost_over_time_is_cumulative():
    runs = [exp(i, Status.DISCARD, 1.0, cost_usd=0.5, ended_at=1000.0 + 1800 * i) for i in range(3)]
    hours, cost = plotdata.cost_over_time(dataframe(runs))
    assert hours == [0.0, 0.5, 1.0] and cost == [0.5, 1.0, 1.5]
    assert plotdata.cost_over_time(pd.DataFrame()) == ([], [])


def test_status_colours_and_budget_fraction():
    assert plotdata.status_color(Status.KEEP) == plotdata.COLORS["keep"]
    assert plotdata.status_color("timeout") == plotdata.status_color(Status.CRASH)
    assert plotdata.budget_fraction(30, 60) == 0.5 and plotdata.budget_fraction(90, 60) == 1.0


def test_drawing_tags_artists_in_the_svg():
    svg = draw.to_svg(draw.progress_figure(plotdata.frontier(RUN), "val_bpb"))
    assert svg.startswith("<svg") and 'id="progress-kept"' in svg and 'id="progress-best"' in svg
    c = plotdata.curve([CurvePoint(i, i * 0.1, 5 - i * 0.01) for i in range(50)], 10, "#1", "running")
    svg = draw.to_svg(draw.curves_figure([c], 10, {"CPU %": ([0, 1], [10, 20])}))
    assert 'id="curve-running"' in svg and 'id="resource-cpu"' in svg


NOISY = [exp(0, Status.KEEP, 1.000, "baseline", runs=[0.999, 1.0, 1.001], noise_sigma=0.002),
         exp(1, Status.DISCARD, 0.999, effect_sigma=0.5, threshold=0.0046, noise_sigma=0.002),
         exp(2, Status.KEEP, 0.990, effect_sigma=5.0, threshold=0.0046, noise_sigma=0.002),
         exp(3, Status.CRASH),
         exp(4, Status.KEEP, 0.985, runs=[0.984, 0.986], effect_sigma=2.5, threshold=0.004, noise_sigma=0.002)]


def test_frontier_band_is_the_keep_threshold_around_the_running_best():
    f = plotdata.frontier(NOISY, sigma=0.002, k=2.0)
    assert len(f.band_lo) == len(f.best_x) == 5
    # one new run against the baseline's mean of 3: 2·sqrt(1 + 1/3)·σ; against a single-run best: 2·√2·σ
    assert f.band_hi[0] - f.best_y[0] == pytest.approx(2 * (1 + 1 / 3) ** 0.5 * 0.002)
    assert f.best_y[2] - f.band_lo[2] == pytest.approx(2 * 2 ** 0.5 * 0.002)
    assert f.band_hi[4] - f.best_y[4] == pytest.approx(2 * 1.5 ** 0.5 * 0.002)  # the best is a mean of 2
    assert plotdata.frontier(NOISY).band_lo == [] and plotdata.frontier(NOISY, sigma=0.002, k=0).band_lo == []


def test_table_shows_effect_in_sigma_and_runs():
    t = plotdata.table(dataframe(NOISY + [exp(5, Status.INVALID)]))
    assert {"effect_sigma", "n_runs"} <= set(t.columns)
    row = t.set_index("number")
    assert row.loc[2, "effect_sigma"] == 5.0 and row.loc[0, "n_runs"] == 3 and row.loc[4, "n_runs"] == 2
    assert pd.isna(row.loc[5, "n_runs"])  # never ran: blank, not 0


def test_floor_text_gives_sigma_and_the_threshold_or_why_none():
    f = plotdata.floor({"sigma": 0.002, "mad_sigma": 0.0018, "df": 2}, k=2.0, best_n=3)
    assert f.threshold == pytest.approx(f.threshold_sigma * 0.002)
    assert plotdata.floor_text(f) == "noise σ 0.002 (2 df, robust 0.0018) · keep past 2.31σ (0.00462)"
    assert "not measured" in plotdata.floor_text(plotdata.floor(None, k=2.0))
    assert "noise_k=0" in plotdata.floor_text(plotdata.floor(None, k=0))
    assert plotdata.floor({"sigma": 0.002, "df": 2}, k=0).threshold is None
    assert "repeats were identical" in plotdata.floor_text(plotdata.floor({"sigma": 0.0, "df": 2}, k=2.0))


def test_effect_sizes_use_the_decision_and_fill_in_from_delta():
    e = plotdata.effect_sizes(dataframe(NOISY)).set_index("number")
    assert list(e.index) == [1, 2, 4]  # no baseline, no crash
    assert e.loc[2, "effect_sigma"] == 5.0 and e.loc[2, "threshold_sigma"] == pytest.approx(2.3)
    assert e.loc[1, "margin_sigma"] == pytest.approx(0.5 - 2.3) and e.loc[4, "n_runs"] == 2
    plain = [exp(0, Status.KEEP, 1.0, "baseline"), exp(1, Status.KEEP, 0.99)]  # decided without a floor
    e = plotdata.effect_sizes(dataframe(plain), sigma=0.002)
    assert e["effect_sigma"].tolist() == [pytest.approx(5.0)] and e["threshold_sigma"].isna().all()
    assert plotdata.effect_sizes(dataframe(plain))["effect_sigma"].isna().all()


def test_cumulative_improvement_has_a_band_from_the_floor():
    c = plotdata.cumulative(NOISY, sigma=0.002, k=2.0)
    assert c.x == [0, 1, 2, 3, 4]
    assert c.improvement == pytest.approx([0.0, 0.0, 0.010, 0.010, 0.015])
    assert c.low[0] == c.high[0] == 0.0  # the baseline against itself
    half = 2 * 0.002 * (1 / 3 + 1 / 2) ** 0.5  # baseline mean of 3 runs vs best mean of 2
    assert c.high[4] - c.improvement[4] == pytest.approx(half)
    assert plotdata.cumulative(dataframe(NOISY), 0.002).improvement == c.improvement
    assert plotdata.cumulative(NOISY, None).low == c.improvement
    assert plotdata.cumulative([exp(0, Status.INVALID)], 0.1).empty


def test_noise_drawings_tag_their_artists():
    svg = draw.to_svg(draw.progress_figure(plotdata.frontier(NOISY, sigma=0.002, k=2.0)))
    assert 'id="progress-threshold"' in svg and "within the noise" in svg
    svg = draw.to_svg(draw.effects_figure(plotdata.effect_sizes(dataframe(NOISY))))
    assert 'id="effects-bars"' in svg and 'id="effects-threshold"' in svg
    svg = draw.to_svg(draw.cumulative_figure(plotdata.cumulative(NOISY, 0.002), "val_bpb"))
    assert 'id="cumulative-band"' in svg and 'id="cumulative-line"' in svg
    c = plotdata.curve([CurvePoint(i, i * 0.1, 5 - i * 0.01) for i in range(5)], 10, "#2 w1", color="#9467bd")
    assert "#9467bd" in draw.to_svg(draw.curves_figure([c], 10))


def test_table_says_whose_number_it_is_and_refused_rows_are_not_crash_red():
    exps = [Experiment(0, "t", Status.KEEP, metric=1.0, verified=True),
            Experiment(1, "t", Status.TAMPERED, metric=1.2, verified=True, claimed=0.5),
            Experiment(2, "t", Status.DISCARD, metric=1.1),
            Experiment(3, "t", Status.CRASH)]
    out = plotdata.table(dataframe(exps))
    assert list(out["verified"]) == ["", "unverified", "yes", "yes"]
    assert plotdata.status_color("tampered") not in (plotdata.status_color("crash"), plotdata.status_color("keep"))


HELD = [exp(0, Status.KEEP, 2.0, "baseline", holdout_bpb=2.1, holdout_gap=0.1),
        exp(1, Status.OVERFIT, 1.5, holdout_bpb=2.3, holdout_gap=0.8), exp(2, Status.DISCARD, 2.2),
        exp(3, Status.KEEP, 1.8, holdout_bpb=1.85, holdout_gap=0.05)]


def test_the_progress_chart_carries_the_bests_holdout_as_a_line():
    f = plotdata.frontier(HELD)
    assert f.best_x == [0, 2, 3] and f.holdout_x == f.best_x and f.holdout_y == [2.1, 2.1, 1.85]
    assert plotdata.frontier(dataframe(HELD, "val_bpb")).holdout_y == f.holdout_y
    assert plotdata.frontier(RUN).holdout_x == []  # no holdout scored: no line
    svg = draw.to_svg(draw.progress_figure(f, "val_bpb"))
    assert 'id="progress-holdout"' in svg and "best's holdout" in svg
    assert 'id="progress-holdout"' not in draw.to_svg(draw.progress_figure(plotdata.frontier(RUN), "val_bpb"))


def test_the_table_shows_the_holdout_gap_and_overfit_reads_as_refused():
    t = plotdata.table(dataframe(HELD, "val_bpb"))
    assert list(t["holdout_gap"])[::-1][:2] == [0.1, 0.8] and pd.isna(t["holdout_gap"][1])
    assert plotdata.status_color("overfit") == plotdata.status_color("tampered") != plotdata.COLORS["keep"]


def test_a_curve_view_puts_steps_or_the_budgets_share_on_x_and_smooths_like_tensorboard():
    pts = [CurvePoint(10, 1.0, 4.0), CurvePoint(None, 2.0, 2.0), CurvePoint(30, 3.0, 3.0)]
    c = plotdata.curve(pts, 4.0, "a")
    assert c.steps == [10.0, 10.0, 30.0]  # a line without a step keeps the step before it
    (steps,), end = plotdata.viewed([c], plotdata.CurveView(x="steps"), 4.0)
    assert steps.x == [10.0, 10.0, 30.0] and end == 30.0 and steps.y == c.y
    (share,), end = plotdata.viewed([c], plotdata.CurveView(x="progress"), 4.0)
    assert share.x == [0.25, 0.5, 0.75] and end == 1.0
    (smooth,), _ = plotdata.viewed([c], plotdata.CurveView(smooth=0.5), 4.0)
    # debiased: the first point is the first loss, later ones lean on the past by the weight
    assert smooth.y[0] == 4.0 and smooth.y[1] == pytest.approx((0.25 * 4 + 0.5 * 2) / 0.75)
    assert plotdata.CurveView(x="steps").xlabel == "optimizer steps"
    with pytest.raises(ValueError, match="x must be one of"):
        plotdata.CurveView(x="epochs")
    with pytest.raises(ValueError, match="smooth"):
        plotdata.CurveView(smooth=1.0)


def test_the_report_figure_follows_the_view():
    c = plotdata.curve([CurvePoint(i * 10, i * 0.1, 4.0 / (1 + i)) for i in range(1, 30)], 3.0, "a")
    fig = draw.curves_figure([c], 3.0, view=plotdata.CurveView(x="steps", log=True, smooth=0.3))
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "optimizer steps"
    assert "smoothed 0.3" in ax.get_ylabel() and ax.get_xlim()[1] >= 290


def test_the_lineage_is_the_kept_chain_with_what_was_tried_from_each_state():
    exps = [Experiment(0, "t", Status.KEEP, description="baseline", metric=2.0, sha="a"),
            Experiment(1, "t", Status.DISCARD, description="x", metric=2.1, sha="b", parent_sha="a"),
            Experiment(2, "t", Status.KEEP, description="y", metric=1.9, sha="c", parent_sha="a", effect_sigma=4.2),
            Experiment(3, "t", Status.CRASH, description="z", sha="d", parent_sha="c"),
            Experiment(4, "t", Status.DISCARD, description="w", metric=1.95, sha="e", parent_sha="c"),
            Experiment(5, "t", Status.PROPOSED, description="v", parent_sha="c")]
    steps = plotdata.lineage(dataframe(exps))
    assert [s.number for s in steps] == [0, 2]
    assert steps[0].tried == {"discard": 1, "keep": 1} and steps[0].delta is None
    assert steps[1].tried == {"crash": 1, "discard": 1} and steps[1].tried_numbers == (3, 4)
    assert steps[1].delta == pytest.approx(-0.1) and steps[1].effect_sigma == 4.2
    from autoresearch_nb.dashboard.html import lineage_html
    html = lineage_html(steps, "val_bpb")
    assert "└ <b>#2</b> y" in html and "+4.2σ" in html and "tried from here: 2 (1 crash, 1 discard)" in html
    assert "no kept state yet" in lineage_html([])
