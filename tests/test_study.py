# python -m pytest tests/test_study.py -q
"""The tuner's Optuna views: the study file a real tuner run writes, its rebuild from the store, the figures."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from autoresearch_nb.study import load_study, storage_url, study_path, tuner_figures  # noqa: E402
from autoresearch_nb.view import RunView  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # research_repo.py sits beside this file
from research_repo import cli, make_repo, queue  # noqa: E402

TARGET = textwrap.dedent("""\
    X = 3.0
    Y = 1.0
    DEPTH = 4

    def main():
        print("step 1 | loss: 0.5")
        print("---")
        print(f"score: {(X - 1) ** 2 + (Y - 2) ** 2 + 0.01 * DEPTH:.6f}")

    main()
""")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tuner run "t" (7 experiments) and one queue run "q" in the same repo."""
    files = {"train.py": TARGET, "queue.toml": queue(("3.0", "2.0"))}
    root = make_repo(tmp_path_factory.mktemp("study") / "r", files)
    # --lookahead 0: the study is written before each proposal, one proposal after each decision (with overlap,
    # the next proposal comes while the last run is still going)
    common = ("--repo", str(root), "--metric", "score", "--time-budget", "5", "--noise-repeats", "1",
              "--lookahead", "0")
    for tag, agent in (("t", "tuner"), ("q", "queue")):
        r = cli("run", "--tag", tag, "--agent", agent, "--max-experiments", "7", *common)
        assert r.returncode == 0, r.stderr
    return root


def stored(root: Path, tag: str) -> dict[int, float]:
    import optuna

    study = optuna.load_study(study_name=tag, storage=storage_url(study_path(root, tag)))
    return {t.user_attrs["experiment"]: t.value for t in study.trials}


def ran(root: Path, tag: str) -> dict[int, float]:
    with RunView.open(root, tag) as view:
        return {e.number: e.metric for e in view.experiments if e.status.ran}


def test_the_tuner_writes_its_study_file_as_it_runs(repo: Path) -> None:
    trials = stored(repo, "t")
    # the study is written before each proposal: it holds every experiment but the last one
    everything = ran(repo, "t")
    assert len(everything) == 7
    last = max(everything)
    assert trials == {n: m for n, m in everything.items() if n != last}


def test_the_study_command_adds_what_the_file_lacks(repo: Path) -> None:
    assert len(stored(repo, "t")) == 6
    r = cli("study", "--tag", "t", "--repo", str(repo))
    assert r.returncode == 0, r.stderr
    assert stored(repo, "t") == ran(repo, "t")
    import optuna

    stale = optuna.load_study(study_name="t", storage=storage_url(study_path(repo, "t")))
    stale.add_trial(optuna.trial.create_trial(value=9.0, user_attrs={"experiment": 99}))
    again = cli("study", "--tag", "t", "--repo", str(repo), "--rebuild")
    assert again.returncode == 0 and stored(repo, "t") == ran(repo, "t")  # replaced: the stale trial is gone


def test_the_study_command_rebuilds_a_missing_file_from_the_store(repo: Path) -> None:
    study_path(repo, "t").unlink()
    r = cli("study", "--tag", "t", "--repo", str(repo))
    assert r.returncode == 0, r.stderr
    assert f"optuna-dashboard {storage_url(study_path(repo, 't'))}" in r.stdout
    assert stored(repo, "t") == ran(repo, "t")


def test_a_run_without_the_tuner_has_no_study(repo: Path) -> None:
    r = cli("study", "--tag", "q", "--repo", str(repo))
    assert r.returncode == 1 and "no tuner experiments" in r.stderr
    assert not study_path(repo, "q").exists()
    with RunView.open(repo, "q") as view:
        assert tuner_figures(view) == {}


def test_load_study_holds_one_trial_per_run_experiment(repo: Path) -> None:
    with RunView.open(repo, "t") as view:
        study = load_study(view)
    assert {t.user_attrs["experiment"]: t.value for t in study.trials} == ran(repo, "t")
    assert set(study.trials[0].params) == {"X", "Y", "DEPTH"}


def test_tuner_figures_are_optunas_matplotlib_plots(repo: Path) -> None:
    from matplotlib.figure import Figure

    with RunView.open(repo, "t") as view:
        figures = tuner_figures(view)
    assert set(figures) == {"history", "slice", "importances"}
    assert all(isinstance(f, Figure) for f in figures.values())
    assert any("X" in ax.get_xlabel() or "X" in ax.get_title() for ax in figures["slice"].axes)
