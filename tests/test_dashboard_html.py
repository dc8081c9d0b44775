# pytest tests/test_dashboard_html.py -q
"""HTML rendering is pure: the table (reason column, one line per row, rejected), an experiment's detail page,
the diff (escaped once), the static snapshot."""
from __future__ import annotations

import re
from html import unescape

from autoresearch_nb.dashboard.html import detail_html, diff_html, snapshot_html, table_html
from autoresearch_nb.records import Experiment, Status
from autoresearch_nb.results import dataframe


def ex(number, status=Status.RUNNING, **kw):
    kw.setdefault("description", f"idea {number}")
    return Experiment(number, "h", status, **kw)


def test_a_user_rejection_reads_rejected_and_a_broken_proposal_invalid():
    table = table_html(dataframe([ex(3, Status.INVALID, reason="rejected by the user"),
                                  ex(4, Status.INVALID, reason="edit does not apply")]))
    assert ">rejected<" in table and ">invalid<" in table


def test_text_from_the_agent_is_escaped_once():
    html = diff_html("-DEPTH = 4\n+DEPTH = 3\n", "#1 DEPTH 4 -> 3", "keep · <b>")
    assert "DEPTH 4 -&gt; 3" in html and "&amp;gt;" not in html and "<b>" not in html
    assert "monospace" in html


def test_detail_of_a_failed_run_shows_the_reason_and_log_tail():
    e = ex(5, Status.CRASH, reason="exit code 1: ZeroDivisionError", diff="-A = 1\n+A = 0\n")
    html = detail_html(e, "score", log_tail="Traceback\nZeroDivisionError: division by zero")
    assert "why: exit code 1: ZeroDivisionError" in html and "ZeroDivisionError: division by zero" in html
    assert "arnb-log" in html
    kept = detail_html(ex(6, Status.KEEP, metric=1.0, runs=[1.0, 1.1]), "score", log_tail="noise")
    assert "arnb-log" not in kept and "mean of 2 runs" in kept


def test_long_descriptions_do_not_wrap_and_keep_their_text_in_a_tooltip():
    long = "a very long description " * 10
    html = table_html(dataframe([ex(1, Status.DISCARD, metric=2.0, description=long, reason="worse")]))
    assert "white-space:nowrap" in html and "text-overflow:ellipsis" in html and f"title='{long}'" in html
    assert ">reason<" in html and ">worse<" in html


def test_the_snapshot_hides_itself_beside_a_live_widget_and_hides_the_missing_model_line():
    snap = snapshot_html("<div>status</div>", "diff", "<svg></svg>", "<svg></svg>", "<table></table>", "12:00")
    assert snap.startswith("<div class='arnb-snapshot'>") and "as of 12:00" in snap
    assert ".jp-OutputArea:has(.arnb-dashboard) .arnb-snapshot{display:none}" in snap
    assert ".jupyter-widgets:not(:has(*)){display:none}" in snap


def test_the_detail_gives_the_evidence_in_units_of_the_noise_floor():
    e = ex(7, Status.DISCARD, metric=1.01, reason="within the noise", runs=[1.0, 1.02], seeds=[42, 43],
           noise_sigma=0.01, threshold=0.0231, effect_sigma=1.5)
    html = detail_html(e, "score")
    assert "evidence: +1.50σ against the best before it; it needed more than 2.31σ (σ = 0.01)" in html
    assert "seeds 42, 43" in html


def test_rows_of_the_live_table_pick_their_experiment_on_click_and_static_ones_do_not():
    df = dataframe([ex(3, Status.KEEP, metric=1.0), ex(12, Status.DISCARD, metric=2.0)])
    live, static = table_html(df, clickable=True), table_html(df)
    assert "onclick" not in static and "cursor:pointer" not in static
    assert live.count("<tr data-number") == 2 and live.count("indexOf('#12 ')") == 1 and "indexOf('#3 ')" in live and "indexOf('#3 ')" in live
    assert ".arnb-choose select" in live  # it moves the dashboard's "show" list (the kernel hears the change)


def test_the_holdout_gap_is_a_column_only_when_a_holdout_was_scored():
    held = [Experiment(0, "t", Status.KEEP, metric=2.0, holdout_bpb=2.1, holdout_gap=0.1),
            Experiment(1, "t", Status.OVERFIT, metric=1.5, holdout_bpb=2.3, holdout_gap=0.8, reason="holdout gap widened")]
    html = table_html(dataframe(held, "val_bpb"), "val_bpb")
    assert "holdout gap" in html and "+0.8000" in html and "overfit" in html
    assert "holdout gap" not in table_html(dataframe([Experiment(0, "t", Status.KEEP, metric=2.0)], "val_bpb"))
    assert "holdout 2.3, gap +0.8000" in detail_html(held[1], "val_bpb")


def test_the_detail_shows_the_threshold_its_decision_used_not_the_floor_of_today():
    # Issue 26, bug 11: the reason said 2.45σ x 0.0329 = 0.081, the panel 0.0932 (k·√2·σ, another formula).
    from autoresearch_nb.dashboard import plotdata

    e = Experiment(4, "t", Status.DISCARD, metric=1.05, noise_sigma=0.0329, threshold=2.45 * 0.0329,
                   effect_sigma=1.2, reason="within the noise: 1.05 vs the best 1.09: -0.04 = +1.20σ, threshold "
                                            "2.45σ (σ=0.0329)")
    today = plotdata.floor_words(plotdata.floor({"sigma": 0.0329, "df": 4}, 2.0))
    assert "0.093" in today
    html = detail_html(e, "val_bpb", noise_text=today)
    assert "more than 0.0806 (2.45σ, σ = 0.0329)" in html and "0.093" not in html
    plain = Experiment(5, "t", Status.KEEP, metric=1.0, reason="improves (plain rule: noise floor not measured)")
    assert "a change is kept when" in detail_html(plain, "val_bpb", noise_text=plotdata.floor_words(
        plotdata.floor(None, 2.0)))


def test_the_diff_has_line_numbers_colours_and_no_wrapping():
    """Issue 26: old and new line numbers per line, a removed line on red and an added one on green, no wrapping
    (a wrapped '# ----' comment looked like a deletion), the file header not counted as a removed line."""
    from autoresearch_nb.dashboard.html import diff_rows

    diff = ("--- a/train.py\n+++ b/train.py\n@@ -8,3 +8,4 @@\n LR = 0.003\n-WIDTH = 64\n+WIDTH = 32\n"
            "+# ---------------------------------------------------------------- a long comment\n SLEEP_S = 0.05\n")
    rows = diff_rows(diff)
    assert [r[0] for r in rows] == ["h", "h", "@", " ", "-", "+", "+", " "]
    assert rows[3][1:3] == ("8", "8") and rows[4][1:3] == ("9", "") and rows[5][1:3] == ("", "9")
    assert rows[6][2] == "10" and rows[7][1:3] == ("10", "11")
    html = diff_html(diff, "#3 halve the width")
    assert html.count("class='arnb-diff-del'") == 1 and html.count("class='arnb-diff-add'") == 2
    assert "#ffebe9" in html and "#e6ffec" in html and "white-space:pre" in html
    assert ">9</td>" in html and ">11</td>" in html
    assert "WIDTH" in html and "<span" in html  # Python in Pygments' colours


def test_the_table_sorts_and_filters_in_the_browser_with_every_row_tagged_by_status():
    html = table_html(dataframe([ex(1, Status.KEEP, metric=2.0), ex(2, Status.DISCARD, metric=2.5),
                                 ex(3, Status.CRASH)]), clickable=True)
    assert "data-status='crash'" in html and "data-status='discard'" in html
    assert "<option value='crash'>crash</option>" in html and "every status" in html
    assert html.count("window.arnbTable(this,") >= 4 and "MutationObserver" in html  # headers sort, redraws keep it
    static = table_html(dataframe([ex(1, Status.KEEP, metric=2.0)]))
    assert "arnbTable" not in static and "<select" not in static  # a saved copy or a report: no scripts


def test_side_by_side_puts_each_removed_line_beside_what_replaced_it():
    diff = ("--- a/train.py\n+++ b/train.py\n@@ -8,3 +8,4 @@\n LR = 0.003\n-WIDTH = 64\n+WIDTH = 32\n"
            "+DEPTH = 2\n SLEEP_S = 0.05\n")
    html = diff_html(diff, side_by_side=True)
    pairs = re.findall(r"<tr class='arnb-diff-pair'>(.*?)</tr>", html)
    assert len(pairs) == 2 and html.count("class='arnb-diff-ctx'") == 2
    first, second = (unescape(re.sub(r"<[^>]+>", "", p)) for p in pairs)
    assert first == "9-WIDTH = 649+WIDTH = 32"     # the change on one line: old number and line, new number and line
    assert second == "10+DEPTH = 2"                # added only: the left side is empty
    assert ">9</td>" in html and ">10</td>" in html
