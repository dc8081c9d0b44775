# python -m pytest tests/test_study.py -q
"""The tuner's Optuna views: the study file a real tuner run writes, its rebuild from the store, the figures."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from autoresearch_nb.study import load_study, storage_url, study_path, tuner_figures, tuner_text  # noqa: E402
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


def _history_rows(text: str) -> list[list[str]]:
    """The history lines of ``tuner_text`` split into cells (the header line first)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("history"))
    return [line.split() for line in lines[start + 1:]]


def test_tuner_text_gives_importance_and_history_per_trial(repo: Path) -> None:
    from autoresearch_nb.study import importances

    with RunView.open(repo, "t") as view:
        text = tuner_text(view)
        imp = importances(load_study(view))
        exps = {e.number: e for e in view.experiments if e.status.ran}
    assert set(imp) == {"X", "Y", "DEPTH"} and abs(sum(imp.values()) - 1) < 1e-6
    for name, share in imp.items():  # the bars say the evaluator's numbers
        assert any(line.split()[:2] == [name, f"{share:5.3f}".strip()] for line in text.splitlines()), text
    header, *rows = _history_rows(text)
    assert header[:3] == ["exp", "score", "best"] and set(header[3:6]) == {"X", "Y", "DEPTH"}
    assert [int(r[0][1:]) for r in rows] == sorted(exps)  # one line per experiment that ran, oldest first
    best = None
    for r in rows:
        e = exps[int(r[0][1:])]
        assert float(r[1]) == pytest.approx(e.metric, rel=1e-5)
        assert float(r[header.index("X")]) == pytest.approx(float(e.content.split("X = ")[1].split()[0]))
        best = e.metric if best is None else min(best, e.metric)
        assert float(r[2]) == pytest.approx(best, rel=1e-5)  # the best so far (minimize)
        assert (r[-1] == "*") == (e.metric == best and all(exps[n].metric > best for n in exps if n < e.number))


def test_tuner_text_can_show_only_the_last_trials(repo: Path) -> None:
    with RunView.open(repo, "t") as view:
        text = tuner_text(view, last=3)
        assert tuner_text(RunView.open(repo, "q")) == ""  # not a tuner run
    assert "history (the last 3 of 7)" in text and len(_history_rows(text)) == 4


def test_results_and_study_commands_print_the_tuner_views(repo: Path) -> None:
    results = cli("results", "--tag", "t", "--repo", str(repo))
    assert results.returncode == 0, results.stderr
    assert "parameter importance (PED-ANOVA" in results.stdout and "history" in results.stdout
    with RunView.open(repo, "t") as view:
        assert tuner_text(view, last=20) in results.stdout  # after the table
    study = cli("study", "--tag", "t", "--repo", str(repo))
    assert study.returncode == 0 and "parameter importance (PED-ANOVA" in study.stdout
    for args in (("--tag", "q"), ("--tag", "t", "--format", "csv")):  # no tuner, or a format for machines
        other = cli("results", *args, "--repo", str(repo))
        assert other.returncode == 0 and "tuner (Optuna)" not in other.stdout


def test_the_report_adds_the_tuner_views_and_pyplot_keeps_no_figure(repo: Path) -> None:
    import matplotlib.pyplot as plt
    from IPython.display import Image, Markdown

    from autoresearch_nb.dashboard.static import report

    plt.close("all")
    with RunView.open(repo, "t") as tuned, RunView.open(repo, "q") as queued:
        ours, theirs = report(tuned, display=False), report(queued, display=False)
    assert plt.get_fignums() == []  # the inline backend would show an open figure a second time
    images = [o for o in ours if isinstance(o, Image)]
    assert len(images) == sum(isinstance(o, Image) for o in theirs) + 3  # history, slice, importances
    assert any(isinstance(o, Markdown) and "tuner's views (Optuna)" in o.data for o in ours)
    assert not any(isinstance(o, Markdown) and "tuner's views" in o.data for o in theirs)
