# Run: python -m pytest tests/test_harness_corpus.py -q
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from autoresearch_nb.harness import constants as C
from autoresearch_nb.harness.corpus import (CorpusError, assign_splits, holdout_bytes, holdout_dir, load_corpus,
                                            prepare_folder, prepare_stdlib, split_documents, stdlib_documents,
                                            stdlib_root)


def make_tree(root, n=30):
    for i in range(n):
        sub = root / ("pkg" if i % 3 else "tests")  # a third of them sit in a test folder
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"mod{i:02d}.py").write_text(f"def f{i}(x):\n    return x * {i}\n" * (i + 1))
    return root


def test_split_is_deterministic_disjoint_and_near_the_fraction():
    docs = [(f"file{i}.py", bytes([65 + i % 26]) * (100 + i)) for i in range(200)]
    train, val = split_documents(docs)
    train2, val2 = split_documents(list(reversed(docs)))
    assert (train, val) == (train2, val2)
    assert not {k for k, _ in train} & {k for k, _ in val}
    assert len(train) + len(val) == len(docs)
    share = sum(len(t) for _, t in val) / sum(len(t) for _, t in docs)
    assert C.VAL_FRACTION <= share < C.VAL_FRACTION + 0.02


def test_split_keeps_a_document_for_each_side_of_a_tiny_corpus():
    train, val = split_documents([("a", b"x" * 1000), ("b", b"y")])
    assert len(train) == 1 and len(val) == 1


def test_stdlib_documents_skip_test_folders(tmp_path):
    keys = [k for k, _ in stdlib_documents(make_tree(tmp_path / "lib"))]
    assert keys and all(not k.startswith("tests/") for k in keys)


def test_prepare_stdlib_writes_both_splits_and_a_versioned_fingerprint(tmp_path):
    corpus = prepare_stdlib(tmp_path / "out", root=make_tree(tmp_path / "lib"))
    assert corpus.fingerprint.startswith("stdlib-py3.")
    train, val = corpus.split_bytes("train"), corpus.split_bytes("val")
    assert len(train) == corpus.meta["train_bytes"] and len(val) == corpus.meta["val_bytes"] > 0
    assert set(corpus.meta["train_keys"]).isdisjoint(corpus.meta["val_keys"])
    again = prepare_stdlib(tmp_path / "out2", root=tmp_path / "lib")
    assert again.fingerprint == corpus.fingerprint
    assert np.array_equal(again.split_bytes("val"), val)


def test_the_stdlib_corpus_has_a_disjoint_holdout_outside_its_folder(tmp_path):
    corpus = prepare_stdlib(tmp_path / "out", root=make_tree(tmp_path / "lib", n=60))
    held = json.loads((holdout_dir(corpus) / "meta.json").read_text())["holdout_keys"]
    assert held and set(held).isdisjoint(set(corpus.meta["train_keys"]) | set(corpus.meta["val_keys"]))
    assert corpus.has_holdout and len(holdout_bytes(corpus)) == corpus.meta["holdout_bytes"] > 0
    assert not any(p.name.startswith("holdout") for p in corpus.path.iterdir())


def _as_format_2(corpus, holdout_inside: bool) -> None:
    """Rewrite a prepared corpus the way the previous release left it: format 2, holdout.bin (if any) and its
    keys inside the corpus folder."""
    meta = dict(corpus.meta, format=2)
    hidden = holdout_dir(corpus)
    if holdout_inside:
        meta["holdout_keys"] = json.loads((hidden / "meta.json").read_text())["holdout_keys"]
        os.replace(hidden / "holdout.bin", corpus.path / "holdout.bin")
    else:
        for k in ("holdout_docs", "holdout_bytes"):
            meta[k] = 0
        (hidden / "holdout.bin").unlink()
    (hidden / "meta.json").unlink()
    hidden.rmdir()
    (corpus.path / "meta.json").write_text(json.dumps(meta))


def test_a_format_2_holdout_moves_out_of_the_corpus_folder_keeping_its_fingerprint(tmp_path):
    corpus = prepare_folder(make_tree(tmp_path / "src", n=60), tmp_path / "out")
    data = bytes(holdout_bytes(corpus))
    _as_format_2(corpus, holdout_inside=True)
    upgraded = load_corpus(tmp_path / "out")
    assert upgraded.fingerprint == corpus.fingerprint and upgraded.meta["format"] == 3
    assert not (tmp_path / "out" / "holdout.bin").exists() and bytes(holdout_bytes(upgraded)) == data
    assert "holdout_keys" not in json.loads((tmp_path / "out" / "meta.json").read_text())


def test_an_old_stdlib_corpus_without_a_holdout_is_prepared_again(tmp_path):
    lib = make_tree(tmp_path / "lib", n=60)
    corpus = prepare_stdlib(tmp_path / "stdlib", root=lib)
    _as_format_2(corpus, holdout_inside=False)
    stale = load_corpus(tmp_path / "stdlib", auto_prepare=False)
    assert not stale.has_holdout and stale.meta["format"] == 2
    upgraded = load_corpus(tmp_path / "stdlib")  # prepared again from the same source
    assert upgraded.has_holdout and upgraded.fingerprint == corpus.fingerprint
    assert upgraded.meta["val_sha256"] == corpus.meta["val_sha256"]


def test_fingerprint_changes_when_the_corpus_does(tmp_path):
    src = make_tree(tmp_path / "src")
    before = prepare_folder(src, tmp_path / "a").fingerprint
    (src / "pkg" / "mod01.py").write_text("changed = True\n")
    assert prepare_folder(src, tmp_path / "b").fingerprint != before


def test_folder_reads_text_and_parquet_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("hello world\n" * 50)
    pq.write_table(pa.table({"text": [f"story {i} " * 20 for i in range(40)]}), src / "stories.parquet")
    corpus = prepare_folder(src, tmp_path / "out")
    assert corpus.meta["train_docs"] + corpus.meta["val_docs"] + corpus.meta["holdout_docs"] == 41
    assert b"story" in bytes(corpus.split_bytes("train")) + bytes(corpus.split_bytes("val"))


WRITER = textwrap.dedent("""\
    import sys
    from pathlib import Path
    from autoresearch_nb.harness.corpus import write_corpus

    def docs():
        for i in range(50):
            yield f"d{i}", f"document {i}\\n".encode() * 20
        print("MID", flush=True)
        sys.stdin.read()          # blocks mid-write until the test kills this process
    write_corpus(Path(sys.argv[1]), "t", docs(), [("v", b"val")], source="t")
""")


@pytest.mark.parametrize("old", [False, True])  # into an empty folder, and over a good corpus
def test_no_half_written_corpus_is_loadable(tmp_path, old):
    out = tmp_path / "out"
    before = None
    if old:
        before = prepare_folder(make_tree(tmp_path / "src"), out).fingerprint
        assert load_corpus(out).meta["train_bytes"] > 0
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "MID"
    assert list(out.glob(".train.bin.*.tmp"))  # the write is under way
    writer.send_signal(signal.SIGKILL)
    writer.wait(30)
    if old:  # the old corpus is still whole and loadable (issue 22: old or new, never missing)
        assert load_corpus(out).fingerprint == before
    else:
        with pytest.raises(CorpusError):
            load_corpus(out)
        assert not (out / "meta.json").exists()
    corpus = prepare_folder(make_tree(tmp_path / "src2"), out)  # and a new prepare succeeds
    assert load_corpus(out).fingerprint == corpus.fingerprint


PREPARE_AGAIN = textwrap.dedent("""\
    import sys
    from pathlib import Path
    from autoresearch_nb.harness.corpus import prepare_folder
    for _ in range(int(sys.argv[3])):
        prepare_folder(Path(sys.argv[1]), Path(sys.argv[2]))
    print("DONE", flush=True)
""")


def test_a_corpus_prepared_again_meanwhile_never_goes_missing_for_a_reader(tmp_path):
    """Issue 22: another process re-prepared the shared corpus while a session ran; its next experiment found
    "no prepared corpus". A reader now sees the corpus (old or new) at every moment of a prepare."""
    src, out = make_tree(tmp_path / "src"), tmp_path / "out"
    fingerprint = prepare_folder(src, out).fingerprint
    writer = subprocess.Popen([sys.executable, "-c", PREPARE_AGAIN, str(src), str(out), "25"],
                              stdout=subprocess.PIPE, text=True)
    reads = 0
    while writer.poll() is None:
        corpus = load_corpus(out, auto_prepare=False)
        assert corpus.fingerprint == fingerprint and len(corpus.split_bytes("val")) == corpus.meta["val_bytes"]
        reads += 1
    assert writer.returncode == 0 and writer.stdout.read().strip() == "DONE"
    assert reads > 10


def test_load_corpus_auto_prepares_only_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv(C.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(C.ENV_DATA, raising=False)
    monkeypatch.setenv(C.ENV_DATASET, "tinystories")
    with pytest.raises(CorpusError, match="autoresearch-nb prepare"):
        load_corpus()
    monkeypatch.setenv(C.ENV_DATA, str(tmp_path / "nowhere"))
    with pytest.raises(CorpusError):
        load_corpus()


def test_folder_corpus_keeps_a_disjoint_holdout_with_a_hash_manifest(tmp_path):
    import hashlib
    src = tmp_path / "src"
    src.mkdir()
    for i in range(200):
        (src / f"doc{i:03d}.txt").write_text(f"document {i} " * (20 + i % 13))
    corpus = prepare_folder(src, tmp_path / "out")
    hidden = json.loads((holdout_dir(corpus) / "meta.json").read_text())
    keys = {split: set(corpus.meta[f"{split}_keys"]) for split in ("train", "val")}
    keys["holdout"] = set(hidden["holdout_keys"])
    assert "holdout_keys" not in corpus.meta and hidden["fingerprint"] == corpus.fingerprint
    assert keys["holdout"] and not keys["holdout"] & (keys["train"] | keys["val"])
    assert len(keys["train"] | keys["val"] | keys["holdout"]) == 200
    total = sum(corpus.meta[f"{s}_bytes"] for s in keys)
    assert C.HOLDOUT_FRACTION <= corpus.meta["holdout_bytes"] / total < C.HOLDOUT_FRACTION + 0.02
    for split in keys:
        data = bytes(holdout_bytes(corpus) if split == "holdout" else corpus.split_bytes(split))
        assert hashlib.sha256(data).hexdigest() == corpus.meta[f"{split}_sha256"]
    # the holdout is a sibling of the corpus folder (which runs may read), never inside it
    assert holdout_dir(corpus) == corpus.path.parent / "out.holdout"
    assert not (corpus.path / "holdout.bin").exists() and (holdout_dir(corpus) / "holdout.bin").is_file()
    with pytest.raises(ValueError, match="split"):
        corpus.split_bytes("holdout")
    (holdout_dir(corpus) / "holdout.bin").write_bytes(b"swapped")
    with pytest.raises(CorpusError, match="manifest"):
        holdout_bytes(corpus)
    from autoresearch_nb.harness.data import Batches
    from autoresearch_nb.harness.tokenizer import ByteTokenizer
    with pytest.raises(ValueError, match="split"):
        Batches(corpus, ByteTokenizer(), 2, 8, "cpu", 0, split="holdout")


def test_assign_splits_leaves_train_a_document():
    split = assign_splits([("a", 10), ("b", 1000), ("c", 5)], 0.5, 0.5)
    assert sorted(split.values()).count("train") == 1 and "val" in split.values()


@pytest.mark.slow
def test_load_corpus_prepares_the_default_once(tmp_path, monkeypatch):
    monkeypatch.setenv(C.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(C.ENV_DATA, raising=False)
    monkeypatch.delenv(C.ENV_DATASET, raising=False)
    corpus = load_corpus()
    assert corpus.fingerprint.startswith("stdlib-py3.") and corpus.meta["source"] == str(stdlib_root())
    meta = corpus.path / "meta.json"
    assert meta.is_relative_to(tmp_path / "cache")
    before = meta.stat()
    assert load_corpus().fingerprint == corpus.fingerprint
    after = meta.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)  # not prepared twice
