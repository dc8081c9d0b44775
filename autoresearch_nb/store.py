"""The experiment store: one SQLite database per research repo (``.autoresearch/store.db``), WAL mode.

Every write is its own committed transaction, so a ``kill -9`` at any moment loses no finished experiment, and
another process (an analysis notebook) can read while a run writes. Columns follow :class:`Experiment`'s fields;
a newer version of the library adds missing columns on open.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Iterable

from .errors import StoreError
from .records import CurvePoint, Experiment, Status

_JSON_FIELDS = {"summary", "runs", "seeds", "phase_seconds"}
_JSON_LISTS = {"runs", "seeds"}  # JSON fields whose empty value is a list
# Non-None plain defaults of Experiment's fields (factories are the JSON fields, handled on their own).
_DEFAULTS = {f.name: f.default for f in fields(Experiment) if f.default is not MISSING}


def _sql_type(hint: Any) -> str:
    text = str(hint)
    if "bool" in text:
        return "INTEGER"
    if "dict" in text or "list" in text or "tuple" in text:
        return "TEXT"
    if "float" in text:
        return "REAL"
    if "int" in text:
        return "INTEGER"
    return "TEXT"


class Store:
    """Read and write runs, experiments and curve points.

    >>> s = Store(":memory:"); s.create_run("t", {"metric": "val_bpb"}); s.runs()[0]["tag"]
    't'
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        file, wal = Path(self.path), Path(self.path + "-wal")
        if self.path != ":memory:" and file.is_file() and file.stat().st_size == 0 and not (
                wal.is_file() and wal.stat().st_size > 0):  # SQLite would take an emptied store for a new one
            raise StoreError(f"{self.path} is empty (0 bytes): the store was truncated or replaced. Move it aside "
                             "to start afresh; nothing has been changed")
        self.readonly = False
        try:
            try:
                self._connect()
            except sqlite3.OperationalError:
                if not self._read_only_fs():
                    raise
                if Path(self.path + "-wal").is_file() and Path(self.path + "-wal").stat().st_size > 0:
                    raise StoreError(f"{self.path} is on a read-only filesystem with changes still in its -wal "
                                     "file (a writer was killed): open it once where it is writable") from None
                # A read-only repository (a mount, a snapshot): reading the intact store still works, without
                # WAL files or locks; any write fails with "readonly database".
                self.db.close()
                self.db = sqlite3.connect(f"{Path(self.path).resolve().as_uri()}?mode=ro&immutable=1", uri=True,
                                          check_same_thread=False, isolation_level=None)
                self.db.row_factory = sqlite3.Row
                self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()
                self.readonly = True
        except sqlite3.DatabaseError as e:
            if getattr(self, "db", None) is not None:
                self.db.close()
            raise StoreError(f"{self.path} is not a readable experiment store: {e}. Move it aside to start "
                             "afresh; nothing in it has been changed") from None
        self._fields = [f.name for f in fields(Experiment)]

    def _connect(self) -> None:
        self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=30000")
        self._migrate()

    def _read_only_fs(self) -> bool:
        """True when the store exists but its folder cannot be written (root ignores modes, not a ro mount)."""
        folder = Path(self.path).parent
        return self.path != ":memory:" and Path(self.path).is_file() and not os.access(folder, os.W_OK)

    def _migrate(self) -> None:
        hints = typing.get_type_hints(Experiment)
        with self._lock:
            self.db.execute("""CREATE TABLE IF NOT EXISTS runs (
                tag TEXT PRIMARY KEY, created_at REAL, config TEXT, base_sha TEXT, state TEXT DEFAULT '{}')""")
            cols = ", ".join(f"{f.name} {_sql_type(hints[f.name])}" for f in fields(Experiment))
            self.db.execute(f"CREATE TABLE IF NOT EXISTS experiments ({cols}, PRIMARY KEY (tag, number))")
            have = {r[1] for r in self.db.execute("PRAGMA table_info(experiments)")}
            for f in fields(Experiment):
                if f.name not in have:
                    self.db.execute(f"ALTER TABLE experiments ADD COLUMN {f.name} {_sql_type(hints[f.name])}")
            self.db.execute("""CREATE TABLE IF NOT EXISTS points (
                tag TEXT, number INTEGER, step INTEGER, elapsed_s REAL, loss REAL, extra TEXT)""")
            self.db.execute("CREATE INDEX IF NOT EXISTS points_by_exp ON points (tag, number)")
            # which run of the experiment a point is from: '' (or NULL, before repeats kept curves) its own run,
            # else a repeat's label ("noise.1", "confirmation.2"): the noise of a curve is the repeats' spread
            if "run" not in {r[1] for r in self.db.execute("PRAGMA table_info(points)")}:
                self.db.execute("ALTER TABLE points ADD COLUMN run TEXT DEFAULT ''")

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # -- runs ----------------------------------------------------------------------------------------
    def create_run(self, tag: str, config: dict[str, Any], base_sha: str | None = None) -> None:
        with self._lock:
            self.db.execute("INSERT OR IGNORE INTO runs (tag, created_at, config, base_sha, state) "
                            "VALUES (?, ?, ?, ?, '{}')", (tag, time.time(), json.dumps(config, default=list),
                                                         base_sha))

    def set_config(self, tag: str, config: dict[str, Any]) -> None:
        with self._lock:
            self.db.execute("UPDATE runs SET config = ? WHERE tag = ?", (json.dumps(config, default=list), tag))

    def get_run(self, tag: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute("SELECT * FROM runs WHERE tag = ?", (tag,)).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["config"] = json.loads(out["config"] or "{}")
        out["state"] = json.loads(out["state"] or "{}")
        return out

    def update_run_state(self, tag: str, **values: Any) -> dict[str, Any]:
        """Merge ``values`` into the run's JSON state (noise floor, totals, ...)."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                row = self.db.execute("SELECT state FROM runs WHERE tag = ?", (tag,)).fetchone()
                state = json.loads(row["state"] or "{}") if row else {}
                state.update(values)
                self.db.execute("UPDATE runs SET state = ? WHERE tag = ?", (json.dumps(state), tag))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return state

    def runs(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.db.execute("SELECT tag FROM runs ORDER BY created_at").fetchall()
        return [r for r in (self.get_run(row["tag"]) for row in rows) if r]

    # -- experiments ---------------------------------------------------------------------------------
    def next_number(self, tag: str) -> int:
        with self._lock:
            row = self.db.execute("SELECT MAX(number) FROM experiments WHERE tag = ?", (tag,)).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def save(self, exp: Experiment) -> None:
        """Insert or replace one experiment row, committed before this returns."""
        values = []
        for name in self._fields:
            v = getattr(exp, name)
            if name in _JSON_FIELDS:
                v = json.dumps(v, default=str)
            elif isinstance(v, Status):
                v = v.value
            values.append(v)
        marks = ", ".join("?" for _ in values)
        with self._lock:
            self.db.execute(f"INSERT OR REPLACE INTO experiments ({', '.join(self._fields)}) VALUES ({marks})",
                            values)

    def _row(self, row: sqlite3.Row) -> Experiment:
        data = {}
        keys = row.keys()
        for name in self._fields:
            if name not in keys:
                continue
            v = row[name]
            if name in _JSON_FIELDS:
                v = json.loads(v) if v else ([] if name in _JSON_LISTS else {})
            elif name == "status":
                v = Status(v)
            elif name == "verified":
                v = bool(v)
            elif v is None and name in ("input_tokens", "output_tokens", "cache_write_tokens",
                                        "cache_read_tokens"):
                v = 0
            elif v is None and name == "cost_usd":
                v = 0.0
            elif v is None and _DEFAULTS.get(name) is not None:
                v = _DEFAULTS[name]  # a column added by a migration is NULL in old rows ("" for description)
            data[name] = v
        return Experiment(**data)

    def experiments(self, tag: str) -> list[Experiment]:
        with self._lock:
            rows = self.db.execute("SELECT * FROM experiments WHERE tag = ? ORDER BY number", (tag,)).fetchall()
        return [self._row(r) for r in rows]

    def get(self, tag: str, number: int) -> Experiment | None:
        with self._lock:
            row = self.db.execute("SELECT * FROM experiments WHERE tag = ? AND number = ?",
                                  (tag, number)).fetchone()
        return self._row(row) if row else None

    # -- curve points --------------------------------------------------------------------------------
    def add_points(self, tag: str, number: int, points: Iterable[CurvePoint], run: str = "") -> None:
        """Append curve points of experiment ``number``'s own run (``run`` ''), or of one of its repeats."""
        rows = [(tag, number, p.step, p.elapsed_s, p.loss, json.dumps(p.values) if p.values else None, run)
                for p in points]
        if not rows:
            return
        with self._lock:
            self.db.execute("BEGIN")
            try:
                self.db.executemany("INSERT INTO points (tag, number, step, elapsed_s, loss, extra, run) "
                                    "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def clear_points(self, tag: str, number: int, run: str = "") -> None:
        with self._lock:
            self.db.execute("DELETE FROM points WHERE tag = ? AND number = ? AND COALESCE(run, '') = ?",
                            (tag, number, run))

    def points(self, tag: str, number: int | None = None, run: str | None = "") -> list[tuple[int, CurvePoint]]:
        """Curve points of ``tag`` (of experiment ``number``), of each experiment's own run; ``run``: a repeat's
        label instead, or None for every run."""
        q = "SELECT * FROM points WHERE tag = ?" + (" AND number = ?" if number is not None else "")
        args: tuple = (tag,) if number is None else (tag, number)
        if run is not None:
            q, args = q + " AND COALESCE(run, '') = ?", (*args, run)
        with self._lock:
            rows = self.db.execute(q + " ORDER BY number, rowid", args).fetchall()
        return [(r["number"], CurvePoint(step=r["step"], elapsed_s=r["elapsed_s"], loss=r["loss"],
                                         values=json.loads(r["extra"]) if r["extra"] else {})) for r in rows]

    def repeat_curves(self, tag: str, number: int | None = None) -> dict[tuple[int, str], list[CurvePoint]]:
        """The curves of repeats (noise, confirmation, re-validation runs), by (experiment number, label); -1
        for repeats of no experiment (a noise measurement of the best)."""
        q = "SELECT * FROM points WHERE tag = ? AND COALESCE(run, '') != ''"
        args: tuple = (tag,)
        if number is not None:
            q, args = q + " AND number = ?", (tag, number)
        with self._lock:
            rows = self.db.execute(q + " ORDER BY number, rowid", args).fetchall()
        out: dict[tuple[int, str], list[CurvePoint]] = {}
        for r in rows:
            out.setdefault((r["number"], r["run"]), []).append(CurvePoint(
                step=r["step"], elapsed_s=r["elapsed_s"], loss=r["loss"],
                values=json.loads(r["extra"]) if r["extra"] else {}))
        return out


