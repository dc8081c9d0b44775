# python -m pytest tests/test_store.py -q
"""The experiment store: real SQLite files in temp dirs, a second process reading while we write."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import typing
from dataclasses import fields
from pathlib import Path

import pytest

from autoresearch_nb.errors import StoreError
from autoresearch_nb.records import CurvePoint, Experiment, Status
from autoresearch_nb.store import Store


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / ".autoresearch" / "store.db")
    yield s
    s.close()


def sample(hint: object, i: int) -> object:
    """A non-default value of a field's type, so a field that is not stored shows up as a difference."""
    text = str(hint)
    if "Status" in text:
        return Status.CRASH
    if "bool" in text:
        return True
    if "dict" in text:
        return {"val_bpb": 0.9979, "device": "cpu", "num_steps": 953}
    if "list[int]" in text:
        return [42, 43]
    if "list" in text:
        return [1.5, 1.25]
    if "float" in text:
        return 0.5 + i
    if "int" in text:
        return 10 + i
    return f"text {i}\nwith a second line"


def full_experiment(number: int = 3, tag: str = "t") -> Experiment:
    hints = typing.get_type_hints(Experiment)
    values = {f.name: sample(hints[f.name], i) for i, f in enumerate(fields(Experiment))}
    return Experiment(**{**values, "number": number, "tag": tag})


# -- experiments ----------------------------------------------------------------------------------------

def test_every_field_round_trips(store: Store) -> None:
    exp = full_experiment()
    store.save(exp)
    assert store.get("t", 3) == exp


def test_status_comes_back_as_the_enum(store: Store) -> None:
    store.save(Experiment(number=0, tag="t", status=Status.KEEP))
    assert store.get("t", 0).status is Status.KEEP


def test_defaults_round_trip(store: Store) -> None:
    exp = Experiment(number=0, tag="t", status=Status.PROPOSED)
    store.save(exp)
    assert store.get("t", 0) == exp


def test_save_replaces_the_row_of_the_same_number(store: Store) -> None:
    store.save(Experiment(number=0, tag="t", status=Status.RUNNING))
    store.save(Experiment(number=0, tag="t", status=Status.DISCARD, metric=1.0))
    assert [(e.status, e.metric) for e in store.experiments("t")] == [(Status.DISCARD, 1.0)]


def test_experiments_are_per_tag_and_ordered(store: Store) -> None:
    for number in (2, 0, 1):
        store.save(Experiment(number=number, tag="t", status=Status.KEEP))
    store.save(Experiment(number=0, tag="other", status=Status.KEEP))
    assert [e.number for e in store.experiments("t")] == [0, 1, 2]


def test_next_number(store: Store) -> None:
    assert store.next_number("t") == 0
    store.save(Experiment(number=4, tag="t", status=Status.KEEP))
    assert store.next_number("t") == 5


def test_missing_experiment_is_none(store: Store) -> None:
    assert store.get("t", 9) is None


# -- durability and concurrency -----------------------------------------------------------------------------

def test_database_is_in_wal_mode(store: Store) -> None:
    other = sqlite3.connect(store.path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def test_a_saved_row_is_committed_before_save_returns(store: Store) -> None:
    store.save(Experiment(number=0, tag="t", status=Status.KEEP))
    other = sqlite3.connect(store.path)
    try:
        assert other.execute("SELECT status FROM experiments").fetchall() == [("keep",)]
    finally:
        other.close()


READER = """
import sys
from autoresearch_nb.store import Store
s = Store(sys.argv[1])
print(",".join(str(e.number) for e in s.experiments("t")))
"""


def test_another_process_reads_while_a_writer_holds_the_lock(store: Store) -> None:
    for number in range(3):
        store.save(Experiment(number=number, tag="t", status=Status.KEEP))
    store.db.execute("BEGIN IMMEDIATE")  # the writer is in the middle of a write
    store.db.execute("INSERT INTO experiments (tag, number, status) VALUES ('t', 3, 'running')")
    try:
        out = subprocess.run([sys.executable, "-c", READER, store.path], capture_output=True, text=True,
                             timeout=20, check=True).stdout.strip()
    finally:
        store.db.execute("ROLLBACK")
    assert out == "0,1,2"


# -- corrupt and old databases ---------------------------------------------------------------------------------

def test_corrupt_file_is_a_store_error_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"this is not sqlite, it is a notebook someone saved here\n" * 200)
    with pytest.raises(StoreError, match="is not a readable experiment store.*Move it aside"):
        Store(path)


def test_corrupt_file_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    data = b"this is not sqlite\n" * 500
    path.write_bytes(data)
    with pytest.raises(StoreError):
        Store(path)
    assert path.read_bytes() == data and sorted(p.name for p in tmp_path.iterdir()) == ["store.db"]


def old_store(path: Path) -> None:
    """The experiments table as an older version wrote it: few columns."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE experiments (number INTEGER, tag TEXT, status TEXT, metric REAL, "
               "PRIMARY KEY (tag, number))")
    db.execute("INSERT INTO experiments VALUES (0, 't', 'keep', 1.25)")
    db.commit()
    db.close()


def test_migration_adds_missing_columns(tmp_path: Path) -> None:
    old_store(tmp_path / "store.db")
    Store(tmp_path / "store.db").close()
    db = sqlite3.connect(tmp_path / "store.db")
    columns = {row[1] for row in db.execute("PRAGMA table_info(experiments)")}
    db.close()
    assert columns == set(Experiment.field_names())


def test_old_rows_read_with_defaults_after_migration(tmp_path: Path) -> None:
    old_store(tmp_path / "store.db")
    store = Store(tmp_path / "store.db")
    assert store.get("t", 0) == Experiment(number=0, tag="t", status=Status.KEEP, metric=1.25)


def test_migrated_store_takes_full_rows(tmp_path: Path) -> None:
    old_store(tmp_path / "store.db")
    store = Store(tmp_path / "store.db")
    exp = full_experiment(number=1)
    store.save(exp)
    assert store.get("t", 1) == exp


# -- runs ----------------------------------------------------------------------------------------------------------

def test_run_config_round_trips(store: Store) -> None:
    store.create_run("t", {"metric": "score", "record": ("a", "b")}, base_sha="abc")
    run = store.get_run("t")
    assert (run["config"], run["base_sha"], run["state"]) == ({"metric": "score", "record": ["a", "b"]}, "abc", {})


def test_create_run_twice_keeps_the_first(store: Store) -> None:
    store.create_run("t", {"metric": "a"}, base_sha="first")
    store.create_run("t", {"metric": "b"}, base_sha="second")
    assert store.get_run("t")["base_sha"] == "first"


def test_set_config_replaces_the_stored_config(store: Store) -> None:
    store.create_run("t", {"metric": "a"})
    store.set_config("t", {"metric": "b"})
    assert store.get_run("t")["config"] == {"metric": "b"}


def test_run_state_updates_merge(store: Store) -> None:
    store.create_run("t", {})
    store.update_run_state("t", sigma=0.01)
    store.update_run_state("t", keeps=2)
    assert store.get_run("t")["state"] == {"sigma": 0.01, "keeps": 2}


def test_runs_lists_every_tag(store: Store) -> None:
    store.create_run("a", {})
    store.create_run("b", {})
    assert [r["tag"] for r in store.runs()] == ["a", "b"]


# -- curve points ----------------------------------------------------------------------------------------------------

POINTS = [CurvePoint(step=1, elapsed_s=0.5, loss=3.0, values={"lr": 0.001, "tok/s": 1200.0}),
          CurvePoint(step=None, elapsed_s=1.0, loss=None, values={}),
          CurvePoint(step=3, elapsed_s=1.5, loss=2.0)]


def test_points_round_trip(store: Store) -> None:
    store.add_points("t", 0, POINTS)
    assert [p for _, p in store.points("t", 0)] == POINTS


def test_points_of_a_run_carry_their_experiment_number(store: Store) -> None:
    store.add_points("t", 1, POINTS[:1])
    store.add_points("t", 0, POINTS[1:])
    store.add_points("other", 0, POINTS)
    assert [n for n, _ in store.points("t")] == [0, 0, 1]


def test_clear_points(store: Store) -> None:
    store.add_points("t", 0, POINTS)
    store.add_points("t", 1, POINTS)
    store.clear_points("t", 0)
    assert (store.points("t", 0), len(store.points("t", 1))) == ([], 3)


def test_a_directory_in_place_of_the_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "store.db").mkdir()
    with pytest.raises(StoreError, match="store.db is not a readable experiment store"):
        Store(tmp_path / "store.db")


def test_an_empty_store_file_is_a_clear_error_not_a_new_run(tmp_path: Path) -> None:
    # Fault 10: a zero-byte store was taken for a new run; the reopen restarted at #0 and overwrote its refs.
    root = tmp_path / "r"
    root.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@e"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=root, check=True)
    (root / "train.py").write_text('X = 1\nprint("---")\nprint(f"score: {X}")\n')
    subprocess.run(["git", "add", "."], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=root, check=True)
    (root / ".autoresearch").mkdir()
    (root / ".autoresearch" / "store.db").write_bytes(b"")
    refs_before = subprocess.run(["git", "for-each-ref"], cwd=root, capture_output=True, text=True).stdout
    r = subprocess.run([sys.executable, "-m", "autoresearch_nb.cli", "run", "--tag", "a", "--repo", str(root),
                        "--agent", "queue", "--metric", "score", "--time-budget", "5"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and "is empty (0 bytes)" in r.stderr and "Traceback" not in r.stderr
    assert (root / ".autoresearch" / "store.db").stat().st_size == 0
    assert subprocess.run(["git", "for-each-ref"], cwd=root, capture_output=True, text=True).stdout == refs_before


def test_repeat_curves_are_kept_apart_from_the_experiments_own(tmp_path):
    from autoresearch_nb.records import CurvePoint
    store = Store(tmp_path / "s.db")
    store.add_points("t", 0, [CurvePoint(1, 0.1, 3.0), CurvePoint(2, 0.2, 2.5)])
    store.add_points("t", 0, [CurvePoint(1, 0.1, 3.1)], run="noise:0000.1")
    store.add_points("t", 0, [CurvePoint(1, 0.1, 2.9)], run="noise:0000.2")
    assert [p.loss for _, p in store.points("t", 0)] == [3.0, 2.5]  # the experiment's own run only
    assert len(store.points("t", 0, run=None)) == 4
    curves = store.repeat_curves("t")
    assert {k: [p.loss for p in v] for k, v in curves.items()} == {(0, "noise:0000.1"): [3.1],
                                                                  (0, "noise:0000.2"): [2.9]}
    store.clear_points("t", 0, "noise:0000.1")
    assert list(store.repeat_curves("t", 0)) == [(0, "noise:0000.2")]
    assert len(store.points("t", 0)) == 2
