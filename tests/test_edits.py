# python -m pytest tests/test_edits.py -q
"""Search/replace edits, the compile check, diffs (checked with real `git apply`) and content identity."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from autoresearch_nb.edits import Edit, EditError, apply_edits, check_python, content_hash, unified_diff

SOURCE = "LR = 0.01\nBATCH = 32\n\ndef lr():\n    return LR\n"


# -- apply_edits --------------------------------------------------------------------------------------------

def test_one_edit() -> None:
    assert apply_edits(SOURCE, [Edit("LR = 0.01", "LR = 0.02")]) == SOURCE.replace("LR = 0.01", "LR = 0.02")


def test_edits_apply_in_order_each_on_the_result_of_the_last() -> None:
    out = apply_edits(SOURCE, [Edit("BATCH = 32", "BATCH = 64"), Edit("BATCH = 64", "BATCH = 128")])
    assert "BATCH = 128\n" in out and "32" not in out


def test_no_edits_is_the_source() -> None:
    assert apply_edits(SOURCE, []) == SOURCE


def test_search_not_found_is_an_edit_error_naming_the_edit() -> None:
    with pytest.raises(EditError, match="edit 2: the search text was not found"):
        apply_edits(SOURCE, [Edit("LR = 0.01", "LR = 0.02"), Edit("LR = 0.01", "LR = 0.03")])


def test_ambiguous_search_is_an_edit_error() -> None:
    with pytest.raises(EditError, match="edit 1: the search text occurs 2 times"):
        apply_edits(SOURCE, [Edit("LR", "RATE")])


def test_empty_search_is_an_edit_error() -> None:
    with pytest.raises(EditError, match="edit 1: the search text is empty"):
        apply_edits(SOURCE, [Edit("", "x")])


def test_replacement_text_is_taken_literally() -> None:
    assert apply_edits("A = 1\n", [Edit("A = 1", r"A = '\1 \n'")]) == "A = '\\1 \\n'\n"


# -- check_python ---------------------------------------------------------------------------------------------

def test_valid_python_passes() -> None:
    check_python("train.py", SOURCE)


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(EditError, match=r"train.py does not compile: .*\(line 2\)"):
        check_python("train.py", "x = 1\ndef f(:\n")


def test_null_bytes_are_an_edit_error() -> None:
    with pytest.raises(EditError, match="does not compile"):
        check_python("train.py", "x = 1\0\n")


def test_non_python_files_are_not_compiled() -> None:
    check_python("config.yaml", "def f(:\n")


# -- unified_diff, checked with git apply -------------------------------------------------------------------------

def git_apply(tmp_path: Path, old: str, diff: str) -> str:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "train.py").write_text(old)
    (tmp_path / "change.diff").write_text(diff)
    subprocess.run(["git", "apply", "change.diff"], cwd=tmp_path, check=True, capture_output=True)
    return (tmp_path / "train.py").read_text()


@pytest.mark.parametrize("old,new", [
    (SOURCE, SOURCE.replace("BATCH = 32", "BATCH = 64")),
    (SOURCE, SOURCE + "print('more')"),              # the new file has no newline at the end
    (SOURCE.rstrip("\n"), SOURCE.replace("LR = 0.01", "LR = 1")),  # the old one has none
    (SOURCE, "completely\nnew\n"),
])
def test_diff_applies_with_git(tmp_path: Path, old: str, new: str) -> None:
    assert git_apply(tmp_path, old, unified_diff(old, new, "train.py")) == new


def test_diff_headers_name_the_file() -> None:
    assert unified_diff("a\n", "b\n", "train.py").splitlines()[:2] == ["--- a/train.py", "+++ b/train.py"]


def test_no_change_is_an_empty_diff() -> None:
    assert unified_diff(SOURCE, SOURCE, "train.py") == ""


# -- content_hash ---------------------------------------------------------------------------------------------------

def test_hash_ignores_trailing_whitespace() -> None:
    assert content_hash("x = 1   \ny = 2\n\n\n") == content_hash("x = 1\ny = 2")


def test_hash_sees_a_changed_value() -> None:
    assert content_hash("x = 1\n") != content_hash("x = 2\n")


def test_hash_sees_changed_indentation() -> None:
    assert content_hash("if a:\n    x = 1\n    y = 2\n") != content_hash("if a:\n    x = 1\ny = 2\n")


def test_a_lone_surrogate_hashes_and_is_refused_as_content() -> None:
    text = "X = 3  # \ud800\n"
    assert content_hash(text) != content_hash("X = 3  # \n")  # no UnicodeEncodeError, and not the same file
    with pytest.raises(EditError, match=r"character \\ud800 on line 1, which UTF-8 cannot encode"):
        check_python("train.py", text)
    with pytest.raises(EditError, match="UTF-8"):
        check_python("notes.txt", text)  # no file can hold it, Python or not
