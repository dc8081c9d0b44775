"""Drawing: matplotlib figures from the pure data in :mod:`.plots`, as SVG text or PNG bytes.

Figures are made with :class:`matplotlib.figure.Figure` directly (no pyplot), so drawing from the loop's thread
touches no global state and never pops up an extra inline plot. Artists carry ids (``gid``) that survive into the
SVG (``curve-running``, ``progress-kept``, ...), which is what the browser test looks for.
"""
from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING, Sequence

from .plots import COLORS, Curve, Frontier, y_limits

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ROLE_STYLE = {"baseline": dict(color="#7f7f7f", lw=1.2, ls="--"), "best": dict(color=COLORS["keep"], lw=1.4),
              "running": dict(color=COLORS["running"], lw=1.8), "last": dict(color=COLORS["proposed"], lw=1.6),
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
    """Metric against experiment number: discarded grey, kept green and labelled, running best as a step line."""
    fig, (ax,) = _figure(*size)
    if f.discarded_x:
        ax.scatter(f.discarded_x, f.discarded_y, s=14, color=COLORS["discard"], alpha=0.7, label="discarded",
                   gid="progress-discarded", zorder=2)
    if f.kept_x:
        ax.scatter(f.kept_x, f.kept_y, s=30, color=COLORS["keep"], edgecolor="black", lw=0.4, label="kept",
                   gid="progress-kept", zorder=3)
        for x, y in zip(f.kept_x, f.kept_y):
            ax.annotate(f.labels.get(x, "")[:32], (x, y), xytext=(4, 4), textcoords="offset points",
                        fontsize=7, color="#2a5d2a", rotation=20)
    if f.best_x:
        ax.step(f.best_x, f.best_y, where="post", color=COLORS["keep"], lw=1.5, alpha=0.8, label="running best",
                gid="progress-best", zorder=1)
    if f.failed_x:
        lo = ax.get_ylim()[0] if (f.kept_x or f.discarded_x) else 0.0
        ax.scatter(f.failed_x, [lo] * len(f.failed_x), marker="x", s=22, color=COLORS["crash"], label="failed",
                   gid="progress-failed", zorder=2, clip_on=False)
    if f.empty:
        ax.text(0.5, 0.5, "no experiments yet", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xlabel("experiment")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{metric} ({'higher' if maximize else 'lower'} is better)")
    ax.set_title(title or "progress", fontsize=10, loc="left")
    if not f.empty:
        ax.legend(fontsize=7, loc="upper right" if not maximize else "lower right", frameon=False)
    return fig


def curves_figure(curves: Sequence[Curve], xmax: float, resources: dict[str, tuple[list[float], list[float]]]
                  | None = None, title: str = "", size: tuple[float, float] = (7.0, 3.6)) -> "Figure":
    """Loss against elapsed seconds (x fixed to ``[0, xmax]``); below it, resource use in percent if given."""
    rows = 2 if resources else 1
    fig, axes = _figure(size[0], size[1] + (1.0 if resources else 0.0), rows, [3, 1] if resources else None)
    ax = axes[0]
    for c in curves:
        if not c.x:
            continue
        style = ROLE_STYLE.get(c.role, {})
        ax.plot(c.x, c.y, label=f"{c.label} ({len(c)} pts)", gid=f"curve-{c.role}", **style)
    ax.set_xlim(0, max([xmax] + [c.xmax for c in curves]))
    lim = y_limits(curves)
    if lim:
        ax.set_ylim(*lim)
    else:
        ax.text(0.5, 0.5, "waiting for progress lines", ha="center", va="center", transform=ax.transAxes,
                color="grey")
    ax.set_ylabel("loss")
    ax.set_title(title or "training curves", fontsize=10, loc="left")
    if any(c.x for c in curves):
        ax.legend(fontsize=7, loc="upper right", frameon=False)
    if resources:
        rax = axes[1]
        for name, (xs, ys) in resources.items():
            rax.plot(xs, ys, lw=1.0, label=name, gid=f"resource-{name.split()[0].lower()}")
        rax.set_ylim(0, 100)
        rax.set_ylabel("%")
        rax.legend(fontsize=7, loc="upper left", frameon=False, ncol=4)
        rax.set_xlabel("seconds of training")
    else:
        ax.set_xlabel("seconds of training")
    return fig


def cost_figure(hours: list[float], cost: list[float], size: tuple[float, float] = (7.0, 2.6)) -> "Figure":
    """Cumulative agent cost against hours into the run."""
    fig, (ax,) = _figure(*size)
    ax.step(hours, cost, where="post", color="#9467bd", gid="cost")
    ax.set_xlabel("hours since the first experiment")
    ax.set_ylabel("agent cost (USD)")
    ax.set_title("cost over time", fontsize=10, loc="left")
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
