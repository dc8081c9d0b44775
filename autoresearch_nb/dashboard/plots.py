"""Plot data as pure functions: the progress frontier, training curves, the experiment table, bar colours.

Nothing here imports matplotlib or ipywidgets; :mod:`.draw` turns this data into figures, :mod:`.widgets` and
:mod:`.report` show them. Inputs are :class:`~autoresearch_nb.records.Experiment` lists or the DataFrame of
``loop.results`` / ``load_results`` (anything with ``number``, ``status`` and ``metric``).

>>> from autoresearch_nb.records import Experiment, Status
>>> exps = [Experiment(0, "t", Status.KEEP, metric=2.0), Experiment(1, "t", Status.DISCARD, metric=2.5),
...         Experiment(2, "t", Status.KEEP, metric=1.5)]
>>> frontier(exps).best_y
[2.0, 2.0, 1.5]
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ..records import CurvePoint, Status

if TYPE_CHECKING:
    import pandas as pd

# The bar and marker colours of each outcome (matplotlib's tab10, grey for discarded as in Karpathy's chart).
COLORS = {"running": "#1f77b4", "keep": "#2ca02c", "discard": "#9e9e9e", "crash": "#d62728",
          "proposed": "#ff7f0e", "stopped": "#8c564b"}
FAILED = {Status.CRASH.value, Status.TIMEOUT.value, Status.VIOLATION.value}


def status_color(status: Status | str) -> str:
    """The colour an outcome is drawn in (crash, timeout and violation share red)."""
    s = status.value if isinstance(status, Status) else str(status)
    if s in FAILED:
        return COLORS["crash"]
    if s == Status.INTERRUPTED.value:
        return COLORS["stopped"]
    return COLORS.get(s, COLORS["discard"])


def _records(experiments: Any) -> list[tuple[int, str, float | None, str]]:
    """(number, status, metric, description) from Experiments or a results DataFrame, oldest first."""
    if hasattr(experiments, "to_dict") and hasattr(experiments, "columns"):
        rows = experiments.to_dict("records")
        out = [(int(r["number"]), str(r["status"]), _num(r.get("metric")), str(r.get("description") or ""))
               for r in rows]
    else:
        out = [(e.number, e.status.value if isinstance(e.status, Status) else str(e.status), _num(e.metric),
                e.description or "") for e in experiments]
    return sorted(out, key=lambda r: r[0])


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


@dataclass
class Frontier:
    """Karpathy's progress chart: kept points, discarded points, failures and the running best (a step line)."""

    kept_x: list[int] = field(default_factory=list)
    kept_y: list[float] = field(default_factory=list)
    discarded_x: list[int] = field(default_factory=list)
    discarded_y: list[float] = field(default_factory=list)
    failed_x: list[int] = field(default_factory=list)   # ran but no usable metric: drawn as marks on the axis
    best_x: list[int] = field(default_factory=list)
    best_y: list[float] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=dict)  # kept experiment number -> description

    @property
    def empty(self) -> bool:
        return not (self.kept_x or self.discarded_x or self.failed_x)


def frontier(experiments: Any, maximize: bool = False) -> Frontier:
    """The progress chart's data from experiments (only those that ran; proposals and skips are left out)."""
    f = Frontier()
    best: float | None = None
    for number, status, metric, desc in _records(experiments):
        if status == Status.KEEP.value and metric is not None:
            f.kept_x.append(number)
            f.kept_y.append(metric)
            f.labels[number] = desc
            if best is None or (metric > best if maximize else metric < best):
                best = metric
        elif status == Status.DISCARD.value and metric is not None:
            f.discarded_x.append(number)
            f.discarded_y.append(metric)
        elif status in FAILED or status == Status.INTERRUPTED.value:
            f.failed_x.append(number)
        else:
            continue
        if best is not None:
            f.best_x.append(number)
            f.best_y.append(best)
    return f


@dataclass
class Curve:
    """One training curve: loss against elapsed seconds, with the x range fixed to the time budget."""

    label: str
    x: list[float]
    y: list[float]
    xmax: float
    role: str = "running"   # running, baseline, best, kept

    def __len__(self) -> int:
        return len(self.x)


def curve(points: Iterable[CurvePoint], budget_s: float, label: str = "", role: str = "running",
          max_points: int = 400) -> Curve:
    """Points with a loss, in time order, thinned to at most ``max_points`` (the last one always kept).

    The x bound is the time budget (or the last point if the run went over), so a live plot does not jump.
    """
    pts = [(float(p.elapsed_s), float(p.loss)) for p in points
           if p.loss is not None and p.elapsed_s is not None and math.isfinite(p.loss)]
    pts.sort(key=lambda t: t[0])
    if len(pts) > max_points:
        stride = math.ceil(len(pts) / max_points)
        pts = pts[::stride] + ([pts[-1]] if (len(pts) - 1) % stride else [])
    xmax = max([float(budget_s)] + [x for x, _ in pts[-1:]])
    return Curve(label, [x for x, _ in pts], [y for _, y in pts], xmax, role)


def y_limits(curves: Sequence[Curve], head: float = 0.1) -> tuple[float, float] | None:
    """A y range that shows the interesting part: ignores the first ``head`` of each curve (the initial drop)."""
    ys: list[float] = []
    for c in curves:
        if not c.y:
            continue
        cut = c.xmax * head
        tail = [y for x, y in zip(c.x, c.y) if x >= cut] or c.y
        ys.extend(tail)
    if not ys:
        return None
    lo, hi = min(ys), max(ys)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
    return lo - pad, hi + pad


TABLE_COLUMNS = ["number", "status", "metric", "delta", "description", "duration_s", "cost_usd"]


def table(results: "pd.DataFrame", metric: str | None = None, limit: int | None = None) -> "pd.DataFrame":
    """The dashboard's experiment table: newest first, duration in seconds, ``is_best`` kept for highlighting.

    ``delta`` is the change against the best kept experiment before each row (negative is better when
    minimizing). ``metric`` renames the metric column (e.g. ``val_bpb``).
    """
    import pandas as pd

    df = results.copy()
    if "wall_seconds" in df:
        df["duration_s"] = df["wall_seconds"]
    for col in TABLE_COLUMNS + ["is_best"]:
        if col not in df:
            df[col] = None if col != "is_best" else False
    out = df[TABLE_COLUMNS + ["is_best"]].sort_values("number", ascending=False)
    if limit is not None:
        out = out.head(limit)
    out = out.reset_index(drop=True)
    out["is_best"] = out["is_best"].fillna(False).astype(bool)
    if metric and metric != "metric":
        out = out.rename(columns={"metric": metric})
    return pd.DataFrame(out)


def keep_rate(results: "pd.DataFrame") -> float | None:
    """Kept / ran, the baseline left out (None before any experiment ran)."""
    ran = results[results["status"].isin([s.value for s in Status if s.ran])]
    ran = ran[ran["description"] != "baseline"] if "description" in ran else ran
    return None if len(ran) == 0 else float((ran["status"] == Status.KEEP.value).sum()) / len(ran)


def improvements(results: "pd.DataFrame", n: int = 10, maximize: bool = False) -> "pd.DataFrame":
    """The kept experiments that moved the best the most (largest gain first)."""
    kept = results[(results["status"] == Status.KEEP.value) & results["delta"].notna()]
    gain = kept["delta"] if maximize else -kept["delta"]
    return kept.assign(gain=gain).sort_values("gain", ascending=False).head(n)[
        [c for c in ("number", "metric", "delta", "description") if c in kept]]


def cost_over_time(results: "pd.DataFrame") -> tuple[list[float], list[float]]:
    """Cumulative agent cost (USD) against hours since the run's first experiment started."""
    import pandas as pd

    if "ended_at" not in results or "cost_usd" not in results or results.empty:
        return [], []
    df = results.copy()
    t = pd.to_datetime(df["ended_at"], utc=True)
    df = df.assign(_t=t).dropna(subset=["_t"]).sort_values("_t")
    if df.empty:
        return [], []
    start = df["_t"].iloc[0]
    hours = [(x - start).total_seconds() / 3600 for x in df["_t"]]
    return hours, df["cost_usd"].fillna(0.0).cumsum().tolist()


def budget_fraction(elapsed_s: float | None, budget_s: float) -> float:
    """How far a run is through its budget, clipped to [0, 1]."""
    if not elapsed_s or budget_s <= 0:
        return 0.0
    return max(0.0, min(1.0, float(elapsed_s) / float(budget_s)))
