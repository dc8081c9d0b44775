"""Static output: images and tables that stay readable in a saved notebook (papermill keeps no widget state),
and a read-only view of any run for the analysis notebook, safe while another process is running it.

>>> view = RunView.open(".", "nov27")           # doctest: +SKIP
>>> report(view)                                # progress chart, curves, table, best diff  # doctest: +SKIP
>>> effects_chart(view); cumulative_chart(view)  # against the noise floor  # doctest: +SKIP
"""
from __future__ import annotations

import html
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from ..config import Config
from ..records import CurvePoint, Experiment, Status
from . import draw, plots

if TYPE_CHECKING:
    import pandas as pd


class RunView:
    """Read-only access to one run's experiments, curve points and config (no lock taken; nothing written)."""

    def __init__(self, repo_root: Path, tag: str, store: Any, config: Config) -> None:
        self.repo_root = repo_root
        self.tag = tag
        self.store = store
        self.config = config

    @classmethod
    def open(cls, repo: str | Path = ".", tag: str | None = None) -> "RunView":
        """Open run ``tag`` of ``repo``; without a tag, the most recently created run."""
        from ..errors import AutoresearchError
        from ..git import find_repo
        from ..loop import store_path
        from ..store import Store

        root = find_repo(repo)
        path = store_path(root)
        if not path.exists():
            raise AutoresearchError(f"no experiment store in {root} yet (expected {path})")
        store = Store(path)
        runs = store.runs()
        if tag is None:
            if not runs:
                store.close()
                raise AutoresearchError(f"no runs in {root} yet")
            tag = runs[-1]["tag"]
        run = store.get_run(tag)
        if run is None:
            store.close()
            raise AutoresearchError(f"no run tagged {tag!r} in {root}; runs: "
                                    f"{', '.join(r['tag'] for r in runs) or 'none'}")
        names = {f.name for f in fields(Config)}
        stored = {k: (tuple(v) if isinstance(v, list) else v) for k, v in run["config"].items() if k in names}
        return cls(root, tag, store, Config(**stored))

    @property
    def experiments(self) -> list[Experiment]:
        return self.store.experiments(self.tag)

    @property
    def results(self) -> "pd.DataFrame":
        from .. import results as _results

        return _results.dataframe(self.experiments, self.config.metric, self.config.maximize, self.config.record)

    @property
    def best(self) -> Experiment | None:
        kept = [e for e in self.experiments if e.status == Status.KEEP and e.metric is not None]
        if not kept:
            return None
        return (max if self.config.maximize else min)(kept, key=lambda e: e.metric)

    @property
    def noise(self) -> dict[str, Any] | None:
        """The run's noise floor (as ``loop.noise``): ``sigma``, ``mad_sigma``, ``df``, ... or None."""
        run = self.store.get_run(self.tag)
        return ((run or {}).get("state") or {}).get("noise")

    def curve(self, number: int) -> list[CurvePoint]:
        return [p for _, p in self.store.points(self.tag, number)]

    def experiment(self, number: int) -> Experiment:
        exp = self.store.get(self.tag, number)
        if exp is None:
            raise KeyError(f"run {self.tag!r} has no experiment {number}")
        return exp

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "RunView":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _show(*objs: Any) -> None:
    from IPython.display import display

    display(*objs)


def _png(fig: Any) -> Any:
    from IPython.display import Image

    return Image(data=draw.to_png(fig))


def _sigma(run: Any) -> float | None:
    return (run.noise or {}).get("sigma")


def floor(run: Any) -> plots.Floor:
    """The run's noise floor and keep threshold (for one new run against the current best)."""
    best = run.best
    return plots.floor(run.noise, float(run.config.noise_k), max(len(best.runs), 1) if best is not None else 1)


def progress_chart(run: Any, fmt: str = "png") -> Any:
    """Karpathy's progress chart of ``run`` (a Loop or a RunView) as an IPython Image (or SVG text), with the
    noise band around the running best when the floor was measured."""
    cfg = run.config
    f = plots.frontier(run.experiments, cfg.maximize, _sigma(run), float(cfg.noise_k))
    fig = draw.progress_figure(f, cfg.metric, cfg.maximize, f"progress · run {run.tag}")
    return draw.to_svg(fig) if fmt == "svg" else _png(fig)


def effects(run: Any) -> "pd.DataFrame":
    """Each kept or discarded experiment's effect in units of the noise floor, beside its threshold."""
    return plots.effect_sizes(run.results, _sigma(run), run.config.maximize)


def effects_chart(run: Any, fmt: str = "png") -> Any:
    """Effects in units of σ as bars (the outcome's colour), each experiment's keep threshold as a tick."""
    fig = draw.effects_figure(effects(run))
    return draw.to_svg(fig) if fmt == "svg" else _png(fig)


def cumulative_chart(run: Any, fmt: str = "png") -> Any:
    """The best's improvement over the baseline after each experiment, with a ±k·σ band (k = noise_k, or 2)."""
    cfg = run.config
    c = plots.cumulative(run.experiments, _sigma(run), float(cfg.noise_k) or 2.0, cfg.maximize)
    fig = draw.cumulative_figure(c, cfg.metric)
    return draw.to_svg(fig) if fmt == "svg" else _png(fig)


def curves_chart(run: Any, numbers: Iterable[int] | None = None, fmt: str = "png") -> Any:
    """Training curves of ``numbers`` overlaid (default: the baseline and every kept experiment)."""
    exps = {e.number: e for e in run.experiments}
    if numbers is None:
        numbers = [n for n, e in exps.items() if e.status == Status.KEEP]
    curves = []
    for n in numbers:
        e = exps.get(n)
        role = "baseline" if e is not None and e.description == "baseline" else "kept"
        label = f"#{n} {(e.description if e else '')[:28]}"
        curves.append(plots.curve(run.curve(n), run.config.time_budget_s, label, role))
    fig = draw.curves_figure(curves, run.config.time_budget_s, title=f"training curves · run {run.tag}")
    return draw.to_svg(fig) if fmt == "svg" else _png(fig)


def cost_chart(run: Any) -> Any:
    hours, cost = plots.cost_over_time(run.results)
    return _png(draw.cost_figure(hours, cost))


def table(run: Any, limit: int | None = 100) -> Any:
    """The experiment table as static HTML (newest first, best highlighted)."""
    from IPython.display import HTML

    from .widgets import table_html
    return HTML(table_html(run.results, run.config.metric, limit or 10**9))


def diff(run: Any, number: int) -> Any:
    """The syntax-coloured diff of experiment ``number`` against its parent, as static HTML."""
    from IPython.display import HTML

    from .widgets import diff_html
    e = run.experiment(number) if hasattr(run, "experiment") else run.store.get(run.tag, number)
    metric = f"{e.metric:.6g}" if e.metric is not None else "-"
    return HTML(diff_html(e.diff, f"#{e.number} {e.description}",
                          f"{e.status.value} · {run.config.metric} {metric} · {e.reason}"))


def summary(run: Any) -> str:
    """One paragraph: experiments, keep rate, best and its gain over the baseline, the noise floor, cost."""
    df = run.results
    rate = plots.keep_rate(df) if len(df) else None
    best = run.best
    base = next((e for e in run.experiments if e.description == "baseline" and e.metric is not None), None)
    f = floor(run)
    parts = [f"run **{run.tag}**: {len(df)} experiments"]
    if rate is not None:
        parts.append(f"keep rate {rate:.0%}")
    if best is not None:
        gain = ""
        if base is not None:
            better = (best.metric - base.metric) if run.config.maximize else (base.metric - best.metric)
            in_sigma = f", {better / f.sigma:+.1f}σ" if f.sigma and best.number != base.number else ""
            gain = f" ({best.metric - base.metric:+.6g} against the baseline{in_sigma})"
        parts.append(f"best {run.config.metric} **{best.metric:.6g}** (#{best.number}: "
                     f"{html.escape(best.description)}){gain}")
    parts.append(plots.floor_text(f))
    cost = float(df["cost_usd"].fillna(0).sum()) if "cost_usd" in df else 0.0
    if cost:
        parts.append(f"agent cost ${cost:.2f}")
    return ", ".join(parts) + "."


def report(run: Any, display: bool = True) -> list[Any]:
    """Summary, progress chart, curves of the kept experiments, the table and the best diff, as static output."""
    from IPython.display import Markdown

    out: list[Any] = [Markdown(summary(run)), progress_chart(run), curves_chart(run), table(run)]
    best = run.best
    if best is not None and best.diff:
        out.append(diff(run, best.number))
    if display:
        _show(*out)
    return out
