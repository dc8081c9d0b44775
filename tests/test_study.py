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
    assert set(figures) == {"history", "slice", "parallel", "importances"}
    assert all(isinstance(f, Figure) for f in figures.values())
    # issue 26: the parallel coordinates, one axis per constant that varied
    labels = " ".join(t.get_text() for ax in figures["parallel"].axes for t in ax.get_xticklabels())
    assert "X" in labels and "Y" in labels
    assert any("X" in ax.get_xlabel() or "X" in ax.get_title() for ax in figures["slice"].axes)


def _history_rows(text: str) -> list[list[str]]:
    """The history lines of ``tuner_text`` split into cells (the header line first)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("history"))
    return [line.split() for line in lines[start + 1:]]


def test_the_report_leaves_matplotlibs_global_style_alone(repo: Path) -> None:
    # Issue 26, bug 4: Optuna's plots set the ggplot style for the whole kernel (axes.facecolor turned grey).
    import matplotlib.style

    from autoresearch_nb.dashboard.static import report

    with matplotlib.rc_context():  # a known start, whatever an earlier test left behind
        matplotlib.style.use("default")
        before = dict(matplotlib.rcParams)
        with RunView.open(repo, "t") as tuned:
            out = report(tuned, display=False)
            assert tuner_figures(tuned)  # the Optuna views were drawn (twice, here)
        after = dict(matplotlib.rcParams)
    assert len(out) > 4 and before["axes.facecolor"] == "white"
    assert {k: (before[k], after[k]) for k in before if before[k] != after[k]} == {}


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
        assert (r[-1] == "*") == (e.status.value == "keep")  # a keep (here, with the plain rule, a new low)


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
    assert len(images) == sum(isinstance(o, Image) for o in theirs) + 4  # history, slice, parallel, importances
    assert any(isinstance(o, Markdown) and "tuner's views (Optuna)" in o.data for o in ours)
    assert not any(isinstance(o, Markdown) and "tuner's views" in o.data for o in theirs)


# --- the study agrees with the loop ---------------------------------------------------------------------------

NOISY = textwrap.dedent("""\
    X = 3.0
    Y = 1.0
    DEPTH = 4
    MODE = "a"  # choices: a, b

    print("---")
""")


def _row(number: int, status, x: float, metric: float | None, **kw):
    from autoresearch_nb.records import Experiment

    agent = "baseline" if number == 0 else "tuner"
    return Experiment(number, "h", status, "baseline" if number == 0 else f"X -> {x}", metric=metric,
                      content=NOISY.replace("X = 3.0", f"X = {x}"), agent=agent, **kw)


def hand_view(tmp_path: Path, rows: list) -> RunView:
    """A RunView over a store holding ``rows`` as run "h" (what the loop would have recorded)."""
    from autoresearch_nb.config import Config
    from autoresearch_nb.store import Store

    store = Store(tmp_path / "store.db")
    store.create_run("h", {"metric": "score"})
    for e in rows:
        store.save(e)
    return RunView(tmp_path, "h", store, Config(metric="score"))


def loop_like_history() -> list:
    """A baseline, a keep, and a discard whose decided metric (paired: the best's plus the mean difference) is
    lower than the kept one's, within the noise; its first run alone was lower still. Then more discards."""
    from autoresearch_nb.records import Status

    rows = [_row(0, Status.KEEP, 3.0, 1.00, runs=[1.0], seeds=[0]),
            _row(1, Status.KEEP, 2.5, 0.90, runs=[0.91, 0.89], seeds=[0, 1]),
            _row(2, Status.DISCARD, 2.0, 0.895, runs=[0.70, 0.95, 0.97], seeds=[0, 1, 2]),
            _row(3, Status.INVALID, 2.2, None)]
    rows += [_row(n, Status.DISCARD, 2.5 + n / 10, 0.95 + n / 100) for n in range(4, 10)]
    return rows


def test_trial_values_are_the_loops_decided_metrics_not_a_first_run(tmp_path: Path) -> None:
    with hand_view(tmp_path, loop_like_history()) as view:
        study = load_study(view)
        exps = {e.number: e for e in view.experiments}
    values = {t.user_attrs["experiment"]: t.value for t in study.trials}
    assert values == {n: e.metric for n, e in exps.items() if e.metric is not None}
    assert values[2] == 0.895 and values[2] != exps[2].runs[0]  # the decision value, not its first run
    assert [t.user_attrs["kept"] for t in study.trials][:3] == [True, True, False]


def test_every_view_shows_the_loops_best_labelled_by_experiment(tmp_path: Path) -> None:
    """Optuna's best trial is #2 (0.895), a change the loop discarded within the noise; the loop's best is #1."""
    with hand_view(tmp_path, loop_like_history()) as view:
        assert load_study(view).best_trial.user_attrs["experiment"] == 2  # what the views must not show
        text = tuner_text(view)
        figures = tuner_figures(view)
        assert view.best.number == 1
    header, *rows = _history_rows(text)
    by = {int(r[0][1:]): r for r in rows}
    assert sorted(by) == [0, 1, 2, *range(4, 10)]  # experiment numbers (#3 never ran), not trial numbers
    for n, r in by.items():
        assert float(r[header.index("best")]) == (1.0 if n == 0 else 0.90), r
        assert (r[-1] == "*") == (n in (0, 1))  # a star marks a keep, never the discarded low value
    history = figures["history"].axes[0]
    assert history.get_xlabel() == "experiment"
    step = next(line for line in history.get_lines() if "best" in str(line.get_label()))
    assert list(step.get_ydata()) == [1.0, 0.9, 0.9, 0.9, *[0.9] * 6] and 0.895 not in list(step.get_ydata())
    assert list(step.get_xdata()) == list(range(10))
    assert "experiment" in [ax.get_ylabel() for ax in figures["slice"].axes]  # the colour bar: experiment numbers


def test_trials_of_the_figures_are_numbered_by_experiment(tmp_path: Path) -> None:
    from autoresearch_nb.study import numbered

    with hand_view(tmp_path, loop_like_history()) as view:
        study = numbered(load_study(view))
    assert all(t.number == t.user_attrs["experiment"] for t in study.trials)
    assert study.trials[3].state.name == "FAIL"  # the invalid row fills its number, drawn by no plot


def test_importance_ranks_only_the_dials_that_varied(tmp_path: Path) -> None:
    """Y, DEPTH and MODE never moved: they cannot explain any difference, so they are not ranked."""
    from autoresearch_nb.study import importances, varied

    with hand_view(tmp_path, loop_like_history()) as view:
        study = load_study(view)
        text = tuner_text(view)
        figures = tuner_figures(view)
    assert varied(study) == ["X"]
    assert list(importances(study)) == ["X"]
    importance_lines = text.split("parameter importance")[1].split("history")[0]
    assert "DEPTH" not in importance_lines and "MODE" not in importance_lines
    labels = [t.get_text() for t in figures["importances"].axes[0].get_yticklabels()]
    assert labels == ["X"]


def test_a_new_choice_does_not_break_the_mirrored_study_on_resume(tmp_path: Path) -> None:
    """A ``# choices:`` value added between sessions changes MODE's distribution; Optuna refuses a changed
    distribution under the same name, so the mirror is written anew from the store's rows."""
    import optuna

    from autoresearch_nb.agents.space import discover
    from autoresearch_nb.records import Status
    from autoresearch_nb.study import storage, study_trials, sync

    rows = [_row(0, Status.KEEP, 3.0, 1.0), _row(1, Status.DISCARD, 2.0, 1.1)]
    path = tmp_path / "optuna" / "h.db"
    before = study_trials(discover(NOISY), rows, maximize=False)
    assert sync(storage(path), "h", "minimize", before) == 2
    widened = NOISY.replace("# choices: a, b", "# choices: a, b, c")
    rows2 = [*(e.with_(content=e.content.replace("# choices: a, b", "# choices: a, b, c")) for e in rows),
             _row(2, Status.DISCARD, 2.5, 0.99).with_(content=widened.replace('MODE = "a"', 'MODE = "c"')
                                                      .replace("X = 3.0", "X = 2.5"))]
    after = study_trials(discover(widened), rows2, maximize=False)
    assert sync(storage(path), "h", "minimize", after) == 3  # rebuilt: all three under the new distribution
    study = optuna.load_study(study_name="h", storage=storage_url(path))
    assert {t.user_attrs["experiment"]: t.params["MODE"] for t in study.trials} == {0: "'a'", 1: "'a'", 2: "'c'"}
    assert sync(storage(path), "h", "minimize", after) == 0  # and then only what it lacks, as before
