"""The 3-way merge of one file (autoresearch_nb.merge): what moves a change onto a newer best."""
from __future__ import annotations

from autoresearch_nb.merge import merge_file


def test_merge_file_adjacent_lines_merge_overlaps_conflict() -> None:
    base = "A = 0\nB = 0\nC = 0\n"
    assert merge_file(base, "A = 1\nB = 0\nC = 0\n", "A = 0\nB = 1\nC = 0\n") == "A = 1\nB = 1\nC = 0\n"
    assert merge_file(base, "A = 1\nB = 0\nC = 0\n", "A = 2\nB = 0\nC = 0\n") is None
    assert merge_file(base, "A = 1\nB = 0\nC = 0\n", "A = 1\nB = 0\nC = 0\n") == "A = 1\nB = 0\nC = 0\n"


def test_merge_file_an_identical_change_inside_a_larger_hunk_is_no_conflict() -> None:
    base = "A = 0\nB = 0\nC = 0\n"
    both = "A = 1\nB = 1\nC = 0\n"  # one hunk over A and B
    assert merge_file(base, both, "A = 1\nB = 0\nC = 0\n") == both  # the best already has theirs
    assert merge_file(base, "A = 1\nB = 0\nC = 0\n", both) == both  # theirs adds B to the best's A
    assert merge_file(base, both, "A = 1\nB = 2\nC = 0\n") is None  # B changed two ways
    # a changed line plus a new line after it, against the same changed line alone
    assert merge_file("LR = 1\nX = 0\n", "LR = 2\nWD = 1\nX = 0\n", "LR = 2\nX = 0\n") == \
        "LR = 2\nWD = 1\nX = 0\n"
    assert merge_file("X = 0\n", "X = 0\nP = 1\n", "X = 0\nQ = 1\n") is None  # two insertions at one place
