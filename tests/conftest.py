"""Shared fixtures: a real git repository in a temp dir holding a target, and the demo target itself.

Test files import the helpers directly (``from conftest import DEMO_TARGET, git, make_repo``); the ``repo``
fixture gives a repository with the demo target as ``train.py`` and a ``program.md``.
"""
from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

# A target whose score is a function of two constants (the agents under test edit them); it reports the seed
# and the time budget it was given, so tests can check what the loop passed to the run.
DEMO_TARGET = textwrap.dedent("""\
    import os, sys, time
    X = 3.0
    Y = 2.0
    SLEEP = 0.0
    time.sleep(SLEEP)
    for step in range(1, 4):
        print(f"step {step} | loss: {1.0 / step:.3f} | elapsed: {step * 0.1:.1f}s", end="\\r", flush=True)
    print()
    print("---")
    print(f"score: {(X - 1) ** 2 + (Y + 1) ** 2:.6f}")
    print("peak_memory_mb: 2048")
    print(f"seed_seen: {os.environ.get('AUTORESEARCH_SEED')}")
    print(f"budget_seen: {os.environ.get('AUTORESEARCH_TIME_BUDGET')}")
""")


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` and return its output, stripped; a failing command fails the test."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(root: Path, files: dict[str, str]) -> Path:
    """A new repository at ``root`` (branch main, a local identity) with ``files`` in its first commit."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "t")
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "add", ".")
    git(root, "commit", "-qm", "init")
    return root


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A research repository with the demo target as ``train.py``."""
    return make_repo(tmp_path / "research", {"train.py": DEMO_TARGET, "program.md": "Make the score small.\n"})


@pytest.fixture(autouse=True, scope="session")
def _run_dirs(tmp_path_factory: pytest.TempPathFactory):
    """Run directories (``$XDG_CACHE_HOME/autoresearch_nb/runs``) in a temp dir, not the tester's cache;
    subprocesses (the CLI) inherit it."""
    import os
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


def orphan_mode() -> str:
    """A sandbox mode under which a run outlives a kill -9 of its loop, for the tests of the reopen's orphan kill:
    Landlock alone (its wrapper is a subreaper, not tied to the loop), or none where Landlock is missing. Under
    bubblewrap (--die-with-parent) the run dies with the loop; tests of that pass ``bubblewrap`` explicitly."""
    from autoresearch_nb import sandbox
    return "landlock" if sandbox.landlock_abi()[0] else "none"


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks into the scheduling groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With pytest-xdist (``-n``, ``--dist loadgroup``, as .ci/run runs the suite): a file's tests run in one
    worker, in order (tests of one file share tags and look for their runs' processes by marker), and every Ray
    test runs in the same worker (one local Ray instance at a time on a small machine). Without xdist the mark
    does nothing."""
    groups = {}
    for item in items:
        ray = "ray" in item.name.lower() or "ray_instance" in getattr(item, "fixturenames", ())
        groups[item.nodeid] = "ray" if ray else item.path.name
        item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))
    # The longest groups first (a stable sort: each group's tests keep their order), so no long group starts last
    # and runs on alone at the end; pytest_configure turns off xdist's own reorder (by test count, not time).
    rank = {name: i for i, name in enumerate(LONGEST_GROUPS)}
    items.sort(key=lambda item: rank.get(groups[item.nodeid], len(rank)))


# Groups by their seconds in a full run (the --durations of .ci/run on 2 cores), longest first.
# Ray's group is left where it falls: a Ray node started while four heavy groups begin at once timed out
# ("The current node timed out during startup"), so it starts once the first of them have ended.
LONGEST_GROUPS = ("test_verifier.py", "test_train.py", "test_benchmarks.py", "test_notebooks.py",
                  "test_provenance.py", "test_cli.py", "test_dashboard_widgets.py", "test_loop_noise.py",
                  "test_browser.py", "test_strict_skips.py", "test_paired.py", "test_lookahead.py",
                  "test_clock.py", "test_housekeeping.py", "test_verify.py", "test_boundary.py")


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the order above
        config.option.loadscopereorder = False


class EditsAgent:
    """An agent at the edge of the loop: proposes the (description, search, replace) edits it was given, in order,
    then runs out (QueueExhausted)."""

    name = "edits"

    def __init__(self, steps: list[tuple[str, str, str]]) -> None:
        self.steps = list(steps)

    def propose(self, context):
        from autoresearch_nb import Edit, Proposal
        from autoresearch_nb.agents.base import QueueExhausted
        if not self.steps:
            raise QueueExhausted("no more")
        desc, search, replace = self.steps.pop(0)
        return Proposal(desc, edits=(Edit(search, replace),))


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: two workers more than the cores on a small machine. Most tests wait on subprocesses (a run for
    its time budget, git, a sandbox or Ray starting), so two workers on two cores leave them idle much of the time
    (three: 20:04 for the whole suite on 2 cores, over the 20 minutes it must stay well under); no test's verdict
    depends on the machine's speed. ``--maxprocesses`` still caps it."""
    import os
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cores = os.cpu_count() or 1
    return cores + 2 if cores <= 3 else cores
