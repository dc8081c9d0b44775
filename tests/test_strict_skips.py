# python -m pytest tests/test_strict_skips.py -q
"""tests/strict_skips.py and .ci/run: in CI a skipped browser or Ray test fails the run and says why; other skips
and xfails stay what they are; without the variable nothing changes; .ci/run reports pytest's exit 5 and runs
apt-get and pip only when something is missing. Every run is a real pytest or bash subprocess; apt-get, sudo and
pip are fakes on PATH that record their calls (a test must never install anything)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIPS = '''
import pytest

def test_passes():
    pass

def test_needs_ray():
    pytest.skip("could not import 'ray': No module named 'ray'")

@pytest.fixture
def lab():
    pytest.skip("/usr/bin/chromium not installed")

def test_in_the_lab(lab):
    pass

def test_needs_a_gpu():
    pytest.skip("needs a GPU")

def test_array_is_not_ray():
    pytest.skip("array too large")

@pytest.mark.xfail(reason="a ray bug upstream")
def test_expected_to_fail():
    assert False
'''


def _pytest(folder: Path, strict: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AUTORESEARCH_NB_STRICT_SKIPS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if strict is not None:
        env["AUTORESEARCH_NB_STRICT_SKIPS"] = strict
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "tests.strict_skips",
                           "-p", "no:cacheprovider", *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120)


def _suite(tmp_path: Path) -> Path:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "test_mixed.py").write_text(SKIPS)
    return tmp_path


def test_in_ci_skips_of_ray_and_chromium_fail_and_say_why(tmp_path: Path) -> None:
    run = _pytest(_suite(tmp_path), "1")
    assert run.returncode == 1, run.stdout
    summary = run.stdout.split("skips that fail in CI", 1)[1]
    assert "test_mixed.py::test_needs_ray: skipped in CI" in summary
    assert "test_mixed.py::test_in_the_lab: skipped in CI" in summary
    assert "/usr/bin/chromium not installed" in summary
    assert "test_needs_a_gpu" not in summary and "test_array_is_not_ray" not in summary
    assert "1 failed, 1 passed, 2 skipped, 1 xfailed, 1 error" in run.stdout


def test_without_the_variable_skips_stay_skips(tmp_path: Path) -> None:
    for value in (None, "0", ""):
        run = _pytest(_suite(tmp_path), value)
        assert run.returncode == 0, run.stdout
        assert "1 passed, 4 skipped, 1 xfailed" in run.stdout
        assert "skips that fail in CI" not in run.stdout


def test_a_skipped_browser_module_fails_the_run_whatever_its_reason(tmp_path: Path) -> None:
    (tmp_path / "test_browser.py").write_text(
        'import pytest\npytest.skip("no display", allow_module_level=True)\n')
    (tmp_path / "test_other.py").write_text("def test_passes():\n    pass\n")
    strict = _pytest(tmp_path, "1")
    assert strict.returncode == 1, strict.stdout
    assert "test_browser.py: skipped in CI (AUTORESEARCH_NB_STRICT_SKIPS=1): no display" in strict.stdout
    assert "1 passed, 1 skipped" in strict.stdout  # the rest of the suite still ran
    assert _pytest(tmp_path, None).returncode == 0


def test_under_xdist_a_skipped_module_or_test_still_fails_the_run(tmp_path: Path) -> None:
    """CI runs the suite with pytest-xdist: skips happen in the workers and must still fail the controller's run."""
    pytest.importorskip("xdist")
    (tmp_path / "test_browser.py").write_text(
        'import pytest\npytest.skip("no display", allow_module_level=True)\n')
    (tmp_path / "test_other.py").write_text("def test_passes():\n    pass\n")
    workers = "2"
    strict = _pytest(tmp_path, "1", "-n", workers)
    assert strict.returncode == 1, strict.stdout
    assert strict.stdout.count("test_browser.py: skipped in CI (AUTORESEARCH_NB_STRICT_SKIPS=1): no display") == 1
    mixed = _pytest(_suite(tmp_path / "m"), "1", "-n", workers)
    assert mixed.returncode == 1 and "test_mixed.py::test_needs_ray: skipped in CI" in mixed.stdout, mixed.stdout
    assert _pytest(tmp_path, None, "-n", workers).returncode == 0


def _fake_tools(tmp_path: Path) -> tuple[Path, Path]:
    """A bin folder whose apt-get, sudo and pip only append their arguments to a log."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in ("apt-get", "pip"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n')
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir, log


def test_ci_run_reports_no_tests_collected_and_installs_only_what_is_missing(tmp_path: Path) -> None:
    bin_dir, log = _fake_tools(tmp_path)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               GIT_CONFIG_GLOBAL=str(tmp_path / "gitconfig"))
    deps_ok = subprocess.run([sys.executable, ".ci/deps_satisfied.py", "torch==2.13.0"], cwd=ROOT, env=env,
                             capture_output=True).returncode == 0
    run = subprocess.run(["bash", ".ci/run", "tests/test_strict_skips.py", "-k", "no_test_has_this_name"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    calls = log.read_text() if log.exists() else ""
    if Path("/usr/bin/chromium").exists():
        assert "apt-get" not in calls
        assert run.returncode == 5, run.stdout + run.stderr
        assert "pytest collected no tests (exit 5)" in run.stderr
        assert ("pip install -q torch==2.13.0 -e .[dev]" in calls) != deps_ok, calls
        assert "ci@autoresearch-nb.local" in (tmp_path / "gitconfig").read_text()  # an identity for the git tests
    else:  # the fake apt-get installs nothing: .ci/run must say so rather than run the suite without a browser
        assert "apt-get install -y -qq chromium" in calls
        assert run.returncode == 1 and "did not provide /usr/bin/chromium" in run.stderr
