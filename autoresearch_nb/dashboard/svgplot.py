"""The live training curves as hand-written SVG: a few milliseconds a redraw where matplotlib's SVG backend takes
0.1-0.2 s of CPU, which a redraw every second would take from the training run (benchmarks/dashboard_cost.py).

Same look and the same element ids as :func:`.draw.curves_figure` (``curve-<role>`` groups holding a ``path``,
``resource-<name>``), x fixed to the time budget, y from :func:`.plotdata.y_limits`. The static report keeps
matplotlib.

>>> svg = curves_svg([], 300.0); "waiting for progress lines" in svg
True
"""
from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace

from .html import esc
from .plotdata import COLORS, Curve, CurveView, resource_series, viewed, y_limits

_STYLE = {"baseline": ("#7f7f7f", 1.2, "5,3"), "best": (COLORS["keep"], 1.4, ""),
          "running": (COLORS["running"], 1.8, ""), "last": (COLORS["proposed"], 1.6, ""),
          "repeat": (COLORS["running"], 1.3, "1.5,2.5"), "kept": ("#8c564b", 1.2, ""),
          "compare": ("#e6550d", 1.3, "6,2")}  # chosen to compare: dashed, so they read apart from live runs
_RES_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
W, LEFT, RIGHT, TOP = 504.0, 52.0, 10.0, 22.0
# A clip path's id is global to the page: each drawing gets its own, so a hidden copy never clips a live one.
_CLIP_IDS = itertools.count()
_RUN = secrets.token_hex(3)   # and two kernels' drawings on one page differ too


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi].

    >>> nice_ticks(0, 300)
    [0, 100, 200, 300]
    """
    span = hi - lo
    if not math.isfinite(span) or span <= 0:
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _panel(x0: float, x1: float, y0: float, y1: float, top: float, height: float, ylabel: str,
           xlabel: str, log: bool = False) -> tuple[list[str], Callable, Callable]:
    """Axes with ticks and a grid; returns the SVG pieces and the data -> pixel maps."""
    right = W - RIGHT

    def px(x: float) -> float:
        return LEFT + (x - x0) / ((x1 - x0) or 1.0) * (right - LEFT)

    def py(y: float) -> float:
        return top + height - (y - y0) / ((y1 - y0) or 1.0) * height

    out = [f"<rect x='{LEFT}' y='{top}' width='{right - LEFT}' height='{height}' fill='white' stroke='none'/>"]
    # on a log axis (y holds log10 of the loss) the ticks sit at round losses, not round logarithms
    yticks = [math.log10(t) for t in nice_ticks(10 ** y0, 10 ** y1) if t > 0] if log else nice_ticks(y0, y1)
    for t in yticks:
        y = py(t)
        out.append(f"<line x1='{LEFT}' x2='{right}' y1='{y:.1f}' y2='{y:.1f}' stroke='#e4e4e4'/>"
                   f"<text x='{LEFT - 4}' y='{y + 3:.1f}' text-anchor='end'>{_fmt(10 ** t if log else t)}</text>")
    for t in nice_ticks(x0, x1, 6):
        x = px(t)
        out.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top}' y2='{top + height}' stroke='#e4e4e4'/>")
        if xlabel:
            out.append(f"<text x='{x:.1f}' y='{top + height + 12}' text-anchor='middle'>{_fmt(t)}</text>")
    out.append(f"<path d='M{LEFT},{top} V{top + height} H{right}' stroke='#333' fill='none'/>")
    out.append(f"<text transform='translate(12,{top + height / 2:.1f}) rotate(-90)' text-anchor='middle'>"
               f"{esc(ylabel)}</text>")
    if xlabel:
        out.append(f"<text x='{(LEFT + right) / 2:.1f}' y='{top + height + 26}' text-anchor='middle'>"
                   f"{esc(xlabel)}</text>")
    return out, px, py


def _path(xs: Sequence[float], ys: Sequence[float], px: Callable, py: Callable) -> str:
    return "M" + " L".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys))


def _log10(curves: Sequence[Curve]) -> list[Curve]:
    """The curves with log10 of the loss (points at or below zero left out: they have no place on a log axis)."""
    out = []
    for c in curves:
        keep = [(x, math.log10(y)) for x, y in zip(c.x, c.y) if y > 0]
        out.append(replace(c, x=[x for x, _ in keep], y=[y for _, y in keep]))
    return out


def curves_svg(curves: Sequence[Curve], xmax: float, resources: dict[str, tuple[list[float], list[float]]]
               | None = None, title: str = "", view: CurveView | None = None) -> str:
    """Loss against elapsed seconds, x fixed to ``[0, xmax]``; resource use in percent below, if given (and x is
    seconds). ``view``: x as steps or the budget's share, a log loss axis, smoothing (:class:`.plotdata.CurveView`)."""
    view = view or CurveView()
    curves, x1 = viewed(curves, view, float(xmax))
    if view.log:
        curves = _log10(curves)
    resources = resources if view.x == "seconds" else None
    height = 230.0
    res_h = 70.0 if resources else 0.0
    total_h = TOP + height + (res_h + 20 if resources else 0) + 34
    lim = y_limits(curves) or (0.0, 1.0)
    ylabel = "loss" + (" (log scale)" if view.log else "") + (f" · smoothed {view.smooth:g}" if view.smooth else "")
    body, px, py = _panel(0.0, x1, lim[0], lim[1], TOP, height, ylabel, "" if resources else view.xlabel,
                          view.log)
    body.insert(0, f"<text x='{LEFT}' y='14' font-size='12'>{esc(title or 'training curves')}</text>")
    clip = f"arnb-clip-{_RUN}-{next(_CLIP_IDS)}"
    body.append(f"<clipPath id='{clip}'><rect x='{LEFT}' y='{TOP}' width='{W - RIGHT - LEFT}' "
                f"height='{height}'/></clipPath>")
    legend = []
    for c in curves:
        if not c.x:
            continue
        color, width, dash = _STYLE.get(c.role, _STYLE["kept"])
        color = c.color or color
        stroke = f"stroke='{color}' stroke-width='{width}' fill='none'" + (f" stroke-dasharray='{dash}'" if dash else "")
        gid = 'id="curve-' + esc(c.role) + '"'  # double quotes, as matplotlib writes them
        body.append(f"<g {gid} clip-path='url(#{clip})'><path d='{_path(c.x, c.y, px, py)}' "
                    f"{stroke}/></g>")
        if c.stopped:  # where the loop stopped a pruned run: an x at its last point
            x, y = px(c.x[-1]), py(c.y[-1])
            body.append(f"<g id=\"curve-stopped\"><path d='M{x - 4:.1f},{y - 4:.1f} l8,8 m0,-8 l-8,8' "
                        f"stroke='{color}' stroke-width='1.5'/></g>")
        legend.append((f"{c.label} ({len(c)} pts)", stroke))
    if not legend:
        body.append(f"<text x='{(LEFT + W - RIGHT) / 2:.1f}' y='{TOP + height / 2:.1f}' text-anchor='middle' "
                    "fill='grey' font-size='12'>waiting for progress lines</text>")
    for i, (label, stroke) in enumerate(legend):
        y = TOP + 10 + 12 * i
        x = W - RIGHT - 190
        body.append(f"<path d='M{x},{y - 3} h18' {stroke}/><text x='{x + 22}' y='{y}'>{esc(label)}</text>")
    if resources:
        top = TOP + height + 14
        pieces, rx, ry = _panel(0.0, x1, 0.0, 100.0, top, res_h, "%", "seconds of training")
        body.extend(pieces)
        for i, (name, (xs, ys)) in enumerate(resource_series(resources).items()):
            color = _RES_COLORS[i % len(_RES_COLORS)]
            gid = 'id="resource-' + esc(name.split()[0].lower()) + '"'
            body.append(f"<g {gid}><path d='{_path(xs, ys, rx, ry)}' "
                        f"stroke='{color}' stroke-width='1' fill='none'/></g>")
            body.append(f"<text x='{LEFT + 6 + 70 * i}' y='{top + 10}' fill='{color}'>{esc(name)}</text>")
    return (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {W:.0f} {total_h:.0f}' "
            f"style='width:100%;height:auto' font-family='sans-serif' font-size='9'>{''.join(body)}</svg>")
