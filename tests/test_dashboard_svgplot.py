# pytest tests/test_dashboard_svgplot.py -q
"""The live curves' hand-written SVG: the same ids and labels as the matplotlib drawing, x fixed to the budget."""
from __future__ import annotations

import re

from autoresearch_nb.dashboard import plotdata, svgplot
from autoresearch_nb.records import CurvePoint


def pts(n, slope=0.01):
    return [CurvePoint(i, i * 0.1, 3.0 - slope * i) for i in range(1, n + 1)]


def test_curves_are_paths_in_groups_named_by_role_with_their_labels():
    curves = [plotdata.curve(pts(30), 5.0, "#0 baseline", "baseline"),
              plotdata.curve(pts(12, 0.02), 5.0, "#3 running", "running")]
    svg = svgplot.curves_svg(curves, 5.0, {"CPU %": ([0.5, 1.0], [40.0, 60.0])}, "training curves")
    assert svg.count('id="curve-baseline"') == 1 and svg.count('id="curve-running"') == 1
    running = re.search(r'id="curve-running"[^>]*><path d=\'([^\']*)\'', svg).group(1)
    assert len(re.findall(r"[ML]", running)) == 12
    assert "#3 running (12 pts)" in svg and "#0 baseline (30 pts)" in svg and 'id="resource-cpu"' in svg


def test_x_is_fixed_to_the_budget_so_a_live_plot_does_not_jump():
    short = svgplot.curves_svg([plotdata.curve(pts(5), 20.0, "a", "running")], 20.0)
    longer = svgplot.curves_svg([plotdata.curve(pts(50), 20.0, "a", "running")], 20.0)
    ticks = re.compile(r"text-anchor='middle'>([\d.]+)</text>")
    assert ticks.findall(short) == ticks.findall(longer) and ticks.findall(short)[-1] == "20"


def test_no_points_says_so():
    svg = svgplot.curves_svg([plotdata.curve([], 10.0, "#1", "running")], 10.0)
    assert "waiting for progress lines" in svg and "curve-running" not in svg


def test_nice_ticks_are_round_and_cover_the_range():
    assert svgplot.nice_ticks(0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert svgplot.nice_ticks(2.9, 3.1)[0] >= 2.9 and svgplot.nice_ticks(2.9, 3.1)[-1] <= 3.1


def test_resource_samples_are_drawn_in_time_order():
    # Issue 26, bug 7: the CPU % line drew a stray diagonal back from its first sample, taken out of order.
    curve = plotdata.curve(pts(12), 20.0, "#3", "running")
    svg = svgplot.curves_svg([curve], 20.0, {"CPU %": ([9.0, 1.0, 2.0, 3.0], [50.0, 10.0, 20.0, 30.0])})
    path = re.search(r'id="resource-cpu"><path d=\'M([^\']*)\'', svg).group(1)
    xs = [float(p.split(",")[0]) for p in path.split(" L")]
    assert xs == sorted(xs) and len(xs) == 4


def test_the_view_changes_the_axes_log_ticks_sit_at_round_losses():
    c = plotdata.curve([CurvePoint(i * 10, i * 0.1, 4.0 / (1 + i)) for i in range(1, 40)], 4.0, "a")
    plain = svgplot.curves_svg([c], 4.0)
    assert "seconds of training" in plain and "log scale" not in plain
    log = svgplot.curves_svg([c], 4.0, view=plotdata.CurveView(x="steps", log=True))
    assert "optimizer steps" in log and "loss (log scale)" in log
    labels = [float(t) for t in re.findall(r"text-anchor='end'>([0-9.]+)</text>", log)]
    assert labels and all(round(v, 6) == round(v, 1) for v in labels), labels  # 0.2, 0.5, 1 ... not 10**0.31
    share = svgplot.curves_svg([c], 4.0, {"CPU %": ([1.0], [50.0])}, view=plotdata.CurveView(x="progress"))
    assert "share of the time budget" in share and "resource-cpu" not in share  # resources are per second
