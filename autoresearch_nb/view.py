"""The read model: one run's experiments, best, results, noise floor and curves, read from the store.

The loop, the dashboard, the static report and :func:`load_results` all read through here, so "the best" and
"the results table" are computed in one place. Opening a view takes no lock and writes nothing: it is safe
while another process runs the loop.

>>> view = RunView.open(".", "nov27")   # doctest: +SKIP
>>> view.best.metric, len(view.results)   # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config
from .errors import AutoresearchError
from .git import find_repo
from .layout import store_path as _layout_store_path
from .records import CurvePoint, Experiment, best_of
from .store import Store

if TYPE_CHECKING:
    import pandas as pd


def store_path(repo_root: Path) -> Path:
    """Where a repository's experiment store lives."""
    return _layout_store_path(repo_root)


def _config_of(stored: dict[str, Any]) -> Config:
    names = {f.name for f in fields(Config)}
    return Config(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in stored.items() if k in names})


class RunView:
    """Read-only access to one run: experiments, best, results, noise floor, curves and config."""

    def __init__(self, repo_root: Path, tag: str, store: Store, config: Config) -> None:
        self.repo_root = repo_root
        self.tag = tag
        self.store = store
        self.config = config

    @classmethod
    def open(cls, repo: str | Path = ".", tag: str | None = None) -> "RunView":
        """Open run ``tag`` of ``repo`` read-only; without a tag, the most recently created run."""
        root, store = _open_store(repo)
        try:
            if tag is None:
                runs = store.runs()
                if not runs:
                    raise AutoresearchError(f"no runs in {root} yet")
                tag = runs[-1]["tag"]
            run = _run(store, root, tag)
        except BaseException:
            store.close()
            raise
        return cls(root, tag, store, _config_of(run["config"]))

    @property
    def experiments(self) -> list[Experiment]:
        """Every experiment of the run, oldest first."""
        return self.store.experiments(self.tag)

    @property
    def results(self) -> "pd.DataFrame":
        """Every experiment as a pandas DataFrame (newest last)."""
        from . import results as _results

        return _results.dataframe(self.experiments, self.config.metric, self.config.maximize, self.config.record)

    @property
    def best(self) -> Experiment | None:
        """The best kept experiment, or None before any keep."""
        return best_of(self.experiments, self.config.maximize)

    @property
    def noise(self) -> dict[str, Any] | None:
        """The run's noise floor (``sigma``, ``mad_sigma``, ``df``, the repeats behind it), or None."""
        run = self.store.get_run(self.tag)
        return ((run or {}).get("state") or {}).get("noise")

    @property
    def stats(self) -> dict[str, Any]:
        """The run's overlap figures (:func:`~autoresearch_nb.results.run_stats`): duty cycle, conflict rate."""
        from . import results as _results

        run = self.store.get_run(self.tag) or {}
        return _results.run_stats(self.experiments, run.get("state") or {})

    @property
    def total_cost_usd(self) -> float:
        return sum(e.cost_usd or 0.0 for e in self.experiments)

    def curve(self, number: int) -> list[CurvePoint]:
        """The stored progress points of experiment ``number``."""
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


def _open_store(repo: str | Path) -> tuple[Path, Store]:
    root = find_repo(repo)
    path = store_path(root)
    if not path.exists():
        raise AutoresearchError(f"no experiment store in {root} yet (expected {path})")
    return root, Store(path)


def _run(store: Store, root: Path, tag: str) -> dict[str, Any]:
    run = store.get_run(tag)
    if run is None:
        raise AutoresearchError(f"no run tagged {tag!r} in {root}; runs: "
                                f"{', '.join(r['tag'] for r in store.runs()) or 'none'}")
    return run


def load_results(repo: str | Path = ".", tag: str | None = None) -> "pd.DataFrame":
    """Read a run's experiments as a DataFrame without opening (or locking) the run; safe while it runs.

    With no ``tag``, every run in the repo, with a ``tag`` column.
    """
    import pandas as pd

    from . import results as _results

    root, store = _open_store(repo)
    try:
        tags = [tag] if tag else [r["tag"] for r in store.runs()]
        frames = []
        for t in tags:
            run = _run(store, root, t)
            cfg = _config_of(run["config"])
            exps = store.experiments(t)
            frames.append(_results.dataframe(exps, cfg.metric, cfg.maximize, cfg.record))
            frames[-1].attrs.update(_results.run_stats(exps, run["state"]))  # one run's figures (a concat drops them)
        return pd.concat(frames) if len(frames) > 1 else (frames[0] if frames else _results.dataframe([]))
    finally:
        store.close()
