"""The static report: images and tables that stay readable in a saved notebook (papermill keeps no widget state),
and a read-only view of any run for the analysis notebook, safe while another process is running it.

>>> view = RunView.open(".", "nov27")           # doctest: +SKIP
>>> report(view)                  # progress chart, curves, table, best diff, tuner views  # doctest: +SKIP
>>> effects_chart(view); cumulative_chart(view)  # against the noise floor  # doctest: +SKIP
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from ..console import counted
from ..records import Status
from . import draw, plotdata
from .html import diff_html, lineage_html, table_html

if TYPE_CHECKING:
    import pandas as pd


def _show(*objs: Any) -> None:
    from IPython.display import display

    display(*objs)


def _png(fig: Any) -> Any:
    from IPython.display import Image

    return Image(data=draw.to_png(fig))


def _sigma(run: Any) -> float | None:
    return (run.noise or {}).get("sigma")


def floor(run: Any) -> plotdata.Floor:
    """The run's noise floor and keep threshold (for one new run against the current best)."""
    best = run.best
    return plotdata.floor(run.noise, float(run.config.noise_k), max(len(best.runs), 1) if best is not None else 1)


def progress_chart(run: Any, fmt: str = "png") -> Any:
    """Karpathy's progress chart of ``run`` (a Loop or a RunView) as an IPython Image (or SVG text), with the
    noise band around the running best when the floor was measured."""
    cfg = run.config
    f = plotdata.frontier(run.experiments, cfg.maximize, _sigma(run), float(cfg.noise_k))
    fig = draw.progress_figure(f, cfg.metric, cfg.maximize, f"progress · run {run.tag}")
    return draw.to_svg(fig) if fmt == "svg" else _png(fig)


def effects(run: Any) -> "pd.DataFrame":
    """Each kept or discarded experiment's effect in units of the noise floor, beside its threshold."""
    return plotdata.effect_sizes(run.results, _sigma(run), run.config.maximize)


def effects_chart(run: Any, fmt: str = "png") -> Any:
    """Effects in units of σ as bars (the outcome's colour), each experiment's keep threshold as a tick."""
    fig = draw.effects_figure(effects(run))
    return draw.to_svg(fig) if fmt == "svg" else _png(fig)


def cumulative_chart(run: Any, fmt: str = "png") -> Any:
    """The best's improvement over the baseline after each experiment, with a ±k·σ band (k = noise_k, or 2)."""
    cfg = run.config
    c = plotdata.cumulative(run.experiments, _sigma(run), float(cfg.noise_k) or 2.0, cfg.maximize)
    fig = draw.cumulative_figure(c, cfg.metric)
    return draw.to_svg(fig) if fmt == "svg" else _png(fig)


def curves_chart(run: Any, numbers: Iterable[int] | None = None, fmt: str = "png",
                 view: plotdata.CurveView | None = None) -> Any:
    """Training curves of ``numbers`` overlaid (default: the baseline and every kept experiment); ``view``: x as
    seconds, steps or the budget's share, a log loss axis, smoothing (``plotdata.CurveView(x="steps", log=True)``)."""
    exps = {e.number: e for e in run.experiments}
    if numbers is None:
        numbers = [n for n, e in exps.items() if e.status == Status.KEEP]
    curves = []
    for n in numbers:
        e = exps.get(n)
        role = "baseline" if e is not None and e.description == "baseline" else "kept"
        label = f"#{n} {(e.description if e else '')[:28]}"
        curves.append(plotdata.curve(run.curve(n), run.config.time_budget_s, label, role,
                                     stopped=e is not None and e.status == Status.PRUNED))
    fig = draw.curves_figure(curves, run.config.time_budget_s, title=f"training curves · run {run.tag}", view=view)
    return draw.to_svg(fig) if fmt == "svg" else _png(fig)


def cost_chart(run: Any) -> Any:
    """Cumulative agent cost over time; a run that cost nothing (tuner, queue) gets the words "no API cost"."""
    hours, cost = plotdata.cost_over_time(run.results)
    if not any(cost):
        from IPython.display import Markdown

        return Markdown("no API cost: this run's agent spent nothing")
    return _png(draw.cost_figure(hours, cost))


def lineage(run: Any) -> Any:
    """The kept chain as a small tree, with each step's change and σ and what was tried from each kept state,
    as static HTML."""
    from IPython.display import HTML

    return HTML(lineage_html(plotdata.lineage(run.results), run.config.metric))


def table(run: Any, limit: int | None = 100) -> Any:
    """The experiment table as static HTML (newest first, best highlighted)."""
    from IPython.display import HTML

    return HTML(table_html(run.results, run.config.metric, limit or 10**9))


def diff(run: Any, number: int) -> Any:
    """The syntax-coloured diff of experiment ``number`` against its parent, as static HTML."""
    from IPython.display import HTML

    e = run.experiment(number) if hasattr(run, "experiment") else run.store.get(run.tag, number)
    metric = f"{e.metric:.6g}" if e.metric is not None else "-"
    return HTML(diff_html(e.diff, f"#{e.number} {e.description}",
                          f"{e.status.value} · {run.config.metric} {metric} · {e.reason}"))


def summary(run: Any, markdown: bool = True) -> str:
    """One paragraph: experiments, keep rate, best and its gain over the baseline, the noise rule, cost.

    Plain text with ``markdown=False`` (for ``print``); otherwise Markdown, with the agent's words escaped once
    for it (``DEPTH 4 -> 3`` stays readable in both)."""
    df = run.results
    rate = plotdata.keep_rate(df) if len(df) else None
    best = run.best
    base = next((e for e in run.experiments if e.description == "baseline" and e.metric is not None), None)
    f = floor(run)
    b = "**" if markdown else ""
    parts = [f"run {b}{run.tag}{b}: {counted(len(df), 'experiment')}"]
    if rate is not None:
        parts.append(f"keep rate {rate:.0%}")
    if best is not None:
        gain = ""
        if base is not None:
            better = (best.metric - base.metric) if run.config.maximize else (base.metric - best.metric)
            in_sigma = f", {better / f.sigma:+.1f}σ" if f.sigma and best.number != base.number else ""
            gain = f" ({best.metric - base.metric:+.6g} against the baseline{in_sigma})"
        desc = _markdown_text(best.description) if markdown else best.description
        parts.append(f"best {run.config.metric} {b}{best.metric:.6g}{b} (#{best.number}: {desc}){gain}")
    parts.append(f"{plotdata.floor_words(f)} ({plotdata.floor_text(f)})")
    cost = float(df["cost_usd"].fillna(0).sum()) if "cost_usd" in df else 0.0
    if cost:
        parts.append(f"agent cost ${cost:.2f}")
    return ", ".join(parts) + "."


def _markdown_text(text: str) -> str:
    """Text shown literally by a Markdown renderer: HTML's specials and Markdown's emphasis marks escaped."""
    out = text.replace("&", "&amp;").replace("<", "&lt;")
    for ch in "\\`*_[]#":
        out = out.replace(ch, "\\" + ch)
    return out


def tuner_views(run: Any) -> list[Any]:
    """A tuner run's Optuna views as static images under a heading (optimization history, slices, parameter
    importance once enough trials completed); nothing for other runs."""
    from ..study import tuner_figures

    figures = tuner_figures(run)
    if not figures:
        return []
    from IPython.display import Markdown

    words = {"history": "the optimization history", "slice": "the metric against each constant",
             "parallel": "each trial across the constants (parallel coordinates)",
             "importances": "parameter importance"}
    head = Markdown("**The tuner's views (Optuna)**: " + ", ".join(words[k] for k in figures) + ".")
    return [head, *(_png(fig) for fig in figures.values())]


def report(run: Any, display: bool = True, curves: plotdata.CurveView | None = None) -> list[Any]:
    """Summary, progress chart, the lineage (the kept chain and what was tried from each state), curves of the
    kept experiments, the table, the best diff and, for a tuner run,
    Optuna's views, as static output. ``curves``: how the curves are drawn (:class:`.plotdata.CurveView`: x as
    seconds, steps or the budget's share, a log loss axis, smoothing)."""
    import matplotlib
    from IPython.display import Markdown

    with matplotlib.rc_context():  # whatever a view sets (Optuna's ggplot) ends with the report
        out: list[Any] = [Markdown(summary(run)), progress_chart(run), lineage(run), curves_chart(run, view=curves),
                          table(run)]
        best = run.best
        if best is not None and best.diff:
            out.append(diff(run, best.number))
        out += tuner_views(run)
    if display:
        _show(*out)
    return out
