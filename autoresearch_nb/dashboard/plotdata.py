"""Plot data as pure functions: the progress frontier, training curves, the experiment table, bar colours, and
the noise floor's views (effects in units of σ, the cumulative improvement with its band).

Nothing here imports matplotlib or ipywidgets; :mod:`.draw` turns this data into figures, :mod:`.html` renders tables,
:mod:`.widgets` and :mod:`.static` show them. Inputs are :class:`~autoresearch_nb.records.Experiment` lists or the DataFrame of
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
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from .. import noise as _noise
from ..records import REJECTED, CurvePoint, Status, status_word

if TYPE_CHECKING:
    import pandas as pd

# The bar and marker colours of each outcome (matplotlib's tab10, grey for discarded as in Karpathy's chart).
COLORS = {"running": "#1f77b4", "keep": "#2ca02c", "discard": "#9e9e9e", "crash": "#d62728",
          "proposed": "#ff7f0e", "stopped": "#8c564b", "pruned": "#bcbd22"}
# Live curves in flight at once, one colour each (by worker), none of them an outcome colour.
LIVE_COLORS = ["#1f77b4", "#9467bd", "#17becf", "#e377c2", "#bcbd22", "#393b79"]
# Experiments chosen for comparison, one colour each in the order chosen: none of them a live or outcome colour.
COMPARE_COLORS = ["#e6550d", "#31a354", "#756bb1", "#636363", "#843c39", "#3182bd", "#d6616b", "#8c6d31"]
HOLDOUT_COLOR = "#6a3d9a"  # the best's holdout bpb on the progress chart (dashed)
FAILED = {Status.CRASH.value, Status.TIMEOUT.value, Status.VIOLATION.value}
REJECTED_BY_CHECKS = {s.value for s in REJECTED}


def status_color(status: Status | str) -> str:
    """The colour an outcome is drawn in (crash, timeout and violation share red)."""
    s = status.value if isinstance(status, Status) else str(status)
    if s in FAILED:
        return COLORS["crash"]
    if s == Status.INTERRUPTED.value:
        return COLORS["stopped"]
    if s in REJECTED_BY_CHECKS:  # ran, but verification or the guard refused it: light red, not a crash
        return "#ff9896"
    return COLORS.get(s, COLORS["discard"])


def _records(experiments: Any) -> list[tuple[int, str, float | None, str, int]]:
    """(number, status, metric, description, n_runs) from Experiments or a results DataFrame, oldest first."""
    if hasattr(experiments, "to_dict") and hasattr(experiments, "columns"):
        rows = experiments.to_dict("records")
        out = [(int(r["number"]), str(r["status"]), _num(r.get("metric")), str(r.get("description") or ""),
                int(_num(r.get("n_runs")) or 1)) for r in rows]
    else:
        out = [(e.number, e.status.value if isinstance(e.status, Status) else str(e.status), _num(e.metric),
                e.description or "", len(getattr(e, "runs", None) or ()) or 1) for e in experiments]
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
    pruned_x: list[int] = field(default_factory=list)   # stopped early as hopeless (no metric): marks too
    # stopped by the user or a signal while it ran: grey marks, not failures (a proposal stopped before it ran
    # is left out, as proposals are)
    interrupted_x: list[int] = field(default_factory=list)
    best_x: list[int] = field(default_factory=list)
    best_y: list[float] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=dict)  # kept experiment number -> description
    # The noise band around the running best (aligned with best_x): a single run landing inside it is
    # "within the noise" of the best; empty without a measured floor or under the plain rule (k = 0).
    band_lo: list[float] = field(default_factory=list)
    band_hi: list[float] = field(default_factory=list)
    # The running best's holdout bpb (verify = "model"): a second step line; where it does not follow the best,
    # the kept changes fit val more than the task. Empty without a holdout.
    holdout_x: list[int] = field(default_factory=list)
    holdout_y: list[float] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.kept_x or self.discarded_x or self.failed_x or self.pruned_x or self.interrupted_x)


def holdouts(experiments: Any) -> dict[int, float]:
    """Experiment number -> its holdout bpb, for those the verifier scored on the holdout."""
    if hasattr(experiments, "to_dict") and hasattr(experiments, "columns"):
        pairs = [(r.get("number"), r.get("holdout_bpb")) for r in experiments.to_dict("records")]
    else:
        pairs = [(e.number, getattr(e, "holdout_bpb", None)) for e in experiments]
    return {int(n): v for n, v in ((n, _num(h)) for n, h in pairs) if v is not None}


def started(experiments: Any) -> set[int]:
    """The numbers of the experiments whose run began (a ``started_at``), from Experiments or a results DataFrame."""
    if hasattr(experiments, "to_dict") and hasattr(experiments, "columns"):
        pairs = [(r.get("number"), r.get("started_at")) for r in experiments.to_dict("records")]
    else:
        pairs = [(e.number, e.started_at) for e in experiments]
    return {int(n) for n, t in pairs if t is not None and t == t}  # NaN and NaT are not a start


def frontier(experiments: Any, maximize: bool = False, sigma: float | None = None, k: float = 0.0) -> Frontier:
    """The progress chart's data from experiments (only those that ran; proposals and skips are left out, and
    so is a proposal interrupted before its run began).

    With a noise floor ``sigma`` and ``k > 0``, the band is the best ± the keep threshold for one new run
    against the best's mean (``noise.threshold_sigmas(k, 1, n_best) · σ``).
    """
    f = Frontier()
    best: float | None = None
    best_n = 1
    held, best_holdout = holdouts(experiments), None
    began = started(experiments)
    for number, status, metric, desc, n_runs in _records(experiments):
        if status == Status.KEEP.value and metric is not None:
            f.kept_x.append(number)
            f.kept_y.append(metric)
            f.labels[number] = desc
            if best is None or (metric > best if maximize else metric < best):
                best, best_n, best_holdout = metric, n_runs, held.get(number)
        elif status == Status.DISCARD.value and metric is not None:
            f.discarded_x.append(number)
            f.discarded_y.append(metric)
        elif status in FAILED:
            f.failed_x.append(number)
        elif status == Status.INTERRUPTED.value and number in began:
            f.interrupted_x.append(number)
        elif status == Status.PRUNED.value:
            f.pruned_x.append(number)
        else:
            continue
        if best is not None:
            f.best_x.append(number)
            f.best_y.append(best)
            if best_holdout is not None:
                f.holdout_x.append(number)
                f.holdout_y.append(best_holdout)
            if sigma and k > 0:
                half = _noise.threshold_sigmas(k, 1, best_n) * sigma
                f.band_lo.append(best - half)
                f.band_hi.append(best + half)
    return f


@dataclass
class Curve:
    """One training curve: loss against elapsed seconds, with the x range fixed to the time budget."""

    label: str
    x: list[float]
    y: list[float]
    xmax: float
    role: str = "running"   # running, repeat, last, baseline, best, kept
    color: str | None = None  # overrides the role's colour (one per worker when several run at once)
    stopped: bool = False     # pruned: the loop stopped it there (an x marks its last point)
    steps: list[float] = field(default_factory=list)  # the optimizer step of each point (its index if unknown)

    def __len__(self) -> int:
        return len(self.x)


def curve(points: Iterable[CurvePoint], budget_s: float, label: str = "", role: str = "running",
          max_points: int = 400, color: str | None = None, stopped: bool = False) -> Curve:
    """Points with a loss, in time order, thinned to at most ``max_points`` (the last one always kept).

    The x bound is the time budget (or the last point if the run went over), so a live plot does not jump.
    """
    pts = [(float(p.elapsed_s), float(p.loss), p.step) for p in points
           if p.loss is not None and p.elapsed_s is not None and math.isfinite(p.loss)]
    pts.sort(key=lambda t: t[0])
    known = any(step is not None for _, _, step in pts)
    last = 0.0
    for i, (x, y, step) in enumerate(pts):  # a line without a step: the step before it (its index if none has one)
        last = float(step) if step is not None else last if known else float(i)
        pts[i] = (x, y, last)
    if len(pts) > max_points:
        stride = math.ceil(len(pts) / max_points)
        pts = pts[::stride] + ([pts[-1]] if (len(pts) - 1) % stride else [])
    xmax = max([float(budget_s)] + [x for x, _, _ in pts[-1:]])
    return Curve(label, [x for x, _, _ in pts], [y for _, y, _ in pts], xmax, role, color, stopped,
                 [s for _, _, s in pts])


X_AXES = {"seconds": "seconds of training", "steps": "optimizer steps", "progress": "share of the time budget"}


@dataclass(frozen=True)
class CurveView:
    """How the curves are drawn, as TensorBoard users expect to choose: x as seconds of training, optimizer steps
    or the share of the time budget (train.py's schedules follow that share, so runs compare at equal progress);
    loss on a log scale; smoothing, TensorBoard's debiased moving average with weight ``smooth`` (0: none, up to
    0.99)."""

    x: str = "seconds"
    log: bool = False
    smooth: float = 0.0

    def __post_init__(self) -> None:
        if self.x not in X_AXES:
            raise ValueError(f"x must be one of {', '.join(X_AXES)}, not {self.x!r}")
        if not 0.0 <= self.smooth < 1.0:
            raise ValueError(f"smooth is a weight in [0, 1), not {self.smooth!r}")

    @property
    def xlabel(self) -> str:
        return X_AXES[self.x]


def smoothed(ys: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so the start is not pulled to zero.

    >>> [round(v, 3) for v in smoothed([1.0, 0.0, 0.0], 0.5)]
    [1.0, 0.333, 0.143]
    """
    if weight <= 0.0:
        return [float(y) for y in ys]
    out, last, n = [], 0.0, 0
    for y in ys:
        n += 1
        last = last * weight + (1.0 - weight) * float(y)
        out.append(last / (1.0 - weight ** n))
    return out


def viewed(curves: Sequence[Curve], view: CurveView, budget_s: float) -> tuple[list[Curve], float]:
    """``curves`` under ``view`` (x replaced, y smoothed; the log scale is the drawing's) and the x axis's end."""
    out = []
    for c in curves:
        if view.x == "steps":
            xs, xmax = list(c.steps) or [float(i) for i in range(len(c.x))], 1.0
        elif view.x == "progress":
            xs, xmax = [x / budget_s for x in c.x] if budget_s > 0 else list(c.x), 1.0
        else:
            xs, xmax = list(c.x), float(budget_s)
        out.append(Curve(c.label, xs, smoothed(c.y, view.smooth), max([xmax] + xs), c.role, c.color,
                         c.stopped, list(c.steps)))
    default = float(budget_s) if view.x == "seconds" else 1.0
    return out, max([default] + [c.xmax for c in out])


def resource_series(resources: dict[str, tuple[Sequence[float], Sequence[float]]] | None
                    ) -> dict[str, tuple[list[float], list[float]]]:
    """Resource samples (name -> seconds, percents) in time order, as :func:`curve` orders points: a sample
    taken at an earlier point than the one before it (a run's first progress lines can come out of order) would
    otherwise draw a line back across the chart.

    >>> resource_series({"CPU %": ([3.0, 1.0, 2.0], [30.0, 10.0, 20.0])})
    {'CPU %': ([1.0, 2.0, 3.0], [10.0, 20.0, 30.0])}
    """
    out = {}
    for name, (xs, ys) in (resources or {}).items():
        pairs = sorted(zip(xs, ys), key=lambda p: p[0])  # stable: samples at one instant keep their order
        out[name] = ([float(x) for x, _ in pairs], [float(y) for _, y in pairs])
    return out


def live_color(slot: int | None) -> str:
    """The colour of the live curve on worker ``slot`` (None: the loop's own worktree, the first colour)."""
    return LIVE_COLORS[(slot or 0) % len(LIVE_COLORS)]


def compare_color(i: int) -> str:
    """The colour of the ``i``-th experiment chosen for comparison (the palette repeats past its end)."""
    return COMPARE_COLORS[i % len(COMPARE_COLORS)]


def compare_curves(numbers: Iterable[int], experiments: Iterable[Any], curves: Callable[[int], Iterable[CurvePoint]],
                   budget_s: float, skip: Iterable[int] = ()) -> list[Curve]:
    """The stored curves of the experiments ``numbers`` (in the order given, duplicates once), for drawing over the
    live ones: role ``compare``, label ``#n status · description``, a colour each by position in ``numbers``.

    ``experiments``: records with ``number``, ``status``, ``reason``, ``description`` (an unknown number is left
    out); ``curves(n)``: experiment ``n``'s stored points; ``skip``: numbers already on screen (a live run).
    """
    by_number = {int(e.number): e for e in experiments}
    skipped = {int(n) for n in skip}
    out: list[Curve] = []
    seen: set[int] = set()
    for i, n in enumerate(int(n) for n in numbers):
        if n in seen:
            continue
        seen.add(n)
        e = by_number.get(n)
        if e is None or n in skipped:
            continue
        status = getattr(e.status, "value", e.status)
        what = str(e.description)[:14]  # short enough for the legend to fit in the panel
        label = f"#{n} {shown_status(str(status), getattr(e, 'reason', None))} · {what}"
        out.append(curve(curves(n), budget_s, label, "compare", color=compare_color(len(seen) - 1),
                         stopped=str(status) == Status.PRUNED.value))
    return out


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


TABLE_COLUMNS = ["number", "status", "metric", "verified", "holdout_gap", "delta", "effect_sigma", "n_runs",
                 "duration_s", "cost_usd", "description", "reason"]
MEASURED = "measured, not decided yet"  # a row still ``running`` whose run ended cleanly: decide() comes next


def shown_status(status: str, reason: str | None = None, ended: Any = None) -> str:
    """The status as people read it: a proposal the user rejected reads ``rejected`` (it is stored as
    ``invalid``, the status of a proposal that could not run); a ``running`` row whose run has ``ended`` (its
    ``ended_at``) reads ``measured, not decided yet``."""
    status = status_word(status, reason)
    if status == Status.RUNNING.value and ended is not None and ended == ended:  # NaN and NaT are not given
        return MEASURED
    return status


def table(results: "pd.DataFrame", metric: str | None = None, limit: int | None = None) -> "pd.DataFrame":
    """The dashboard's experiment table: newest first, duration in seconds, ``is_best`` kept for highlighting.

    ``delta`` is the change against the best kept experiment before each row (negative is better when
    minimizing); ``holdout_gap`` the verifier's holdout bpb minus val bpb (it widens when a change fits val
    and not the held-out text); ``effect_sigma`` the improvement in units of the noise floor (positive is better), ``n_runs``
    how many runs (seeds) the metric is the mean of. ``metric`` renames the metric column (e.g. ``val_bpb``).
    """
    import pandas as pd

    df = results.copy()
    if "wall_seconds" in df:
        df["duration_s"] = df["wall_seconds"]
    for col in TABLE_COLUMNS + ["is_best"]:
        if col not in df:
            df[col] = None if col != "is_best" else False
    ended = df["ended_at"] if "ended_at" in df else [None] * len(df)
    df["status"] = [shown_status(str(s), None if r is None else str(r), t)
                    for s, r, t in zip(df["status"], df["reason"], ended)]
    out = df[TABLE_COLUMNS + ["is_best"]].sort_values("number", ascending=False)
    if limit is not None:
        out = out.head(limit)
    out = out.reset_index(drop=True)
    out["is_best"] = out["is_best"].fillna(False).astype(bool)
    # Runs behind the metric: blank for what never ran (a 0 would read as "ran zero times").
    out["n_runs"] = [int(n) if _num(n) else None for n in out["n_runs"]]
    out["n_runs"] = out["n_runs"].astype("Int64")
    # whose number it is: the loop's verifier ("yes") or the run's own print ("unverified"); blank without one
    out["verified"] = ["yes" if v is True or v == 1 else "unverified" if _num(m) is not None else ""
                       for v, m in zip(out["verified"], out["metric"])]
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


@dataclass(frozen=True)
class Floor:
    """The run's noise floor as the dashboard shows it: σ, the robust σ, and the keep threshold for one run."""

    sigma: float | None
    mad_sigma: float | None
    df: int
    k: float
    threshold_sigma: float | None   # in units of σ (k·sqrt(1 + 1/n_best)); None under the plain rule
    threshold: float | None         # in metric units

    @property
    def measured(self) -> bool:
        return self.sigma is not None


def floor(noise: dict[str, Any] | None, k: float, best_n: int = 1) -> Floor:
    """The floor from ``loop.noise`` (the run state's ``noise``), judged for one new run against a best that
    is the mean of ``best_n`` runs.

    >>> round(floor({"sigma": 0.002, "mad_sigma": 0.0018, "df": 2}, k=2.0, best_n=3).threshold_sigma, 3)
    2.309
    """
    noise = noise or {}
    sigma = _num(noise.get("sigma"))
    t_sig = _noise.threshold_sigmas(float(k), 1, best_n) if sigma and float(k) > 0 else None
    return Floor(sigma, _num(noise.get("mad_sigma")), int(noise.get("df") or 0), float(k), t_sig,
                 t_sig * sigma if t_sig is not None and sigma else None)


def floor_text(f: Floor) -> str:
    """One phrase for the status line and the report: ``noise σ 0.002 (robust 0.0018, 2 df) · keep past 2.31σ
    (0.00462)``, or why there is no threshold."""
    if not f.measured:
        return "noise floor not measured (keep iff better)" if f.k > 0 else "plain rule: keep iff better (noise_k=0)"
    if f.sigma == 0:
        return "noise σ 0: the repeats were identical, keep iff better (does train.py use AUTORESEARCH_SEED?)"
    robust = f", robust {f.mad_sigma:.3g}" if f.mad_sigma is not None else ""
    head = f"noise σ {f.sigma:.3g} ({f.df} df{robust})"
    if f.threshold_sigma is None:
        return f"{head} · plain rule (noise_k=0)"
    return f"{head} · keep past {f.threshold_sigma:.2f}σ ({f.threshold:.3g})"


def floor_words(f: Floor) -> str:
    """The noise rule in plain words (the statistics are in :func:`floor_text`, shown as its tooltip):
    ``runs of the same code differ by about 0.002; a change must beat the best by more than 0.00462 to be kept``.
    """
    if not f.measured or f.sigma == 0 or f.threshold is None:
        return "a change is kept when it beats the best at all" + (
            " (the noise between runs is not measured yet)" if not f.measured and f.k > 0 else "")
    return (f"runs of the same code differ by about {f.sigma:.3g}; a change must beat the best by more than "
            f"{f.threshold:.3g} to be kept")


def decision_words(threshold: float | None, sigma: float | None) -> str | None:
    """The bar one decision used, from its row (``Experiment.threshold`` and ``noise_sigma``, as the keep rule
    recorded them, paired or not), or None for a row decided without one. The run's current floor
    (:func:`floor_words`) may differ: the best's number of runs, the paired floor and the floor itself change.

    >>> decision_words(0.0806, 0.0329)
    'this decision needed a gain of more than 0.0806 (2.45σ, σ = 0.0329)'
    """
    if threshold is None or not sigma:
        return None
    return f"this decision needed a gain of more than {threshold:.3g} ({threshold / sigma:.2f}σ, σ = {sigma:.3g})"


EFFECT_COLUMNS = ["number", "status", "description", "metric", "n_runs", "effect_sigma", "threshold_sigma",
                  "margin_sigma"]


def effect_sizes(results: "pd.DataFrame", sigma: float | None = None, maximize: bool = False) -> "pd.DataFrame":
    """Each experiment's effect in units of the noise floor (positive is better), beside its threshold.

    ``effect_sigma`` and ``threshold_sigma`` are the decision's own (``threshold / noise_sigma``); rows decided
    without a floor get ``-delta / sigma`` (``+delta`` when maximizing) when ``sigma`` is given. ``margin_sigma``
    is how far past its threshold an experiment landed (> 0: it beat the noise). Rows without a metric and the
    baseline are left out.
    """
    import pandas as pd

    rows = []
    for r in results.to_dict("records"):
        metric = _num(r.get("metric"))
        if metric is None or r.get("description") == "baseline" or str(r.get("status")) not in (
                Status.KEEP.value, Status.DISCARD.value):
            continue
        effect = _num(r.get("effect_sigma"))
        delta = _num(r.get("delta"))
        if effect is None and sigma and delta is not None:
            effect = (delta if maximize else -delta) / sigma
        noise_sigma, thr = _num(r.get("noise_sigma")), _num(r.get("threshold"))
        t_sig = thr / noise_sigma if thr is not None and noise_sigma else None
        rows.append({"number": int(r["number"]), "status": str(r["status"]), "description": r.get("description"),
                     "metric": metric, "n_runs": int(_num(r.get("n_runs")) or 1), "effect_sigma": effect,
                     "threshold_sigma": t_sig,
                     "margin_sigma": effect - t_sig if effect is not None and t_sig is not None else None})
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS).astype({"effect_sigma": float, "threshold_sigma": float,
                                                              "margin_sigma": float})


@dataclass
class Cumulative:
    """The improvement of the running best over the baseline (positive is better) after each experiment, with a
    ±k·σ band of the difference of the two means; the band is empty without a floor."""

    x: list[int] = field(default_factory=list)
    improvement: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    sigma: float | None = None
    k: float = 2.0

    @property
    def empty(self) -> bool:
        return not self.x


def cumulative(experiments: Any, sigma: float | None, k: float = 2.0, maximize: bool = False) -> Cumulative:
    """:func:`autoresearch_nb.noise.cumulative` over experiments or a results DataFrame (what ran, in order).

    >>> from autoresearch_nb.records import Experiment, Status
    >>> c = cumulative([Experiment(0, "t", Status.KEEP, metric=1.0, runs=[1.0, 1.0, 1.0]),
    ...                 Experiment(1, "t", Status.KEEP, metric=0.9)], sigma=0.01)
    >>> [round(v, 3) for v in c.improvement], round(c.high[-1] - c.low[-1], 4)
    ([0.0, 0.1], 0.0462)
    """
    ran = {Status.KEEP.value, Status.DISCARD.value, Status.INTERRUPTED.value} | FAILED
    pts = [(n, status, metric, n_runs) for n, status, metric, _d, n_runs in _records(experiments) if status in ran]
    out = Cumulative(sigma=sigma, k=k)
    for row in _noise.cumulative(pts, sigma, k=k, maximize=maximize):
        out.x.append(row["number"])
        out.improvement.append(row["improvement"])
        out.low.append(row["low"])
        out.high.append(row["high"])
    return out


@dataclass(frozen=True)
class Lineage:
    """One kept state of a run: the experiment kept there, its step from the state before (metric change and
    effect in σ), and what was tried from it: each status with its count, and the numbers tried."""

    number: int
    description: str
    metric: float | None
    delta: float | None
    effect_sigma: float | None
    tried: dict[str, int]
    tried_numbers: tuple[int, ...]


def lineage(results: "pd.DataFrame") -> list[Lineage]:
    """The kept chain, oldest first (the baseline, then each keep), each with what was tried from its commit:
    the experiments whose parent commit is that kept state's (the next keep among them). No peer shows this."""
    if results is None or len(results) == 0 or "parent_sha" not in results.columns:
        return []
    rows = results.sort_values("number").to_dict("records")
    kept = [r for r in rows if r["status"] == Status.KEEP.value and r.get("sha")]
    out, prev = [], None
    for k in kept:
        children = [r for r in rows if r.get("parent_sha") == k["sha"] and r["number"] != k["number"]
                    and r["status"] not in (Status.PROPOSED.value,)]
        tried: dict[str, int] = {}
        for r in children:
            tried[str(r["status"])] = tried.get(str(r["status"]), 0) + 1
        metric = _num(k.get("metric"))
        out.append(Lineage(int(k["number"]), str(k.get("description") or ""), metric,
                           metric - prev if metric is not None and prev is not None else None,
                           _num(k.get("effect_sigma")), tried, tuple(int(r["number"]) for r in children)))
        prev = metric if metric is not None else prev
    return out


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
