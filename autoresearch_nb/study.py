"""The tuner's Optuna views: its study as an Optuna SQLite file for ``optuna-dashboard``, and Optuna's matplotlib
plots for the analysis notebook. The store stays the one truth: the study is always derived from its rows.

>>> path = write_study(view)                     # doctest: +SKIP
>>> # optuna-dashboard sqlite:///<path>          (pip install 'autoresearch_nb[dashboard]')
>>> figures = tuner_figures(view)                # doctest: +SKIP
>>> sorted(figures)                              # doctest: +SKIP
['history', 'importances', 'slice']
>>> print(tuner_text(view))                      # the same views as text (the CLI's)  # doctest: +SKIP
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .layout import optuna_dir
from .records import Experiment, Status, best_of
from .view import RunView

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure

    from .agents.space import Space

MIN_IMPORTANCE_TRIALS = 5  # importance from fewer complete trials mostly ranks noise


def study_dir(repo_root: Path | str) -> Path:
    """The folder of a repository's study files, ``.autoresearch/optuna``."""
    return optuna_dir(repo_root)


def study_path(repo_root: Path | str, tag: str) -> Path:
    """Where run ``tag``'s study file lives: ``.autoresearch/optuna/<tag>.db``."""
    return study_dir(repo_root) / f"{tag}.db"


def storage_url(path: Path | str) -> str:
    """The URL ``optuna-dashboard`` and ``optuna.load_study`` take for a study file."""
    return f"sqlite:///{Path(path).resolve()}"


def storage(path: Path | str) -> Any:
    """Optuna's SQLite storage at ``path`` (created with its folder when missing)."""
    import optuna

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(storage_url(path))


def study_trials(space: "Space", history: list[Experiment], maximize: bool) -> list[Any]:
    """The run's finished experiments as Optuna trials (frozen), oldest first; ``experiment``, ``status`` and
    ``kept`` (the loop kept it: its best so far) are user attributes. A trial's value is the loop's decided metric
    of the row (``Experiment.metric``: the mean of its runs, or with paired decisions the best's metric plus the
    mean paired difference), never its first run alone. A crash, timeout or pruned run gets the worst metric seen
    so far (so the sampler learns to stay away); an experiment whose constants do not parse is left out."""
    from optuna.trial import TrialState, create_trial

    rows = []
    for e in history:
        if e.status.finished and e.status.ran:
            params = space.encoded(e.content or "")
            if params is not None:
                rows.append((e, params))
    finite = [e.metric for e, _ in rows if _finite(e.metric) and e.status in (Status.KEEP, Status.DISCARD)]
    worst = (min(finite) if maximize else max(finite)) if finite else None

    distributions = space.distributions()
    trials = []
    for e, params in rows:
        attrs = {"experiment": e.number, "status": str(e.status), "kept": e.status == Status.KEEP}
        if e.status in (Status.KEEP, Status.DISCARD) and _finite(e.metric):
            trials.append(create_trial(value=float(e.metric), params=params,  # type: ignore[arg-type]
                                       distributions=distributions, user_attrs=attrs))
        elif e.status in (Status.CRASH, Status.TIMEOUT, Status.PRUNED, Status.KEEP, Status.DISCARD) \
                and worst is not None:  # a pruned run was clearly worse than the best: kept away from, as a crash
            trials.append(create_trial(value=float(worst), params=params,
                                       distributions=distributions, user_attrs=attrs))
        else:
            trials.append(create_trial(state=TrialState.FAIL, params=params,
                                       distributions=distributions, user_attrs=attrs))
    return trials


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def sync(store: Any, tag: str, direction: str, trials: list[Any]) -> int:
    """Add to study ``tag`` in ``store`` the trials whose experiment it does not hold yet; how many were added.

    ``trials`` is the whole study (as :func:`study_trials` builds it). When a parameter's distribution changed
    since the file was written (a new ``# choices:`` value, a dial's kind), Optuna refuses to add a trial under
    the same name; the study is then written anew from ``trials``, which hold every experiment."""
    import optuna

    study = optuna.create_study(storage=store, study_name=tag, direction=direction, load_if_exists=True)
    stored = study.get_trials(deepcopy=False)
    if not _compatible(stored, trials):
        optuna.delete_study(study_name=tag, storage=store)
        study = optuna.create_study(storage=store, study_name=tag, direction=direction)
        stored = []
    have = {t.user_attrs.get("experiment") for t in stored}
    new = [t for t in trials if t.user_attrs.get("experiment") not in have]
    if new:
        study.add_trials(new)
    return len(new)


def _compatible(stored: list[Any], trials: list[Any]) -> bool:
    """Whether Optuna accepts ``trials`` beside ``stored``: every parameter keeps its distribution's kind (and a
    categorical one its choices) across both."""
    from optuna.distributions import check_distribution_compatibility

    seen: dict[str, Any] = {}
    for t in [*stored, *trials]:
        for name, dist in t.distributions.items():
            old = seen.setdefault(name, dist)
            try:
                check_distribution_compatibility(old, dist)
            except ValueError:
                return False
    return True


def is_tuner_run(view: RunView) -> bool:
    """True when the tuner proposed any of the run's experiments."""
    return any(e.agent == "tuner" for e in view.experiments)


def load_study(view: RunView) -> "optuna.Study":
    """The run's study rebuilt in memory from the store (what the plots draw), over the constants the tuner
    found in the baseline file."""
    import optuna

    from .agents.space import discover

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    exps = view.experiments
    origin = next((e.content for e in exps if e.content), None)
    study = optuna.create_study(direction=view.config.direction, study_name=view.tag)
    if origin is None:
        return study
    space = discover(origin, view.config.editable)
    study.add_trials(study_trials(space, exps, view.config.maximize))
    return study


def write_study(view: RunView, path: Path | str | None = None, *, rebuild: bool = False) -> Path:
    """Write the run's study file from the store; returns its path. An existing file gets the trials it lacks
    (a running tuner may be writing it too); ``rebuild`` replaces it (when the run is not open)."""
    path = Path(path) if path is not None else study_path(view.repo_root, view.tag)
    if rebuild:
        path.unlink(missing_ok=True)
    study = load_study(view)
    sync(storage(path), view.tag, view.config.direction, study.get_trials(deepcopy=False))
    return path


def tuner_figures(view: RunView) -> dict[str, "Figure"]:
    """The tuner run's views as matplotlib figures: ``history`` (every trial's metric by experiment number and
    the loop's best: its kept rows, not Optuna's best trial, which may be a change the loop discarded as within
    the noise), ``slice`` (Optuna's: the metric against each constant that varied, coloured by experiment
    number), ``parallel`` (Optuna's parallel coordinates: each trial a line across the constants that varied, when
    two or more did) and, from ``MIN_IMPORTANCE_TRIALS`` complete trials, ``importances`` (over the constants that
    varied).
    Empty for a run the tuner had no part in, or with nothing complete yet.

    >>> with RunView.open(".", "nov27") as view:              # doctest: +SKIP
    ...     for name, fig in tuner_figures(view).items(): display(fig)
    """
    if not is_tuner_run(view):
        return {}
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as plots

    study = numbered(load_study(view))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return {}
    import matplotlib

    figures: dict[str, Figure] = {}
    name = view.config.metric
    moved = varied(study)
    figures["history"] = history_figure(view)
    # Optuna's plots call plt.style.use("ggplot"): inside rc_context the kernel's style is restored afterwards
    # (the figures keep theirs), so the dashboard and every later plot in the notebook stay as they were.
    with warnings.catch_warnings(), matplotlib.rc_context():
        # Optuna marks its matplotlib backend experimental, on every call
        warnings.simplefilter("ignore")
        if moved:
            figures["slice"] = _figure(plots.plot_slice(study, params=moved, target_name=name))
            for bar in (a for a in figures["slice"].axes if a.get_ylabel() == "Trial"):
                bar.set_ylabel("experiment")  # the colour bar: numbered() made a trial's number its experiment's
        if len(moved) >= 2:  # every trial as a line across the constants that varied (one is the slice plot)
            figures["parallel"] = _figure(plots.plot_parallel_coordinate(study, params=moved, target_name=name))
        if len(complete) >= MIN_IMPORTANCE_TRIALS and moved:
            figures["importances"] = _figure(plots.plot_param_importances(study, evaluator=_evaluator(),
                                                                          params=moved, target_name=name))
    return figures


def numbered(study: "optuna.Study") -> "optuna.Study":
    """``study`` again with each trial's number equal to its experiment's: the experiments that made no trial
    (invalid, skipped, interrupted, unparsable) fill their numbers as failed trials, which no plot draws. So
    Optuna's views, which label trials by number, label them by experiment."""
    import optuna
    from optuna.trial import TrialState, create_trial

    out = optuna.create_study(direction=study.direction, study_name=study.study_name)
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.user_attrs.get("experiment", -1))
    padded: list[Any] = []
    for t in trials:
        n = t.user_attrs.get("experiment")
        while isinstance(n, int) and len(padded) < n:
            padded.append(create_trial(state=TrialState.FAIL, user_attrs={"experiment": len(padded),
                                                                          "status": "no trial"}))
        padded.append(t)
    out.add_trials(padded)
    return out


def loop_best(view: RunView) -> dict[int, float | None]:
    """The loop's best metric after each experiment (its kept rows, as ``RunView.best``), by number."""
    out: dict[int, float | None] = {}
    best: Experiment | None = None
    for e in sorted(view.experiments, key=lambda e: e.number):
        best = best_of([x for x in (best, e) if x is not None], view.config.maximize)
        out[e.number] = best.metric if best is not None else None
    return out


def history_figure(view: RunView) -> "Figure":
    """Every trial's metric against its experiment number, kept ones marked, and the loop's best as a step line."""
    from matplotlib.figure import Figure  # not pyplot's: nothing to close, the inline backend never shows it

    exps = [e for e in view.experiments if e.status.ran and _finite(e.metric)
            and e.status in (Status.KEEP, Status.DISCARD)]
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    others = [e for e in exps if e.status != Status.KEEP]
    kept = [e for e in exps if e.status == Status.KEEP]
    ax.scatter([e.number for e in others], [e.metric for e in others], s=18, color="#9aa5b1", label="discarded")
    ax.scatter([e.number for e in kept], [e.metric for e in kept], s=30, color="#1f77b4", label="kept")
    best = sorted((n, m) for n, m in loop_best(view).items() if m is not None)
    if best:
        ax.step([n for n, _ in best], [m for _, m in best], where="post", color="#d62728",
                label="the loop's best (kept)")
    ax.set_xlabel("experiment")
    ax.set_ylabel(view.config.metric)
    ax.set_title("Optimization history")
    ax.legend(loc="best")
    return fig


def _figure(axes: Any) -> "Figure":
    """The figure behind what an Optuna plot returns (one Axes, or an array of them), closed in pyplot: the
    caller shows it once (``display(fig)``), the inline backend does not show it a second time."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig = np.asarray(axes, dtype=object).flat[0].figure
    plt.close(fig)
    return fig


def _evaluator() -> Any:
    """PED-ANOVA, Optuna's default importance evaluator: deterministic (the figure and the text agree) and
    without scikit-learn (fANOVA needs it)."""
    from optuna.importance import PedAnovaImportanceEvaluator

    return PedAnovaImportanceEvaluator()


def varied(study: "optuna.Study") -> list[str]:
    """The constants that took more than one value across the complete trials, in first-seen order: a dial that
    never moved (or only where it did nothing) cannot explain a difference, so no view ranks it."""
    from optuna.trial import TrialState

    values: dict[str, set[Any]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        for name, x in t.params.items():
            values.setdefault(name, set()).add(repr(x))
    return [name for name, seen in values.items() if len(seen) > 1]


def importances(study: "optuna.Study") -> dict[str, float]:
    """Each constant's importance for reaching the best trials' metric (PED-ANOVA, summing to 1), largest
    first, over the constants that varied (:func:`varied`); empty with fewer than ``MIN_IMPORTANCE_TRIALS``
    complete trials or none varied."""
    import optuna
    from optuna.trial import TrialState

    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < MIN_IMPORTANCE_TRIALS:
        return {}
    moved = varied(study)
    if not moved:
        return {}
    with warnings.catch_warnings():  # few trials: PED-ANOVA warns that its quantiles pick the same trials
        warnings.simplefilter("ignore")
        return dict(optuna.importance.get_param_importances(study, evaluator=_evaluator(), params=moved))


def tuner_text(view: RunView, last: int | None = None) -> str:
    """The tuner's views as text for a terminal: parameter importance as bars (over the constants that varied),
    then the history, one line per trial labelled by experiment number (its constants, the metric, the loop's
    best so far: its kept rows, not the lowest metric; ``*`` marks a keep), the ``last`` ones only when given.
    Empty for a run the tuner had no part in.

    >>> print(tuner_text(view))        # doctest: +SKIP
    tuner (Optuna): 7 trials, 7 complete, score minimize
    parameter importance (PED-ANOVA: how much each constant decides a top-10% score)
      X      0.913  ##################
    ...
    """
    if not is_tuner_run(view):
        return ""
    from optuna.trial import TrialState

    study = load_study(view)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    metric = view.config.metric
    lines = [f"tuner (Optuna): {len(trials)} trials, {len(complete)} complete, {metric} {view.config.direction}"]
    imp = importances(study)
    if imp:
        lines.append(f"parameter importance (PED-ANOVA: how much each constant decides a top-10% {metric})")
        width = max(len(k) for k in imp)
        lines += [f"  {k:<{width}}  {v:5.3f}  {'#' * round(20 * v)}" for k, v in imp.items()]
    else:
        lines.append(f"parameter importance: from {MIN_IMPORTANCE_TRIALS} complete trials "
                     f"({len(complete)} so far)")
    names = list(imp) + sorted({k for t in trials for k in t.params} - set(imp))
    best = loop_best(view)
    rows = []
    for t in trials:
        v = t.value if t.state == TrialState.COMPLETE else None
        status = str(t.user_attrs.get("status", t.state.name.lower()))
        number = t.user_attrs.get("experiment", t.number)
        # the loop's best, never the study's lowest value: a change within the noise was discarded
        kept = status == str(Status.KEEP)
        rows.append([f"#{number}", _num(v), _num(best.get(number)),
                     *(_num(t.params.get(k)) for k in names), status + (" *" if kept else "")])
    header = ["exp", metric, "best", *names, "status"]
    shown = rows if last is None else rows[-last:]
    widths = [max(len(r[i]) for r in [header, *shown]) for i in range(len(header))]
    lines.append("history" + (f" (the last {len(shown)} of {len(rows)})" if len(shown) < len(rows) else ""))
    for r in [header, *shown]:  # numbers right-aligned, the status (last) left
        cells = [c.rjust(w) for c, w in zip(r[:-1], widths)] + [r[-1]]
        lines.append("  " + "  ".join(cells))
    return "\n".join(lines)


def _num(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


__all__ = ["study_dir", "study_path", "storage_url", "write_study", "load_study", "tuner_figures", "tuner_text",
           "importances", "varied", "numbered", "loop_best", "history_figure", "study_trials", "sync",
           "is_tuner_run", "MIN_IMPORTANCE_TRIALS"]
