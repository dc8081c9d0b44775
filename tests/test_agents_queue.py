# python -m pytest tests/test_agents_queue.py -q
"""The queue agent: experiments planned in a file (TOML or JSON), proposed in order, resumable."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoresearch_nb.agents.base import Context, Proposal, QueueExhausted
from autoresearch_nb.agents.queue import QueueAgent
from autoresearch_nb.config import Config
from autoresearch_nb.edits import Edit
from autoresearch_nb.records import Experiment, Status

QUEUE = '''
[[experiment]]
description = "double the learning rate"
edits = [{ search = "LR = 0.01", replace = "LR = 0.02" }]

[[experiment]]
description = "bigger batch"
edit = { search = "BATCH = 32", replace = "BATCH = 64" }

[[experiment]]
description = "a whole new file"
content = "LR = 1\\n"
'''


def agent(repo: Path, **config) -> QueueAgent:
    return QueueAgent(Config(**config), repo)


def context(*history: tuple[str, str]) -> Context:
    """A context whose history holds (agent, description) experiments."""
    exps = tuple(Experiment(number=i, tag="t", status=Status.DISCARD, agent=a, description=d)
                 for i, (a, d) in enumerate(history))
    return Context(program="", editable="train.py", source="LR = 0.01\nBATCH = 32\n", history=exps,
                   config=Config())


def queued(repo: Path, text: str, name: str = "queue.toml") -> QueueAgent:
    (repo / name).write_text(text)
    return agent(repo, queue_file=name)


def one_entry(repo: Path, entry: object) -> Proposal:
    return queued(repo, json.dumps([entry]), "queue.json").propose(context())


# -- formats ----------------------------------------------------------------------------------------------

def test_toml_entries_are_proposed_in_order(tmp_path: Path) -> None:
    a = queued(tmp_path, QUEUE)
    assert a.propose(context()) == Proposal("double the learning rate", edits=(Edit("LR = 0.01", "LR = 0.02"),))


def test_single_edit_table_is_one_edit(tmp_path: Path) -> None:
    a = queued(tmp_path, QUEUE)
    p = a.propose(context(("queue", "double the learning rate")))
    assert (p.description, p.edits) == ("bigger batch", (Edit("BATCH = 32", "BATCH = 64"),))


def test_content_entry_is_a_whole_file(tmp_path: Path) -> None:
    a = queued(tmp_path, QUEUE)
    p = a.propose(context(("queue", "double the learning rate"), ("queue", "bigger batch")))
    assert (p.description, p.content, p.edits) == ("a whole new file", "LR = 1\n", ())


def test_json_list_works(tmp_path: Path) -> None:
    a = queued(tmp_path, json.dumps([{"description": "from json", "edits": [{"search": "a", "replace": "b"}]}]),
               "queue.json")
    assert a.propose(context()) == Proposal("from json", edits=(Edit("a", "b"),))


def test_default_name_falls_back_to_queue_json(tmp_path: Path) -> None:
    a = agent(tmp_path)  # the file may appear after the agent is made
    (tmp_path / "queue.json").write_text(json.dumps([{"description": "json by default", "content": "x = 1\n"}]))
    assert a.propose(context()).description == "json by default"


def test_file_entry_reads_the_file(tmp_path: Path) -> None:
    (tmp_path / "ideas").mkdir()
    (tmp_path / "ideas" / "v2.py").write_text("LR = 0.5\n")
    assert one_entry(tmp_path, {"description": "v2", "file": "ideas/v2.py"}).content == "LR = 0.5\n"


def test_single_experiment_table_is_one_entry(tmp_path: Path) -> None:
    a = queued(tmp_path, '[experiment]\ndescription = "only one"\ncontent = "x = 1\\n"\n')
    assert a.propose(context()).description == "only one"


# -- resume -----------------------------------------------------------------------------------------------------

def test_resume_skips_entries_already_in_the_history(tmp_path: Path) -> None:
    a = queued(tmp_path, QUEUE)
    assert a.propose(context(("queue", "double the learning rate"))).description == "bigger batch"


def test_history_of_another_agent_does_not_count(tmp_path: Path) -> None:
    a = queued(tmp_path, QUEUE)
    assert a.propose(context(("claude", "double the learning rate"))).description == "double the learning rate"


def test_repeated_descriptions_are_matched_by_position(tmp_path: Path) -> None:
    a = queued(tmp_path, json.dumps([{"description": "retry", "content": "first\n"},
                                     {"description": "retry", "content": "second\n"}]), "queue.json")
    assert a.propose(context(("queue", "retry"))).content == "second\n"


def test_queue_is_re_read_before_every_proposal(tmp_path: Path) -> None:
    a = queued(tmp_path, QUEUE)
    history = context(*(("queue", d) for d in ("double the learning rate", "bigger batch", "a whole new file")))
    with pytest.raises(QueueExhausted):
        a.propose(history)
    (tmp_path / "queue.toml").write_text(QUEUE + '\n[[experiment]]\ndescription = "appended"\ncontent = "y"\n')
    assert a.propose(history).description == "appended"


# -- bad entries become failed proposals ----------------------------------------------------------------------------

def test_edit_without_replace_is_a_failed_proposal(tmp_path: Path) -> None:
    p = one_entry(tmp_path, {"description": "half an edit", "edits": [{"search": "LR"}]})
    assert (p.description, p.error) == ("half an edit", "edit {'search': 'LR'} needs 'search' and 'replace'")


def test_edit_of_another_file_is_a_failed_proposal(tmp_path: Path) -> None:
    p = one_entry(tmp_path, {"description": "sneaky", "edits": [{"path": "prepare.py", "search": "a",
                                                                  "replace": "b"}]})
    assert p.error == "edit touches 'prepare.py'; only train.py may change"


def test_entry_without_a_change_is_a_failed_proposal(tmp_path: Path) -> None:
    assert one_entry(tmp_path, {"description": "nothing"}).error == \
        "the queued experiment has no edits, file or content"


def test_missing_file_is_a_failed_proposal(tmp_path: Path) -> None:
    assert one_entry(tmp_path, {"description": "v3", "file": "nope.py"}).error == \
        "queued file 'nope.py' does not exist"


def test_unreadable_file_is_a_failed_proposal(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\xff\xfe\x00binary")
    assert "cannot be read" in one_entry(tmp_path, {"description": "bin", "file": "weights.bin"}).error


def test_edits_that_are_not_a_list_are_a_failed_proposal(tmp_path: Path) -> None:
    assert "must be a list" in one_entry(tmp_path, {"description": "odd", "edits": 3}).error


def test_entry_that_is_not_a_table_is_a_failed_proposal(tmp_path: Path) -> None:
    p = one_entry(tmp_path, "double the learning rate")
    assert (p.description, "is not a table" in p.error) == ("double the learning rate", True)


def test_failed_entry_is_not_proposed_again_on_resume(tmp_path: Path) -> None:
    a = queued(tmp_path, json.dumps(["not a table", {"description": "good", "content": "x\n"}]), "queue.json")
    assert a.propose(context(("queue", "not a table"))).description == "good"


def test_entry_without_description_gets_a_placeholder(tmp_path: Path) -> None:
    assert one_entry(tmp_path, {"content": "x\n"}).description == "(no description)"


# -- nothing (more) to propose ---------------------------------------------------------------------------------------

def test_missing_queue_file_is_exhausted(tmp_path: Path) -> None:
    with pytest.raises(QueueExhausted, match="no queue file at"):
        agent(tmp_path).propose(context())


def test_empty_queue_is_exhausted(tmp_path: Path) -> None:
    with pytest.raises(QueueExhausted, match="all 0 queued experiments"):
        queued(tmp_path, "").propose(context())


def test_fully_proposed_queue_is_exhausted(tmp_path: Path) -> None:
    a = queued(tmp_path, QUEUE)
    history = context(*(("queue", d) for d in ("double the learning rate", "bigger batch", "a whole new file")))
    with pytest.raises(QueueExhausted, match="all 3 queued experiments in queue.toml have been proposed"):
        a.propose(history)


def test_unparsable_queue_is_exhausted_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(QueueExhausted, match="queue.toml cannot be parsed"):
        queued(tmp_path, "[[experiment]\n").propose(context())


def test_json_that_is_not_a_list_is_exhausted_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(QueueExhausted, match="must hold a list of experiments, not int"):
        queued(tmp_path, "3", "queue.json").propose(context())


# -- untrusted entries (issue 12, faults 7 and 8) ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.py", "sub/../../outside.py", ".git/config",
                                  "link.py"])
def test_a_file_outside_the_repo_is_refused_unread(tmp_path: Path, name: str) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "config").write_text("X = 1\n")
    (tmp_path / "outside.py").write_text("X = 1\n")
    (repo / "link.py").symlink_to(tmp_path / "outside.py")
    p = one_entry(repo, {"description": "steal", "file": name})
    assert p.content is None and "not inside the repository" in p.error


def test_a_file_inside_the_repo_by_a_roundabout_path_is_read(tmp_path: Path) -> None:
    (tmp_path / "ideas").mkdir()
    (tmp_path / "ideas" / "v2.py").write_text("LR = 3\n")
    assert one_entry(tmp_path, {"description": "v2", "file": "ideas/../ideas/v2.py"}).content == "LR = 3\n"


@pytest.mark.parametrize("entry", [{"description": "x", "content": "X = 3  # \ud800\n"},
                                   {"description": "x", "edits": [{"search": "LR = 0.01", "replace": "L\udfffR"}]}])
def test_a_lone_surrogate_is_a_failed_proposal_with_a_clear_reason(tmp_path: Path, entry: dict) -> None:
    p = one_entry(tmp_path, entry)
    assert p.content is None and not p.edits and "UTF-8 cannot encode" in p.error
    p.error.encode("utf-8")  # the reason itself can be stored


def test_a_lone_surrogate_in_a_description_is_stored_escaped_and_matched_on_resume(tmp_path: Path) -> None:
    a = queued(tmp_path, json.dumps([{"description": "x \ud800", "content": "LR = 1\n"},
                                     {"description": "next", "content": "LR = 2\n"}]), "queue.json")
    first = a.propose(context())
    assert first.description == "x \\ud800" and first.error and "UTF-8" in first.error
    assert a.propose(context(("queue", first.description))).description == "next"
