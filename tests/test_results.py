# python -m pytest tests/test_results.py -q
"""Experiments as a DataFrame, and Karpathy's results.tsv."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from autoresearch_nb.records import Experiment, Status
from autoresearch_nb.results import ResultsFile, dataframe, tsv_text, write_tsv


def exp(number: int, status: Status, metric: float | None = None, description: str = "", **kw) -> Experiment:
    return Experiment(number=number, tag="t", status=status, metric=metric, description=description,
                      sha=kw.pop("sha", f"{number:07d}abcdef"), **kw)


MINIMIZE = [exp(0, Status.KEEP, 1.0, "baseline"), exp(1, Status.DISCARD, 1.1), exp(2, Status.KEEP, 0.9),
            exp(3, Status.CRASH), exp(4, Status.DISCARD, 0.95)]
MAXIMIZE = [exp(0, Status.KEEP, 1.0), exp(1, Status.DISCARD, 0.9), exp(2, Status.KEEP, 1.2)]


def values(series: pd.Series) -> list:
    return [None if pd.isna(v) else round(v, 9) for v in series]


# -- the DataFrame -----------------------------------------------------------------------------------------

def test_dataframe_has_the_documented_columns() -> None:
    df = dataframe(MINIMIZE, "val_bpb", record=("peak_memory_mb",))
    assert {"number", "status", "metric", "delta", "description", "reason", "is_best", "val_bpb",
            "peak_memory_mb", "sha", "parent_sha", "cost_usd", "wall_seconds", "started_at"} <= set(df.columns)


def test_dataframe_is_indexed_by_number() -> None:
    assert list(dataframe(MINIMIZE).index) == [0, 1, 2, 3, 4]


def test_delta_against_the_best_kept_so_far_when_minimizing() -> None:
    assert values(dataframe(MINIMIZE)["delta"]) == [None, 0.1, -0.1, None, 0.05]


def test_is_best_when_minimizing() -> None:
    assert list(dataframe(MINIMIZE)["is_best"]) == [False, False, True, False, False]


def test_delta_when_maximizing() -> None:
    assert values(dataframe(MAXIMIZE, maximize=True)["delta"]) == [None, -0.1, 0.2]


def test_is_best_when_maximizing() -> None:
    assert list(dataframe(MAXIMIZE, maximize=True)["is_best"]) == [False, False, True]


def test_direction_changes_the_best() -> None:
    runs = [exp(0, Status.KEEP, 1.0), exp(1, Status.KEEP, 0.5)]
    assert (list(dataframe(runs)["is_best"]), list(dataframe(runs, maximize=True)["is_best"])) == \
        ([False, True], [True, False])


def test_metric_column_carries_the_metric_name() -> None:
    assert values(dataframe(MAXIMIZE, "score", maximize=True)["score"]) == [1.0, 0.9, 1.2]


def test_record_columns_come_from_the_summary() -> None:
    runs = [exp(0, Status.KEEP, 1.0, summary={"peak_memory_mb": 2048.0}), exp(1, Status.CRASH)]
    assert values(dataframe(runs, record=("peak_memory_mb",))["peak_memory_mb"]) == [2048.0, None]


def test_times_are_utc_timestamps() -> None:
    df = dataframe([exp(0, Status.KEEP, 1.0, started_at=0.0)])
    assert df["started_at"].iloc[0] == pd.Timestamp("1970-01-01", tz="UTC")


def test_empty_run_gives_an_empty_frame_with_columns() -> None:
    df = dataframe([], "score")
    assert len(df) == 0 and {"number", "status", "metric", "score", "is_best"} <= set(df.columns)


# -- results.tsv ---------------------------------------------------------------------------------------------

def tsv_rows(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines()]


def test_tsv_header_is_karpathys_five_columns() -> None:
    assert tsv_rows(tsv_text(MINIMIZE))[0] == ["commit", "val_bpb", "memory_gb", "status", "description"]


def test_tsv_header_names_the_configured_metric() -> None:
    assert tsv_rows(tsv_text(MINIMIZE, metric="score"))[0][1] == "score"


def test_tsv_every_row_has_five_fields() -> None:
    assert {len(row) for row in tsv_rows(tsv_text(MINIMIZE))} == {5}


def test_tsv_keep_row() -> None:
    runs = [exp(0, Status.KEEP, 0.9979, "baseline", sha="a1b2c3d4e5f6", summary={"peak_memory_mb": 45060.2})]
    assert tsv_rows(tsv_text(runs))[1] == ["a1b2c3d", "0.997900", "44.0", "keep", "baseline"]


def test_tsv_memory_gb_uses_the_configured_key() -> None:
    runs = [exp(0, Status.KEEP, 1.0, summary={"peak_vram_mb": 2048.0, "peak_memory_mb": 9999.0})]
    assert tsv_rows(tsv_text(runs, memory_key="peak_vram_mb"))[1][2] == "2.0"


def test_tsv_memory_is_zero_without_the_key() -> None:
    assert tsv_rows(tsv_text([exp(0, Status.KEEP, 1.0)]))[1][2] == "0.0"


@pytest.mark.parametrize("status", [Status.CRASH, Status.TIMEOUT, Status.VIOLATION, Status.INTERRUPTED])
def test_tsv_failed_runs_are_crash_rows_with_zeros(status: Status) -> None:
    runs = [exp(0, status, 1.5, "oom", summary={"peak_memory_mb": 80000.0})]
    assert tsv_rows(tsv_text(runs))[1][1:] == ["0.000000", "0.0", "crash", "oom"]


@pytest.mark.parametrize("status", [Status.INVALID, Status.SKIPPED, Status.PROPOSED, Status.RUNNING])
def test_tsv_leaves_out_experiments_that_did_not_finish_a_run(status: Status) -> None:
    assert len(tsv_rows(tsv_text([exp(0, Status.KEEP, 1.0), exp(1, status, None)]))) == 2


def test_tsv_description_is_one_line_without_tabs() -> None:
    runs = [exp(0, Status.DISCARD, 1.0, "raise LR\tto 0.02\nand warm up\n longer")]
    assert tsv_rows(tsv_text(runs))[1][4] == "raise LR to 0.02 and warm up longer"


def test_written_tsv_reads_back_in_pandas(tmp_path: Path) -> None:
    path = tmp_path / "results" / "results.tsv"
    write_tsv(path, MINIMIZE)
    df = pd.read_csv(path, sep="\t")  # what Karpathy's analysis.ipynb does
    assert list(df.columns) == ["commit", "val_bpb", "memory_gb", "status", "description"]
    assert list(df["status"]) == ["keep", "discard", "keep", "crash", "discard"]


def test_write_tsv_leaves_no_temporary_file(tmp_path: Path) -> None:
    write_tsv(tmp_path / "results.tsv", MINIMIZE)
    write_tsv(tmp_path / "results.tsv", MAXIMIZE)
    assert [p.name for p in tmp_path.iterdir()] == ["results.tsv"]


def test_written_tsv_is_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_tsv(tmp_path / "results.tsv", MINIMIZE)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "results.tsv").stat().st_mode) == 0o644


# -- ResultsFile: appends, rewrites only when an older experiment changes ------------------------------------

def test_results_file_appends_the_newest_experiment(tmp_path: Path) -> None:
    f = ResultsFile(tmp_path / "results.tsv", metric="score")
    f.rewrite(MINIMIZE[:2])
    first = (tmp_path / "results.tsv").stat().st_ino
    f.add(MINIMIZE[2], lambda: pytest.fail("no rewrite needed"))
    assert (tmp_path / "results.tsv").read_text() == tsv_text(MINIMIZE[:3], "score")
    assert (tmp_path / "results.tsv").stat().st_ino == first  # appended in place, not rewritten


def test_results_file_rewrites_when_an_older_experiment_finishes_late(tmp_path: Path) -> None:
    f = ResultsFile(tmp_path / "results.tsv", metric="score")
    f.rewrite([MINIMIZE[0], exp(1, Status.RUNNING), MINIMIZE[2]])
    f.add(MINIMIZE[1], lambda: MINIMIZE[:3])
    assert (tmp_path / "results.tsv").read_text() == tsv_text(MINIMIZE[:3], "score")


def test_results_file_leaves_out_what_never_ran(tmp_path: Path) -> None:
    f = ResultsFile(tmp_path / "results.tsv")
    f.rewrite(MINIMIZE[:1])
    f.add(exp(1, Status.INVALID), lambda: pytest.fail("nothing to write"))
    assert (tmp_path / "results.tsv").read_text() == tsv_text(MINIMIZE[:1])
