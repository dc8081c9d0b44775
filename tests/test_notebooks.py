# pytest tests/test_notebooks.py -q
"""The notebooks run unattended: papermill executes both on the demo target (a 2-second budget), through the
same code path with console progress and static images at the end; the committed notebooks carry no outputs."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import nbformat
import pytest

from autoresearch_nb import load_results
from autoresearch_nb.dashboard import make_demo_repo
from autoresearch_nb.dashboard.demo import QUEUE_TOML

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def kernel_env(base: Path) -> dict[str, str]:
    """Isolated Jupyter dirs with a ``python3`` kernelspec running this Python with this checkout importable."""
    data = base / "jupyter-data"
    spec = data / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python",
        "env": {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)},
    }))
    # nbconvert's templates sit in the base Python's share/jupyter when this runs in a venv made with
    # --system-site-packages (jupyter_core looks only under sys.prefix): name those folders too
    shares = [str(d) for d in dict.fromkeys(Path(p) / "share" / "jupyter" for p in (sys.prefix, sys.base_prefix))
              if (d / "nbconvert" / "templates").is_dir()]
    return {"JUPYTER_DATA_DIR": str(data), "JUPYTER_PATH": os.pathsep.join([str(data), *shares]),
            "JUPYTER_CONFIG_DIR": str(base / "jcfg"),
            "JUPYTER_RUNTIME_DIR": str(base / "jrt"), "IPYTHONDIR": str(base / "ipython"),
            "JUPYTER_PLATFORM_DIRS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


def outputs(path: Path) -> list[dict]:
    nb = nbformat.read(path, as_version=4)
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


@pytest.mark.parametrize("name", ["autoresearch.ipynb", "analysis.ipynb"])
def test_committed_notebooks_have_no_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: a cell has outputs"
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)


def _repo_notebooks() -> list[Path]:
    """Every notebook the repository tracks (not run or test output); ``notebooks/`` outside a git checkout."""
    tracked = subprocess.run(["git", "ls-files", "-z", "*.ipynb"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        return sorted(NOTEBOOKS.glob("*.ipynb"))
    return sorted(ROOT / name for name in tracked.stdout.split("\0") if name)


def test_the_repository_ships_its_notebooks():
    assert {p.name for p in _repo_notebooks()} >= {"autoresearch.ipynb", "analysis.ipynb"}


@pytest.mark.parametrize("path", _repo_notebooks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_notebook_validates_without_warnings(path):
    """nbformat 4.5 wants an id on every cell: a missing one is a MissingIDFieldWarning today, an error later."""
    import warnings

    raw = json.loads(path.read_text())
    ids = [c.get("id") for c in raw["cells"]]
    assert None not in ids, f"{path.name}: cells {[i for i, x in enumerate(ids) if x is None]} have no id"
    assert len(set(ids)) == len(ids), f"{path.name}: repeated cell ids"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any nbformat warning (missing id, invalid field, ...) fails the test
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)


def test_parameters_are_config_names():
    from autoresearch_nb.config import config_names

    nb = nbformat.read(NOTEBOOKS / "autoresearch.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    names = {line.split("=")[0].strip() for line in cell.source.splitlines() if "=" in line}
    assert names - {"repo", "tag", "agent", "n", "display"} <= set(config_names())
    assert {"time_budget_s", "max_experiments", "metric", "command"} <= names


@pytest.mark.slow
def test_papermill_runs_the_loop_then_the_analysis(tmp_path, monkeypatch):
    import papermill

    for k, v in kernel_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AUTORESEARCH_NB_DISPLAY", raising=False)
    # "->" in a description: the report must not print it escaped ("-&gt;", issue 16 bug 6)
    repo = make_demo_repo(tmp_path / "target", queue=QUEUE_TOML.replace('"double the width"',
                                                                        '"WIDTH 64 -> 128"'))
    out = tmp_path / "autoresearch.out.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / "autoresearch.ipynb"), str(out), progress_bar=False,
                               parameters=dict(repo=str(repo), tag="pm", agent="queue", time_budget_s=2,
                                               max_experiments=4), cwd=str(tmp_path))
    df = load_results(repo, "pm")
    assert len(df) == 4 and df["status"].tolist()[0] == "keep"
    outs = outputs(out)
    text = "".join(o.get("text", "") for o in outs if o["output_type"] == "stream")
    assert "#1    keep" in text and "loop finished" in text  # console progress, not widgets
    assert "experiment 4 / 4" in text  # the overall progress against max_experiments
    assert " 10% " in text and " 50% " in text  # not a terminal: a progress line every 10 % of a run
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outs)
    assert sum("image/png" in o.get("data", {}) for o in outs) >= 2  # the static report: chart and curves
    assert any("<table" in o.get("data", {}).get("text/html", "") for o in outs)
    summary = "".join(o.get("data", {}).get("text/markdown", "") for o in outs)
    assert "noise σ" in summary and "keep past" in summary  # the report states the floor and the threshold
    assert "WIDTH 64 -> 128" in summary and "&gt;" not in summary

    ana = tmp_path / "analysis.out.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / "analysis.ipynb"), str(ana), progress_bar=False,
                               parameters=dict(repo=str(repo), tag="pm", number=2, compare=[0, 2]),
                               cwd=str(tmp_path))
    outs = outputs(ana)
    overlay = next(c for c in nbformat.read(ana, as_version=4).cells if "numbers=compare" in c.source)
    assert [o["output_type"] for o in overlay.outputs] == ["execute_result"]  # the chosen curves, no error
    assert "image/png" in overlay.outputs[0]["data"]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outs)
    shown = unescape(re.sub(r"<[^>]+>", "", html))  # the diff's code is in Pygments' coloured spans
    assert "halve the width" in shown and "WIDTH = 32" in shown  # the diff of experiment 2
    assert sum("image/png" in o.get("data", {}) for o in outs) == 4  # progress, effects, cumulative, curves
    assert "no API cost" in "".join(o.get("data", {}).get("text/markdown", "") for o in outs)  # no flat zero line
    text = "".join(o.get("text", "") for o in outs if o["output_type"] == "stream")
    assert "WIDTH 64 -> 128" in text and "&gt;" not in text  # printed once, unescaped
    assert "noise σ" in text  # the floor, above the effects in units of σ
    assert "tuner views: none" in text  # a queue run has no Optuna study to show (tuner runs: tests/test_study.py)
    assert "effect_sigma" in html and "margin_sigma" in html


@pytest.mark.slow
def test_a_tuner_runs_html_report_and_analysis_show_optunas_views(tmp_path, monkeypatch):
    """The papermill report of a tuner run, converted to HTML as a user would (nbconvert), holds Optuna's
    history, slice and importance plots; the analysis notebook shows each of them once."""
    import papermill
    from nbconvert import HTMLExporter

    for k, v in kernel_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AUTORESEARCH_NB_DISPLAY", raising=False)
    repo = make_demo_repo(tmp_path / "target")
    out = tmp_path / "tuner.out.ipynb"
    # lookahead 0: no proposal prepared during a run that a keep then invalidates; 8 rows give >= 5 complete trials
    papermill.execute_notebook(str(NOTEBOOKS / "autoresearch.ipynb"), str(out), progress_bar=False,
                               parameters=dict(repo=str(repo), tag="tu", agent="tuner", time_budget_s=1,
                                               max_experiments=8, noise_repeats=1, lookahead=0),
                               cwd=str(tmp_path))
    df = load_results(repo, "tu")
    assert len(df) == 8 and set(df["agent"]) == {"baseline", "tuner"}
    html, _ = HTMLExporter().from_filename(str(out))
    report = html[html.index("The tuner"):]
    assert "The tuner&#39;s views (Optuna)" in html or "The tuner's views (Optuna)" in html
    assert ("the optimization history, the metric against each constant, each trial across the constants "
            "(parallel coordinates), parameter importance") in report
    assert report.count('src="data:image/png;base64,') == 4  # history, slice, parallel, importances
    assert "font-family:var(--jp-code-font-family, monospace)" in html  # the best diff, in a code font

    ana = tmp_path / "analysis.out.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / "analysis.ipynb"), str(ana), progress_bar=False,
                               parameters=dict(repo=str(repo), tag="tu"), cwd=str(tmp_path))
    cell = next(c for c in nbformat.read(ana, as_version=4).cells if "tuner_figures(run)" in c.source)
    text = "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream")
    assert "tuner views: history, slice, parallel, importances" in text
    assert sum("image/png" in o.get("data", {}) for o in cell.outputs) == 4  # each figure once, not twice


@pytest.mark.slow
def test_cli_runs_the_notebook(tmp_path):
    # Issue 26, bugs 12 and 13: the notebook inside the repository (as a user keeps it), no --output: the executed
    # copy goes under .autoresearch/, not beside it in the checkout, no run reports the checkout changed, and
    # the experiment lines stream to the terminal as the plain `run` prints them.
    repo = make_demo_repo(tmp_path / "target")
    notebook = repo / "autoresearch.ipynb"
    notebook.write_text((NOTEBOOKS / "autoresearch.ipynb").read_text())
    env = {**os.environ, **kernel_env(tmp_path)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, "-m", "autoresearch_nb.cli", "run", "--notebook", str(notebook),
                           "--repo", str(repo), "--tag", "cli", "--agent", "queue", "--time-budget-s", "2",
                           "--max-experiments", "3"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(load_results(repo, "cli")) == 3
    out = repo / ".autoresearch" / "notebooks" / "cli" / "autoresearch.out.ipynb"
    assert out.exists() and not list(repo.glob("*.out.ipynb"))
    assert "#1 " in proc.stdout and "experiment 3 / 3" in proc.stdout and "loop finished" in proc.stdout
    assert "checkout changed" not in proc.stdout + proc.stderr
    assert all(e.status != "violation" for e in load_results(repo, "cli").itertuples())


@pytest.mark.slow
def test_a_key_like_notebook_parameter_is_refused(tmp_path, monkeypatch):
    import papermill

    for k, v in kernel_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    repo = make_demo_repo(tmp_path / "target")
    with pytest.raises(papermill.PapermillExecutionError, match="refusing setting 'anthropic_api_key'"):
        papermill.execute_notebook(str(NOTEBOOKS / "autoresearch.ipynb"), str(tmp_path / "out.ipynb"),
                                   progress_bar=False, cwd=str(tmp_path),
                                   parameters=dict(repo=str(repo), tag="key", agent="queue", time_budget_s=2,
                                                   anthropic_api_key="sk-ant-" + "test-not-real"))
    assert not (repo / ".autoresearch" / "store.db").exists()  # refused before the run was opened
