# Run: python -m pytest tests/test_harness_prepare.py -q
from __future__ import annotations

from autoresearch_nb.harness import constants as C
from autoresearch_nb.harness.corpus import load_corpus
from autoresearch_nb.harness.prepare import cli


def test_bad_flags_exit_2(capsys):
    assert cli(["--no-such-flag"]) == 2
    assert cli(["--dataset", "stdlib", "--shards", "3"]) == 2


def test_unknown_dataset_exits_1_with_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(C.ENV_CACHE, str(tmp_path))
    assert cli(["--dataset", "no-such-dataset"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("prepare: unknown dataset") and "\n" not in err


def test_folder_dataset_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(C.ENV_CACHE, str(tmp_path / "cache"))
    src = tmp_path / "texts"
    src.mkdir()
    for i in range(5):
        (src / f"doc{i}.txt").write_text(f"document {i}\n" * 100)
    assert cli(["--dataset", str(src), "--tokenizer", "bpe-300"]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "cache" / "local-texts"
    assert f"AUTORESEARCH_DATA={folder}" in out
    corpus = load_corpus(folder)
    assert corpus.meta["train_docs"] + corpus.meta["val_docs"] + corpus.meta["holdout_docs"] == 5
    assert list((folder / "tokenizers").glob("bpe-300-*.json"))
