"""Drawing: matplotlib figures from the pure data in :mod:`.plots`, as SVG text or PNG bytes.

Figures are made with :class:`matplotlib.figure.Figure` directly (no pyplot), so drawing from the loop's thread
touches no global state and never pops up an extra inline plot. Artists carry ids (``gid``) that survive into the
SVG (``curve-running``, ``progress-kept``, ...), which is what the browser test looks for.
"""
from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING, Sequence

from .plotdata import (COLORS, HOLDOUT_COLOR, Cumulative, Curve, CurveView, Frontier, resource_series,
                       status_color, viewed, y_limits)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

ROLE_STYLE = {"baseline": dict(color="#7f7f7f", lw=1.2, ls="--"), "best": dict(color=COLORS["keep"], lw=1.4),
              "running": dict(color=COLORS["running"], lw=1.8), "last": dict(color=COLORS["proposed"], lw=1.6),
              "repeat": dict(color=COLORS["running"], lw=1.3, ls=":"),
              "kept": dict(lw=1.2, alpha=0.85)}


def _figure(w: float, h: float, rows: int = 1, ratios: Sequence[int] | None = None) -> tuple["Figure", list]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, gridspec_kw={"height_ratios": ratios} if ratios else None,
                        squeeze=False)[:, 0]
    for ax in axes:
        ax.grid(True, alpha=0.25)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, list(axes)


def progress_figure(f: Frontier, metric: str = "metric", maximize: bool = False, title: str = "",
                    size: tuple[float, float] = (7.0, 3.2)) -> "Figure":
    """Metric against experiment number: discarded grey, kept green and labelled, running best as a step line,
    the best's holdout bpb as a dashed one (verify = "model"), and (with a noise floor) the band around the best
    that one new run has to leave to count."""
    fig, (ax,) = _figure(*size)
    if f.band_lo:
        # The band continues half a step past the last experiment, so its latest width is visible.
        xs = list(f.best_x) + [f.best_x[-1] + 0.5]
        ax.fill_between(xs, f.band_lo + f.band_lo[-1:], f.band_hi + f.band_hi[-1:], step="post",
                        color=COLORS["keep"], alpha=0.12, lw=0, label="within the noise", gid="progress-threshold",
                        zorder=0)
    if f.discarded_x:
        ax.scatter(f.discarded_x, f.discarded_y, s=14, color=COLORS["discard"], alpha=0.7, label="discarded",
                   gid="progress-discarded", zorder=2)
    if f.kept_x:
        ax.scatter(f.kept_x, f.kept_y, s=30, color=COLORS["keep"], edgecolor="black", lw=0.4, label="kept",
                   gid="progress-kept", zorder=3)
        # Labels in the right half of the chart grow leftwards, so none runs off the figure and gets cut.
        mid = (min(f.kept_x + f.discarded_x) + max(f.kept_x + f.discarded_x)) / 2
        for x, y in zip(f.kept_x, f.kept_y):
            left = x > mid
            ax.annotate(f.labels.get(x, "")[:32], (x, y), xytext=(-4 if left else 4, 4), textcoords="offset points",
                        fontsize=7, color="#2a5d2a", rotation=20, ha="right" if left else "left")
    if f.best_x:
        ax.step(f.best_x, f.best_y, where="post", color=COLORS["keep"], lw=1.5, alpha=0.8, label="running best",
                gid="progress-best", zorder=1)
    if f.holdout_x:  # the best's holdout bpb: where it does not follow the best, kept changes fit val only
        ax.step(f.holdout_x, f.holdout_y, where="post", color=HOLDOUT_COLOR, lw=1.2, ls="--", alpha=0.9,
                label="best's holdout", gid="progress-holdout", zorder=1)
    if f.failed_x:
        lo = ax.get_ylim()[0] if (f.kept_x or f.discarded_x) else 0.0
        ax.scatter(f.failed_x, [lo] * len(f.failed_x), marker="x", s=22, color=COLORS["crash"], label="failed",
                   gid="progress-failed", zorder=2, clip_on=False)
    if f.pruned_x:
        lo = ax.get_ylim()[0] if (f.kept_x or f.discarded_x) else 0.0
        ax.scatter(f.pruned_x, [lo] * len(f.pruned_x), marker="v", s=22, color=COLORS["pruned"], label="pruned",
                   gid="progress-pruned", zorder=2, clip_on=False)
    if f.interrupted_x:  # stopped, not failed: grey, apart from the red failures
        lo = ax.get_ylim()[0] if (f.kept_x or f.discarded_x) else 0.0
        ax.scatter(f.interrupted_x, [lo] * len(f.interrupted_x), marker="s", s=14, color="#b0b0b0",
                   label="interrupted", gid="progress-interrupted", zorder=2, clip_on=False)
    if f.empty:
        ax.text(0.5, 0.5, "no experiments yet", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xlabel("experiment")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    xs = f.kept_x + f.discarded_x + f.failed_x + f.pruned_x + f.interrupted_x
    if xs:  # whole experiments, with room for the last one's band (one point alone would get a ±0.05 axis)
        ax.set_xlim(min(xs) - 0.5, max(xs) + 0.75)
        if max(xs) - min(xs) < 10:  # few experiments: one tick each (the locator falls back to fractions)
            ax.set_xticks(range(min(xs), max(xs) + 1))
    ax.set_ylabel(f"{metric} ({'higher' if maximize else 'lower'} is better)")
    ax.set_title(title or "progress", fontsize=10, loc="left")
    if not f.empty:
        ax.legend(fontsize=7, loc="upper right" if not maximize else "lower right", frameon=False)
    return fig


def curves_figure(curves: Sequence[Curve], xmax: float, resources: dict[str, tuple[list[float], list[float]]]
                  | None = None, title: str = "", size: tuple[float, float] = (7.0, 3.6),
                  view: CurveView | None = None) -> "Figure":
    """Loss against elapsed seconds (x fixed to ``[0, xmax]``); below it, resource use in percent if given (and x
    is seconds). ``view``: x as steps or the budget's share, a log loss axis, smoothing."""
    view = view or CurveView()
    curves, xmax = viewed(curves, view, float(xmax))
    resources = resources if view.x == "seconds" else None
    rows = 2 if resources else 1
    fig, axes = _figure(size[0], size[1] + (1.0 if resources else 0.0), rows, [3, 1] if resources else None)
    ax = axes[0]
    for c in curves:
        if not c.x:
            continue
        style = dict(ROLE_STYLE.get(c.role, {}))
        if c.color:
            style["color"] = c.color
        ax.plot(c.x, c.y, label=f"{c.label} ({len(c)} pts)", gid=f"curve-{c.role}", **style)
        if c.stopped:  # where the loop stopped a pruned run
            ax.scatter(c.x[-1:], c.y[-1:], marker="x", s=40, color=style.get("color", COLORS["pruned"]),
                       gid="curve-stopped", zorder=3)
    ax.set_xlim(0, max([xmax] + [c.xmax for c in curves]))
    lim = y_limits(curves)
    if lim:
        ax.set_ylim(*lim)
    else:
        ax.text(0.5, 0.5, "waiting for progress lines", ha="center", va="center", transform=ax.transAxes,
                color="grey")
    if view.log:
        ax.set_yscale("log")
    ax.set_ylabel("loss" + (" (log scale)" if view.log else "") + (f", smoothed {view.smooth:g}" if view.smooth else ""))
    ax.set_title(title or "training curves", fontsize=10, loc="left")
    if any(c.x for c in curves):
        ax.legend(fontsize=7, loc="upper right", frameon=False)
    if resources:
        rax = axes[1]
        for name, (xs, ys) in resource_series(resources).items():
            rax.plot(xs, ys, lw=1.0, label=name, gid=f"resource-{name.split()[0].lower()}")
        rax.set_ylim(0, 100)
        rax.set_ylabel("%")
        rax.legend(fontsize=7, loc="upper left", frameon=False, ncol=4)
        rax.set_xlabel(view.xlabel)
    else:
        ax.set_xlabel(view.xlabel)
    return fig


def cost_figure(hours: list[float], cost: list[float], size: tuple[float, float] = (7.0, 2.6)) -> "Figure":
    """Cumulative agent cost against hours into the run."""
    fig, (ax,) = _figure(*size)
    ax.step(hours, cost, where="post", color="#9467bd", gid="cost")
    ax.set_xlabel("hours since the first experiment")
    ax.set_ylabel("agent cost (USD)")
    ax.set_title("cost over time", fontsize=10, loc="left")
    return fig


def effects_figure(effects: "pd.DataFrame", size: tuple[float, float] = (7.0, 2.8)) -> "Figure":
    """Each experiment's effect in units of σ (bars in the outcome's colour) and its keep threshold (a tick)."""
    fig, (ax,) = _figure(*size)
    if len(effects) and effects["effect_sigma"].notna().any():
        df = effects[effects["effect_sigma"].notna()]
        ax.bar(df["number"], df["effect_sigma"], color=[status_color(s) for s in df["status"]], width=0.7,
               gid="effects-bars")
        t = df[df["threshold_sigma"].notna()]
        if len(t):
            ax.scatter(t["number"], t["threshold_sigma"], marker="_", s=160, color="black", lw=1.5,
                       label="keep threshold", gid="effects-threshold", zorder=3)
            ax.legend(fontsize=7, loc="upper right", frameon=False)
        ax.axhline(0, color="black", lw=0.6)
        from matplotlib.ticker import MaxNLocator
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.text(0.5, 0.5, "no effects in units of σ (no noise floor measured)", ha="center", va="center",
                transform=ax.transAxes, color="grey")
    ax.set_xlabel("experiment")
    ax.set_ylabel("effect (σ, > 0 better)")
    ax.set_title("effects in units of the noise floor", fontsize=10, loc="left")
    return fig


def cumulative_figure(c: Cumulative, metric: str = "metric", size: tuple[float, float] = (7.0, 2.8)) -> "Figure":
    """The running best's improvement over the baseline, with its ±k·σ band."""
    fig, (ax,) = _figure(*size)
    if not c.empty:
        xs = c.x + [c.x[-1] + 0.5]
        if c.sigma:
            ax.fill_between(xs, c.low + c.low[-1:], c.high + c.high[-1:], step="post", color=COLORS["keep"],
                            alpha=0.18, lw=0, label=f"±{c.k:g}σ of the difference", gid="cumulative-band")
        ax.step(xs, c.improvement + c.improvement[-1:], where="post", color=COLORS["keep"], lw=1.6,
                label="improvement over the baseline", gid="cumulative-line")
        ax.axhline(0, color="black", lw=0.6)
        ax.legend(fontsize=7, loc="upper left", frameon=False)
        from matplotlib.ticker import MaxNLocator
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.text(0.5, 0.5, "no baseline yet", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xlabel("experiment")
    ax.set_ylabel(f"{metric} gained (> 0 better)")
    ax.set_title("cumulative improvement", fontsize=10, loc="left")
    return fig


def to_svg(fig: "Figure") -> str:
    """The figure as inline SVG markup (text kept as text; ids stable between redraws)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "autoresearch_nb"}):
        fig.savefig(buf, format="svg")
    text = buf.getvalue()
    text = text[max(text.find("<svg"), 0):]
    # Scale with the container (the viewBox keeps the aspect ratio), so a narrow column shows the whole figure.
    head, _, rest = text.partition(">")
    head = re.sub(r'\s(width|height)="[^"]*"', "", head) + ' style="width:100%;height:auto"'
    return head + ">" + rest


def to_png(fig: "Figure", dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
