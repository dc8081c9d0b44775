# python -m pytest tests/test_recorder.py -q
"""The run's ledger: its in-memory history always equals the store, whatever order rows are saved in."""
from __future__ import annotations

import random
from pathlib import Path

from autoresearch_nb.events import EventBus, EventKind
from autoresearch_nb.recorder import Recorder
from autoresearch_nb.records import Experiment, Status, best_of
from autoresearch_nb.results import ResultsFile, tsv_text
from autoresearch_nb.store import Store


def open_recorder(tmp_path: Path, told: list | None = None, maximize: bool = False) -> Recorder:
    store = Store(tmp_path / "store.db")
    store.create_run("t", {"metric": "score"}, "base0000")
    return Recorder(store, "t", EventBus(), ResultsFile(tmp_path / "results.tsv", "score"),
                    (told if told is not None else []).append, maximize)


def test_best_head_and_history_match_the_store_through_random_saves(tmp_path: Path) -> None:
    rng = random.Random(7)
    rec = open_recorder(tmp_path)
    for _ in range(200):
        number = rng.randrange(40)
        status = rng.choice([Status.KEEP, Status.DISCARD, Status.CRASH, Status.RUNNING])
        rec.save(Experiment(number=number, tag="t", status=status, metric=rng.random(), sha=f"{number:07d}",
                            cost_usd=rng.choice([0.0, 0.25, 1.5])))
        stored = rec.store.experiments("t")
        assert rec.experiments == stored
        assert rec.total_cost_usd == sum(e.cost_usd for e in stored)
        assert rec.best == best_of(stored)
        kept = [e for e in stored if e.status == Status.KEEP]
        assert rec.head_sha() == (kept[-1].sha if kept else "base0000")
    again = Recorder(rec.store, "t", EventBus(), rec.results, lambda e: None)
    assert again.experiments == rec.experiments and again.best == rec.best


def test_record_saves_writes_the_tsv_emits_and_tells_once(tmp_path: Path) -> None:
    told: list = []
    rec = open_recorder(tmp_path, told)
    seen = []
    rec.events.subscribe(lambda e: seen.append(e.kind))
    exp = rec.record(rec.new(Status.KEEP, metric=1.0, sha="abc1234", description="baseline"))
    assert exp.decided_at is not None and rec.store.get("t", 0) == exp
    assert seen == [EventKind.DECIDED] and told == [exp]
    assert (tmp_path / "results.tsv").read_text() == tsv_text([exp], "score")


def test_twin_finds_an_earlier_file_but_not_an_invalid_one(tmp_path: Path) -> None:
    rec = open_recorder(tmp_path)
    rec.save(rec.new(Status.INVALID, content_hash="h1"))
    assert rec.twin("h1") is None
    kept = rec.save(rec.new(Status.DISCARD, content_hash="h2"))
    assert rec.twin("h2") == kept and rec.twin(None) is None


def test_an_agent_whose_tell_raises_does_not_stop_the_record(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    store.create_run("t", {}, "b")

    def broken(exp: Experiment) -> None:
        raise RuntimeError("agent bug")

    rec = Recorder(store, "t", EventBus(), ResultsFile(tmp_path / "r.tsv"), broken)
    assert rec.record(rec.new(Status.DISCARD, metric=2.0)).status == Status.DISCARD
