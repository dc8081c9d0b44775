# python -m pytest tests/test_layout.py -q
"""The one owner of the on-disk layout and of the tag rule."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git

from autoresearch_nb import Loop
from autoresearch_nb.errors import ConfigError
from autoresearch_nb.layout import RunPaths, TagError, cache_home, check_tag, session_dir, store_path
from autoresearch_nb.rundir import run_dir_for


def test_run_paths_name_every_folder_of_a_run(tmp_path: Path) -> None:
    p = RunPaths(tmp_path, "nov27")
    state = tmp_path / ".autoresearch"
    assert (p.store, p.lock, p.log("0007.1"), p.worktree, p.results_tsv) == (
        state / "store.db", state / "locks" / "nov27.lock", state / "logs" / "nov27" / "0007.1.log",
        state / "worktrees" / "nov27", state / "results" / "nov27" / "results.tsv")
    assert store_path(tmp_path) == p.store


def test_run_directories_live_in_the_cache_one_folder_per_repository_and_tag(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    p = RunPaths(tmp_path / "proj", "t")
    assert cache_home() == tmp_path / "cache" / "autoresearch_nb"
    assert p.run_dir(2) == run_dir_for(tmp_path / "proj", "t", 2) == p.session() / "w2"
    assert p.run_dir(-1).name == "w9999" and p.artifact(3) == p.session() / "artifacts" / "3"
    assert p.session().parent.name.startswith("proj-") and p.session() == session_dir(tmp_path / "proj", "t")
    assert RunPaths(tmp_path / "other" / "proj", "t").session() != p.session()  # same name, another checkout


@pytest.mark.parametrize("tag", ["x.lock", "a..b", "x.", "-x", ".x", "a/b", "a b", "x" * 65])
def test_a_tag_git_or_a_path_cannot_take_is_refused(tag: str) -> None:
    with pytest.raises(TagError, match="tag"):
        check_tag(tag)


def test_no_tag_is_todays_date() -> None:
    import time
    assert check_tag(None) == time.strftime("%b%d").lower() and check_tag("nov27") == "nov27"


@pytest.mark.parametrize("tag", ["x.lock", "a..b"])
def test_a_bad_tag_is_refused_before_anything_is_created(repo: Path, tag: str) -> None:
    """Loop.open used to fail late on x.lock (a GitError) and leave a lock behind, while the CLI refused it
    cleanly: one rule now, checked first, with the same words in both."""
    with pytest.raises(ConfigError) as raised:
        Loop.open(repo, tag=tag, agent="tuner")
    assert not (repo / ".autoresearch").exists()
    assert git(repo, "branch", "--list", "autoresearch/*") == ""
    cli = subprocess.run([sys.executable, "-m", "autoresearch_nb.cli", "run", "--tag", tag, "--repo", str(repo)],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and str(raised.value) in cli.stderr
    assert not (repo / ".autoresearch").exists()
