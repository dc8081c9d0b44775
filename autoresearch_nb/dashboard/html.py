"""HTML rendering as pure functions: the diff, the experiment table, an experiment's detail panel and the static
snapshot of the dashboard. The live widgets and the static report both use these; nothing here imports
ipywidgets or matplotlib.

Every text that came from the agent, a log or the user is escaped exactly once, here.

>>> "<b>" in diff_html("", "#1 a <b> change")
False
"""
from __future__ import annotations

import html
import math
import re
from typing import Any

from ..records import Experiment, Status
from . import plotdata

# Cells never wrap: long texts are cut with an ellipsis and read whole in their tooltip.
_CELL = "padding:2px 6px;border-bottom:1px solid #eee;white-space:nowrap;vertical-align:top"
_CUT = "max-width:22em;overflow:hidden;text-overflow:ellipsis"
MONO = "font-family:var(--jp-code-font-family, monospace);font-size:12px"


def esc(text: Any) -> str:
    """``text`` escaped for HTML (None is empty)."""
    return html.escape("" if text is None else str(text))


_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")
_DIFF_BG = {"+": "#e6ffec", "-": "#ffebe9", "@": "#f1f0ff", "h": "#f6f8fa"}
_NUM = "color:#888;text-align:right;padding:0 6px;user-select:none;border-right:1px solid #eee"


def _code(text: str) -> str:
    """One line of Python in Pygments' colours (inline styles), or escaped text without Pygments."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
    except ImportError:  # pragma: no cover - pygments ships with IPython
        return esc(text)
    out = highlight(text, PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True, nowrap=True))
    return out.rstrip("\n")


def diff_rows(diff: str) -> list[tuple[str, str, str, str]]:
    """A unified diff as rows of (kind, old line number, new line number, text): kind ``+``, ``-``, `` ``
    (context), ``@`` (a hunk header) or ``h`` (the file header)."""
    rows: list[tuple[str, str, str, str]] = []
    old = new = 0
    in_hunk = False  # before the first hunk, "--- a/train.py" is the header, not a removed line
    for line in diff.splitlines():
        if not in_hunk and line.startswith(("--- ", "+++ ", "diff ", "index ")):
            rows.append(("h", "", "", line))
        elif line.startswith("@@"):
            m = _HUNK.match(line)
            if m:
                in_hunk = True
                old, new = int(m.group(1)), int(m.group(2))
            rows.append(("@", "", "", line))
        elif line.startswith("+"):
            rows.append(("+", "", str(new), line[1:]))
            new += 1
        elif line.startswith("-"):
            rows.append(("-", str(old), "", line[1:]))
            old += 1
        elif line.startswith("\\"):  # "\ No newline at end of file"
            rows.append(("@", "", "", line))
        else:
            rows.append((" ", str(old), str(new), line[1:] if line.startswith(" ") else line))
            old += 1
            new += 1
    return rows


def _diff_cell(kind: str, number: str, text: str) -> str:
    """A line number cell and a code cell of one side of a diff (empty when that side has no line here)."""
    if not kind:
        return f"<td style='{_NUM}'></td><td style='background:#fafafa'></td>"
    bg = _DIFF_BG.get(kind, "")
    sign = {"+": "+", "-": "-", " ": " "}.get(kind, "")
    return (f"<td style='{_NUM}'>{number}</td><td style='white-space:pre;padding:0 6px;"
            f"{'background:' + bg if bg else ''}'>{sign}{_code(text)}</td>")


def _side_by_side(rows: list[tuple[str, str, str, str]]) -> list[str]:
    """The rows of a two-column diff: a removed run beside the added run that replaced it, context on both."""
    out: list[str] = []
    i = 0
    while i < len(rows):
        kind, a, b, text = rows[i]
        if kind in "@h":
            color = "color:#6f42c1" if kind == "@" else "color:#555"
            out.append(f"<tr class='arnb-diff-{'hunk' if kind == '@' else 'head'}' style='background:"
                       f"{_DIFF_BG[kind]}'><td colspan='4' style='white-space:pre;padding:0 6px;{color}'>"
                       f"{esc(text)}</td></tr>")
            i += 1
        elif kind == " ":
            out.append(f"<tr class='arnb-diff-ctx'>{_diff_cell(' ', a, text)}{_diff_cell(' ', b, text)}</tr>")
            i += 1
        else:
            dels, adds = [], []
            while i < len(rows) and rows[i][0] == "-":
                dels.append(rows[i])
                i += 1
            while i < len(rows) and rows[i][0] == "+":
                adds.append(rows[i])
                i += 1
            for k in range(max(len(dels), len(adds))):
                left = _diff_cell("-", dels[k][1], dels[k][3]) if k < len(dels) else _diff_cell("", "", "")
                right = _diff_cell("+", adds[k][2], adds[k][3]) if k < len(adds) else _diff_cell("", "", "")
                out.append(f"<tr class='arnb-diff-pair'>{left}{right}</tr>")
    return out


def diff_html(diff: str, title: str = "", note: str = "", side_by_side: bool = False) -> str:
    """A unified diff as a table with the old and new line numbers, Python in Pygments' colours, added and
    removed lines on green and red, and no wrapping (a long line scrolls in its box: a wrapped ``# ----`` comment
    looked like a deletion), under a title and a note (both plain text). ``side_by_side``: the old file on the
    left, the new on the right, each removed run beside what replaced it."""
    if not diff.strip():
        body = "<div style='color:grey'>(no change: the file as it is)</div>"
    else:
        rows = diff_rows(diff)
        if side_by_side:
            trs = _side_by_side(rows)
        else:
            trs = []
            for kind, a, b, text in rows:
                bg = _DIFF_BG.get(kind, "")
                style = f" style='background:{bg}'" if bg else ""
                sign = {"+": "+", "-": "-", " ": " "}.get(kind, "")  # the sign stays: a copy of the text is a diff
                code = esc(text) if kind in "@h" else _code(text)
                color = "color:#6f42c1;" if kind == "@" else "color:#555;" if kind == "h" else ""
                name = {"+": "add", "-": "del", "@": "hunk", "h": "head"}.get(kind, "ctx")
                trs.append(f"<tr class='arnb-diff-{name}'{style}><td style='{_NUM}'>{a}</td>"
                           f"<td style='{_NUM}'>{b}</td><td style='white-space:pre;padding:0 6px;{color}'>"
                           f"{sign}{code}</td></tr>")
        body = (f"<table class='arnb-diff-lines{' arnb-side-by-side' if side_by_side else ''}' style='border-collapse:"
                f"collapse;width:max-content;min-width:100%;line-height:1.35'>{''.join(trs)}</table>")
    head = f"<div style='font-weight:600'>{esc(title)}</div>" if title else ""
    sub = f"<div class='arnb-diff-note' style='color:#555;font-size:12px'>{esc(note)}</div>" if note else ""
    return (f"<div class='arnb-diff'>{head}{sub}<div style='max-height:340px;overflow:auto;{MONO}'>"
            f"{body}</div></div>")


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    try:
        return spec.format(value)
    except (TypeError, ValueError):
        return esc(value)


_FORMATS = {"delta": "{:+.6f}", "effect_sigma": "{:+.2f}σ", "duration_s": "{:.1f}", "cost_usd": "${:.3f}",
            "n_runs": "{}", "holdout_gap": "{:+.4f}"}
_HEADS = {"number": "#", "effect_sigma": "effect", "n_runs": "runs", "duration_s": "seconds", "cost_usd": "cost",
          "holdout_gap": "holdout gap"}


# A click on a row of the live table picks that experiment in the dashboard's "show" list (whose change event
# reaches the kernel like a user's choice); outside a dashboard (the static copy, a report) it does nothing.
_PICK_ROW = ("var s=this.closest('.arnb-dashboard');s=s&&s.querySelector('.arnb-choose select');if(!s)return;"
             "for(var i=0;i<s.options.length;i++){if(s.options[i].text.replace(/\\s/g,' ').indexOf('#{n} ')===0)"
             "{s.selectedIndex=i;s.dispatchEvent(new Event('change',{bubbles:true}));break;}}")


# Sorting and the status filter run in the browser, so they act at once whatever the kernel is doing. The table is
# redrawn at every decision: the choice lives on the box around it (data-sort, data-filter) and a MutationObserver
# puts it back on each new table. The function is defined once, when the pointer first enters the table.
_TABLE_JS = (
    "function(el,col,flt){var v=el.closest('.arnb-table-view')||el.closest('.arnb-table').parentNode;"
    "if(col!==null){v.dataset.sort=(v.dataset.sort===col+':a')?col+':d':col+':a';}"
    "if(flt!==null){v.dataset.filter=flt;}"
    "var apply=function(){var t=v.querySelector('table.arnb-rows');if(!t)return;var b=t.tBodies[0];"
    "var f=v.dataset.filter||'';var sel=v.querySelector('select.arnb-status-filter');"
    "if(sel&&sel.value!==f)sel.value=f;var rows=Array.prototype.slice.call(b.rows);"
    "rows.forEach(function(r){r.style.display=(!f||r.dataset.status===f)?'':'none';});"
    "var s=v.dataset.sort;if(!s)return;var c=+s.split(':')[0],d=s.split(':')[1]==='d'?-1:1;"
    "var key=function(r){var x=(r.cells[c]||{}).textContent||'';var n=parseFloat(x.replace(/[^0-9eE.+-]/g,''));"
    "return isNaN(n)?[1,x]:[0,n];};"
    "rows.sort(function(a,z){var x=key(a),y=key(z);if(x[0]!==y[0])return x[0]-y[0];"
    "return (x[1]<y[1]?-1:x[1]>y[1]?1:0)*d;});"
    "if(!rows.every(function(r,i){return b.rows[i]===r;}))rows.forEach(function(r){b.appendChild(r);});};"
    "apply();if(!v.arnbObserved){v.arnbObserved=true;"
    "new MutationObserver(function(){apply();}).observe(v,{childList:true,subtree:true});}}")
_DEFINE_TABLE_JS = f"window.arnbTable||(window.arnbTable={_TABLE_JS})"


def table_html(results: Any, metric: str = "metric", limit: int = 50, clickable: bool = False) -> str:
    """The experiment table (newest first, the best row highlighted, the running one included): status,
    metric, the holdout gap (holdout bpb - val bpb, when the verifier scored a holdout), change against the best,
    effect in units of the noise floor, runs behind the metric, the description and the reason for the outcome.
    Long texts are cut on one line, whole in their tooltip. ``clickable`` (the live dashboard's table): a click on a
    row shows that experiment, a click on a column head sorts by it, a status filter above; all in the browser."""
    df = plotdata.table(results, metric, limit=limit)
    if df.empty:
        return "<div style='color:grey'>no experiments yet</div>"
    cols = [c for c in df.columns if c != "is_best"]
    if not df["cost_usd"].fillna(0).any():  # the tuner and the queue cost nothing: no column of zeros
        cols.remove("cost_usd")
    if df["holdout_gap"].isna().all():  # no holdout (verification off, or not the model verifier)
        cols.remove("holdout_gap")
    th = "text-align:left;padding:2px 6px;border-bottom:1px solid #ccc"
    head = "".join((f"<th style='{th};cursor:pointer' title='sort by {esc(_HEADS.get(c, c))} (again: the other way)' "
                    f"onclick=\"if(window.arnbTable)window.arnbTable(this,{i},null)\">" if clickable else
                    f"<th style='{th}'>") + f"{esc(_HEADS.get(c, c))}</th>" for i, c in enumerate(cols))
    rows = []
    for r in df.to_dict("records"):
        cells = []
        for c in cols:
            v = r[c]
            style, title = _CELL, ""
            if c == "status":
                style += f";color:{plotdata.status_color(str(v))}"
                text = esc(v)
            elif c == metric:
                text = _fmt(v, "{:.6f}")
            elif c in ("description", "reason"):
                style += ";" + _CUT
                text = esc(v)
                title = f" title='{text}'" if text else ""
            else:
                text = _fmt(v, _FORMATS.get(c, "{}"))
            cells.append(f"<td style='{style}'{title}>{text}</td>")
        best = "background-color:#d8f5d0;font-weight:600" if r["is_best"] else ""
        n = int(r["number"])
        click = (f" onclick=\"{_PICK_ROW.replace('{n}', str(n))}\"" if clickable else "")
        status = esc(r["status"])
        rows.append(f"<tr data-number='{n}' data-status='{status}' style='{best}"
                    f"{';cursor:pointer' if clickable else ''}'{click}>{''.join(cells)}</tr>")
    statuses = sorted({str(v) for v in df["status"]})
    options = "".join(f"<option value='{esc(v)}'>{esc(v)}</option>" for v in statuses)
    define = f" onmouseover=\"{esc(_DEFINE_TABLE_JS)}\"" if clickable else ""
    pick = (f"<select class='arnb-status-filter' style='font-size:11px;margin:0 0 3px 0'{define} "
            f"onfocus=\"{esc(_DEFINE_TABLE_JS)}\" onchange=\"window.arnbTable(this,null,this.value)\">"
            f"<option value=''>every status</option>{options}</select>") if clickable else ""
    return (f"<div class='arnb-table' style='max-height:340px;overflow:auto'>{pick}<table class='arnb-rows' "
            f"style='border-collapse:collapse;font-size:12px'{define}>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def detail_html(e: Experiment, metric: str = "metric", log_tail: str = "", noise_text: str = "",
                side_by_side: bool = False) -> str:
    """One experiment's page: its outcome and reason, the evidence behind the decision (runs, effect), its
    diff (``side_by_side``: old and new in two columns), and for a failed run the last lines of its log."""
    shown = plotdata.shown_status(e.status.value, e.reason, e.ended_at)
    value = f"{e.metric:.6g}" if e.metric is not None else "-"
    facts = [f"<b style='color:{plotdata.status_color(e.status)}'>{esc(shown)}</b>", f"{esc(metric)} {value}"]
    if len(e.runs) > 1:
        facts.append(f"mean of {len(e.runs)} runs ({', '.join(f'{x:.6g}' for x in e.runs)})")
    if e.holdout_bpb is not None:
        gap = f", gap {e.holdout_gap:+.4f}" if e.holdout_gap is not None else ""
        facts.append(f"holdout {e.holdout_bpb:.6g}{gap}")
    if e.wall_seconds is not None:
        facts.append(f"{e.wall_seconds:.1f} s")
    if e.seed is not None:
        facts.append(f"seed {e.seed}")
    if e.sha:
        facts.append(f"commit {esc(e.sha[:10])}")
    parts = [f"<div style='font-weight:600'>#{e.number} {esc(e.description)}</div>",
             f"<div style='font-size:12px'>{' · '.join(facts)}</div>"]
    if e.reason:
        parts.append(f"<div class='arnb-reason' style='font-size:12px;color:#333'>why: {esc(e.reason)}</div>")
    if e.effect_sigma is not None:  # the evidence behind the decision, in units of the noise floor
        need = (f"; it needed more than {e.threshold / e.noise_sigma:.2f}σ" if e.threshold is not None
                and e.noise_sigma else "")
        sigma = f" (σ = {e.noise_sigma:.3g})" if e.noise_sigma else ""
        seeds = f" · seeds {', '.join(map(str, e.seeds))}" if len(e.seeds) > 1 else ""
        parts.append(f"<div class='arnb-evidence' style='font-size:12px'>evidence: {e.effect_sigma:+.2f}σ "
                     f"against the best before it{need}{sigma}{seeds}</div>")
    # the threshold this decision used, from its row; the run's floor of today only for a row without one
    noise_text = plotdata.decision_words(e.threshold, e.noise_sigma) or noise_text
    if noise_text and e.status in (Status.KEEP, Status.DISCARD):
        parts.append(f"<div class='arnb-threshold' style='font-size:12px;color:#555'>{esc(noise_text)}</div>")
    if log_tail and e.status not in (Status.KEEP, Status.DISCARD, Status.PROPOSED, Status.RUNNING):
        parts.append(f"<div style='font-size:12px;margin-top:4px'>last lines of the log</div><pre class="
                     f"'arnb-log' style='max-height:220px;overflow:auto;background:#f6f6f6;padding:4px;"
                     f"{MONO}'>{esc(log_tail)}</pre>")
    parts.append(diff_html(e.diff, "", "diff against its parent", side_by_side))
    return f"<div class='arnb-detail'>{''.join(parts)}</div>"


# A saved notebook keeps this copy beside the widget view: while the widget is live (its model exists) the copy is
# hidden; reopened without the kernel, JupyterLab cannot find the model, so the copy shows and the renderer's
# "Error displaying widget: model not found" line is hidden. Needs a trusted output (a notebook you saved).
_SNAPSHOT_CSS = (".jp-OutputArea:has(.arnb-dashboard) .arnb-snapshot{display:none}"
                 ".jp-OutputArea:has(.arnb-snapshot) .jp-OutputArea-output.jupyter-widgets:not(:has(*)){display:none}")


def snapshot_html(status: str, diff: str, curves: str, progress: str, table: str, when: str = "") -> str:
    """A static copy of the dashboard's parts (HTML and inline SVG) for a saved notebook."""
    half = "flex:1 1 420px;min-width:360px;overflow:auto;border:1px solid #ddd;padding:6px;margin:2px"
    stamp = f"<div style='color:#777;font-size:11px'>static copy{(' as of ' + esc(when)) if when else ''}" \
            " (the live dashboard needs the kernel)</div>"
    return (f"<div class='arnb-snapshot'><style>{_SNAPSHOT_CSS}</style>{stamp}{status}"
            f"<div style='display:flex;flex-flow:row wrap'><div style='{half}'>{diff}</div>"
            f"<div style='{half}'>{curves}</div><div style='{half}'>{progress}</div>"
            f"<div style='{half}'>{table}</div></div></div>")


def lineage_html(steps: "list[plotdata.Lineage]", metric: str = "metric") -> str:
    """The kept chain as a small tree: each kept state under the one it was built on, its step (the change of
    the metric and the effect in σ) and what was tried from it, by outcome (:func:`.plotdata.lineage`)."""
    if not steps:
        return "<div class='arnb-lineage' style='color:grey'>no kept state yet</div>"
    out = []
    for depth, s in enumerate(steps):
        pad = 12 * min(depth, 8)  # a long chain stays on screen
        value = f"{s.metric:.6g}" if s.metric is not None else "-"
        step = ""
        if s.delta is not None:
            sigma = f", {s.effect_sigma:+.1f}σ" if s.effect_sigma is not None else ""
            step = f" <span style='color:#2ca02c'>({s.delta:+.4g}{sigma})</span>"
        n = sum(s.tried.values())
        tried = (f"tried from here: {n} (" + ", ".join(f"{k} {esc(st)}" for st, k in
                                                        sorted(s.tried.items(), key=lambda x: -x[1])) + ")"
                 if n else "nothing tried from here yet")
        glyph = "└ " if depth else ""
        out.append(f"<div style='padding-left:{pad}px;white-space:nowrap' data-number='{s.number}'>{glyph}"
                   f"<b>#{s.number}</b> {esc(s.description[:60])} · {esc(metric)} {value}{step}"
                   f"<div style='color:#666;padding-left:{14 if depth else 0}px'>{tried}</div></div>")
    return (f"<div class='arnb-lineage' style='font-size:12px;line-height:1.4;overflow:auto'>"
            f"<div style='font-weight:600;margin:4px 0'>lineage: the kept chain, and what was tried from each "
            f"state</div>{''.join(out)}</div>")
