# python -m pytest tests/test_errors.py -q
"""Every error the library raises on purpose is an AutoresearchError, and still what callers caught before."""
from __future__ import annotations

import pytest

from autoresearch_nb.agents.base import QueueExhausted
from autoresearch_nb.agents.space import SpaceError
from autoresearch_nb.edits import EditError
from autoresearch_nb.errors import (AgentError, AutoresearchError, BudgetExceeded, ConfigError, GitError, StateError,
                                    StoreError)
from autoresearch_nb.harness.corpus import CorpusError
from autoresearch_nb.harness.download import DownloadError, NotFound


@pytest.mark.parametrize("error, also", [
    (QueueExhausted, Exception), (EditError, ValueError), (SpaceError, ValueError), (CorpusError, RuntimeError),
    (DownloadError, RuntimeError), (NotFound, RuntimeError), (ConfigError, Exception), (GitError, Exception),
    (StoreError, Exception), (AgentError, Exception), (BudgetExceeded, Exception), (StateError, Exception),
])
def test_one_base_class(error: type, also: type) -> None:
    assert issubclass(error, AutoresearchError) and issubclass(error, also)


def test_a_git_error_carries_its_command() -> None:
    e = GitError("reset failed", command="git reset --hard x", code=128, stderr="fatal: bad ref\n")
    assert (e.command, e.code) == ("git reset --hard x", 128)
    assert "fatal: bad ref" in str(e) and "exit 128" in str(e)
