# python -m pytest tests/test_packaging.py -q
"""The set-up files agree: pyproject.toml, environment.yml and the README's commands."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_installs_the_same_set_as_pyproject() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pip = [p for p in pip if not p.startswith("-e")]
    # The same set, with the same specifiers, except torch: pinned there (an install command), a range here.
    assert {_name(d): d.replace(" ", "") for d in deps if _name(d) != "torch"} == \
        {_name(p): p.replace(" ", "") for p in pip if _name(p) != "torch"}
    assert {_name(d) for d in deps} == {_name(p) for p in pip}
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"] if isinstance(d, str))


def test_torch_is_a_range_in_the_package_and_pinned_in_every_install_command() -> None:
    # The package accepts the torch a GPU image already has (a range that 2.13.0 satisfies); every install command
    # we ship pins 2.13.0, because an unpinned torch downloads a multi-GB CUDA build on the CPU machines.
    from packaging.requirements import Requirement

    deps = [Requirement(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    torch = next(r for r in deps if r.name == "torch")
    assert torch.specifier.contains("2.13.0") and not str(torch.specifier).startswith("==")
    readme = (ROOT / "README.md").read_text()
    assert readme.count("pip install torch==2.13.0 -e .") == 1 and readme.count("pip install -q torch==2.13.0") == 1
    assert "torch==2.13.0" in (ROOT / "environment.yml").read_text()
    assert "torch==2.13.0" in (ROOT / ".ci" / "run").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    install, test = 'pip install -q torch==2.13.0 -e ".[dev]"', "python -m pytest -q"
    workers = "-n auto --maxprocesses 4 --dist loadgroup"  # pytest-xdist, as the dev extra installs it
    assert f"{install} && {test} {workers}\n" in readme and install in ci
    assert f"{test} -p tests.strict_skips {workers}" in ci
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert any(d.startswith("pytest-xdist") for d in dev)


def test_notebooks_have_no_outputs() -> None:
    import json
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        for cell in cells:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and not cell.get("execution_count"), nb.name


HEAVY = ("git", "optuna", "pandas", "anthropic", "ipywidgets", "matplotlib")


def _imported_after(statement: str) -> set[str]:
    """Top-level packages in sys.modules after ``statement`` runs in a fresh interpreter."""
    import os
    import subprocess
    import sys

    code = f"{statement}; import sys; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_importing_the_harness_pulls_in_only_what_training_needs() -> None:
    # train.py imports the harness in every run: no loop, git, agents or data frames there.
    loaded = _imported_after("import autoresearch_nb.harness")
    assert "torch" in loaded  # the check sees real imports
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_importing_the_package_is_light() -> None:
    loaded = _imported_after("import autoresearch_nb")
    assert not loaded & {*HEAVY, "torch", "numpy"}, sorted(loaded & {*HEAVY, "torch", "numpy"})


def test_every_public_name_resolves() -> None:
    import autoresearch_nb

    for name in autoresearch_nb.__all__:
        assert getattr(autoresearch_nb, name) is not None, name
    assert callable(autoresearch_nb.report) and autoresearch_nb.Loop.__name__ == "Loop"


def test_the_readme_fits_on_a_screen_and_its_links_resolve() -> None:
    """A researcher decides in one screen: the README keeps what it is, the two commands, the notebook snippet
    and links; the fine print lives in docs/ (and each link there resolves)."""
    import re
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 80
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)\)", page.read_text()):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), f"{page.name} links to a missing {target}"
