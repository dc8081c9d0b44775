"""PYTHONPATH=. python -m pytest -q tests/test_provenance.py

Provenance through the real CLI on a tiny copy of the repository's train.py: every row records what its number
came from; a resume under another corpus or torch is refused with a clear message and exit code, the same
provenance resumes; a run that rewrites the shared tokenizer cache is refused by the verifier (the pins). And
the pieces one by one: the comparison, the torch-free ``eval_bytes``, the pins.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoresearch_nb import provenance as P
from autoresearch_nb.harness.corpus import prepare_folder, write_corpus
from autoresearch_nb.harness.evaluate import eval_bytes
from autoresearch_nb.view import load_results
from autoresearch_nb.verifier import VERSION

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import integrity  # noqa: E402


def loop(root: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autoresearch_nb.cli", "run", "--tag", "t", "--repo", str(root),
                           "--agent", "queue", "--time-budget", "2", "--noise-repeats", "1", "--noise-k", "0",
                           "--budget-clock", "cpu", *extra], env=env, capture_output=True, text=True, timeout=900)


def test_rows_record_provenance_and_a_resume_that_would_mix_numbers_refuses(tmp_path: Path) -> None:
    data = integrity.corpus(tmp_path)
    env = integrity.env_for(tmp_path, data)
    root = integrity.make_repo(tmp_path / "repo", [])  # the baseline only
    first = loop(root, env)
    assert first.returncode == 0, first.stderr[-3000:]
    row = load_results(root, "t").iloc[0]
    assert row["status"] == "keep" and row["verified"]
    meta = P.read_meta(data)
    assert row["corpus"] == meta["fingerprint"] and row["tokenizer"] == "byte"
    assert row["eval_bytes"] == P.eval_size(meta["val_bytes"], "cpu") > 0
    assert row["torch"] == P.torch_version() and row["verifier"] == VERSION
    assert row["harness"].startswith("autoresearch_nb ")

    # another corpus: refused before anything runs, naming both fingerprints
    other = prepare_folder(_folder(tmp_path / "other"), tmp_path / "other-corpus")
    moved = loop(root, {**env, "AUTORESEARCH_DATA": str(other.path)})
    assert moved.returncode == 1
    assert "cannot resume" in moved.stderr and meta["fingerprint"] in moved.stderr
    assert other.fingerprint in moved.stderr and "new tag" in moved.stderr
    assert len(load_results(root, "t")) == 1  # nothing ran, nothing was lost

    # the stored row says another torch (as if scored under it): refused, naming torch
    with sqlite3.connect(root / ".autoresearch" / "store.db") as db:
        db.execute("UPDATE experiments SET torch = '1.13.1'")
    older = loop(root, env)
    assert older.returncode == 1 and "torch" in older.stderr and "1.13.1" in older.stderr
    assert "corpus" not in older.stderr.split("comparable")[1].split("Start")[0]  # only what differs is named

    # the same provenance resumes (a patch release of torch counts as the same)
    with sqlite3.connect(root / ".autoresearch" / "store.db") as db:
        db.execute("UPDATE experiments SET torch = ?", (P.major_minor(P.torch_version()) + ".99",))
    again = loop(root, env)
    assert again.returncode == 0, again.stderr[-3000:]


def test_without_verification_the_rows_record_the_runs_own_provenance(tmp_path: Path) -> None:
    data = prepare_folder(_folder(tmp_path / "src", docs=5), tmp_path / "corpus").path  # 3 train docs, ~2 KB
    root = integrity.make_repo(tmp_path / "repo", [])
    done = loop(root, integrity.env_for(tmp_path, data), "--verify", "off")
    assert done.returncode == 0, done.stderr[-3000:]
    row = load_results(root, "t").iloc[0]
    assert not row["verified"] and row["verifier"] is None
    assert row["corpus"] == P.read_meta(data)["fingerprint"] and row["torch"] == P.torch_version()
    assert row["eval_bytes"] > 0 and row["harness"].startswith("autoresearch_nb ")
    # the tiny corpus is seen many times in 2 s: said in the run's first line, its summary and the session log
    log = Path(row["log_path"]).read_text().splitlines()
    assert log[0].startswith("data: ") and P.read_meta(data)["fingerprint"] in log[0]
    passes = [line for line in log if line.startswith("data_passes:")]
    assert passes and float(passes[-1].split()[1]) > 1
    assert "times over the training split" in done.stdout + done.stderr


REWRITE = ("rewrite the shared tokenizer cache", "    tokenizer = H.get_tokenizer(corpus, TOKENIZER)\n",
           "    tokenizer = H.get_tokenizer(corpus, TOKENIZER)\n"
           "    from autoresearch_nb.harness.tokenizer import tokenizer_path\n"
           "    _cache = tokenizer_path(corpus, TOKENIZER)\n"
           "    _cache.write_text(_cache.read_text() + ' ')  # same vocabulary, other bytes: still a rewrite\n",
           "unverified")


def test_a_run_that_rewrites_the_tokenizer_cache_is_refused_by_the_verifier(tmp_path: Path) -> None:
    data = integrity.corpus(tmp_path)
    root = integrity.make_repo(tmp_path / "repo", [REWRITE])
    train = (root / "train.py").read_text().replace('TOKENIZER = "byte"', 'TOKENIZER = "bpe-300"')
    (root / "train.py").write_text(train)
    subprocess.run(["git", "commit", "-qam", "bpe"], cwd=root, check=True)
    assert not (data / "tokenizers").exists()  # the loop prepares it in a trusted process, then pins it
    done = loop(root, integrity.env_for(tmp_path, data))
    assert done.returncode == 0, done.stderr[-3000:]
    df = load_results(root, "t")
    base, cheat = df.iloc[0], df.iloc[1]
    assert base["status"] == "keep" and base["verified"] and base["tokenizer"] == "bpe-300"
    # the trusted prepare step also tokenized the train split, before the first run (not inside its time limit)
    pins_log = (root / ".autoresearch" / "logs" / "t" / "pins.log").read_text()
    assert "prepared the tokenizer bpe-300 and the train split" in pins_log
    assert list((data / "tokens").glob("bpe-300-*/train/manifest.json"))
    assert cheat["status"] == "unverified"
    assert "bpe-300" in cheat["reason"] and "changed since the session started" in cheat["reason"]

    # session 2: the file the refused run wrote is still in the cache; it is not trusted (pinned), and the
    # loop's trusted prepare step trains it again before anything is verified with it
    from autoresearch_nb.harness.tokenizer import trusted_hashes

    poisoned = next((data / "tokenizers").glob("bpe-300-*.json"))
    assert poisoned.read_text().endswith(" ")
    assert f"tokenizers/{poisoned.name}" not in P.pin(data)["files"]
    (root / "queue.toml").write_text(integrity.queue([]))
    subprocess.run(["git", "commit", "-qam", "baseline only"], cwd=root, check=True)
    second = subprocess.run([sys.executable, "-m", "autoresearch_nb.cli", "run", "--tag", "t2", "--repo", str(root),
                             "--agent", "queue", "--time-budget", "2", "--noise-repeats", "1", "--noise-k", "0",
                             "--budget-clock", "cpu"], env=integrity.env_for(tmp_path, data), capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    row = load_results(root, "t2").iloc[0]
    assert row["status"] == "keep" and row["verified"] and row["tokenizer"] == "bpe-300"
    assert not poisoned.read_text().endswith(" ")
    assert P.sha256(poisoned) == trusted_hashes(data)[poisoned.name]


def _folder(path: Path, docs: int = 6) -> Path:
    path.mkdir(parents=True)
    for i in range(docs):
        (path / f"doc{i}.txt").write_text(f"another text number {i}\n" * 40)
    return path


def test_differences_name_what_differs_and_ignore_what_is_unknown() -> None:
    stored = {"corpus": "stdlib-py3.11.7-aaa", "eval_bytes": 65551, "verifier": VERSION, "torch": "2.5.1+cpu"}
    assert P.differences(stored, {**stored, "torch": "2.5.0"}) == []
    assert P.differences(stored, {"corpus": None, "eval_bytes": None, "verifier": None, "torch": None}) == []
    found = P.differences(stored, {**stored, "eval_bytes": 16777231, "torch": "2.6.0"})
    assert [d.split(":")[0] for d in found] == ["eval_bytes", "torch"]
    assert "65551" in found[0] and "16777231" in found[0]


def test_the_recorded_provenance_is_the_latest_scored_row() -> None:
    from autoresearch_nb.records import Experiment, Status

    rows = [Experiment(0, "t", Status.KEEP, metric=1.0, corpus="a", torch="2.5.1"),
            Experiment(1, "t", Status.DISCARD, metric=1.1, corpus="b", torch="2.5.1"),
            Experiment(2, "t", Status.CRASH)]
    assert P.recorded(rows)["corpus"] == "b"
    with pytest.raises(P.IncomparableRun, match="scored on b, this session would use c") as err:
        P.check_resume("t", rows, {"corpus": "c", "torch": "2.5.0", "eval_bytes": None, "verifier": None})
    assert err.value.differences and err.value.stored["corpus"] == "b"


@pytest.mark.parametrize("cls", ["cpu", "cuda"])
def test_the_torch_free_eval_size_matches_the_harness(tmp_path: Path, cls: str) -> None:
    val = [(f"v{i}", bytes([65 + i % 26]) * 9000) for i in range(12)]  # > 64 KiB: the chunked branch on cpu
    corpus = write_corpus(tmp_path / "c", "c", [("t", b"train text" * 100)], val, source="test")
    os.environ["AUTORESEARCH_DEVICE_CLASS"] = cls
    try:
        assert P.eval_size(corpus.meta["val_bytes"], cls) == len(eval_bytes(corpus))
    finally:
        del os.environ["AUTORESEARCH_DEVICE_CLASS"]
    assert P.device_class({"AUTORESEARCH_DEVICE": "cuda:1"}) == "cuda"
    assert P.device_class({"AUTORESEARCH_DEVICE_CLASS": "mps", "AUTORESEARCH_DEVICE": "cpu"}) == "mps"


def test_pins_catch_a_changed_file_and_an_untrusted_tokenizer(tmp_path: Path) -> None:
    from autoresearch_nb.harness.constants import TOKENIZER_MANIFEST

    corpus = prepare_folder(_folder(tmp_path / "src"), tmp_path / "corpus")
    tok = corpus.path / "tokenizers" / "bpe-300-x.json"
    tok.parent.mkdir()
    tok.write_text("{}")
    key, other = "tokenizers/bpe-300-x.json", "tokenizers/b.json"
    (corpus.path / "tokenizers" / "b.json").write_text("{}")  # written by a run: in no manifest
    manifest = P.hidden(corpus.path) / TOKENIZER_MANIFEST
    manifest.parent.mkdir(exist_ok=True)
    manifest.write_text(json.dumps({"bpe-300-x.json": P.sha256(tok), "b.json": "0" * 64}))
    pins = P.pin(corpus.path)
    assert set(pins["files"]) == {"meta.json", "val.bin", P.HOLDOUT, key}  # b.json's hash is not the trusted one
    assert pins["fingerprint"] == corpus.fingerprint and "dir" not in pins
    assert P.pin_problem(pins, corpus.path, key) is None
    assert "not prepared by a trusted process" in P.pin_problem(pins, corpus.path, other)
    tok.write_text("{} ")
    assert "bpe-300-x.json changed since the session started" in P.pin_problem(pins, corpus.path, key)
    with pytest.raises(ValueError, match="changed since the session started"):
        P.pinned_bytes(pins, corpus.path, key)
    tok.write_text("{}")  # same bytes again: a hash, not a timestamp, decides
    assert P.pin_problem(pins, corpus.path, key) is None and P.pinned_bytes(pins, corpus.path, key) == b"{}"
    holdout = P.hidden(corpus.path) / "holdout.bin"
    assert P.locate(corpus.path, P.HOLDOUT) == holdout and holdout.is_file()
    val = corpus.path / "val.bin"
    data = val.read_bytes()
    time.sleep(0.01)
    val.write_bytes(data[:-1] + b"!")  # a read-only file rewritten (no sandbox): its stat moved, so it is hashed
    assert "val.bin changed" in P.pin_problem(pins, corpus.path, None)
    val.write_bytes(data)
    holdout.write_bytes(holdout.read_bytes() + b"!")
    assert "holdout.bin changed" in P.pin_problem(pins, corpus.path, None)


def test_pins_are_relative_so_a_node_with_its_cache_elsewhere_checks_them(tmp_path: Path) -> None:
    import shutil

    corpus = prepare_folder(_folder(tmp_path / "src"), tmp_path / "home-a" / "corpus")
    pins = P.pin(corpus.path)
    node = tmp_path / "home-b" / "cache" / "corpus"  # another HOME: same corpus, another absolute path
    shutil.copytree(corpus.path, node)
    shutil.copytree(P.hidden(corpus.path), P.hidden(node))
    assert all(not Path(key).is_absolute() for key in pins["files"])
    assert P.pin_problem(pins, node, None) is None
    other = prepare_folder(_folder(tmp_path / "src2", docs=7), tmp_path / "other")
    assert "but the session pinned" in P.pin_problem(pins, other.path, None)
    (P.hidden(node) / "holdout.bin").write_bytes(b"x")
    assert "holdout.bin changed" in P.pin_problem(pins, node, None)


def test_the_recorded_provenance_ignores_rows_a_run_could_forge() -> None:
    from autoresearch_nb.records import Experiment, Status

    honest = Experiment(0, "t", Status.KEEP, metric=1.0, corpus="a", torch="2.5.1", verified=True)
    forged = Experiment(1, "t", Status.CRASH, metric=1.0, corpus="forged", torch="9.9")  # printed by the run
    unverified = Experiment(2, "t", Status.UNVERIFIED, metric=0.5, corpus="forged", torch="9.9")
    assert P.recorded([honest, forged, unverified], verified=True)["corpus"] == "a"
    assert P.recorded([honest, forged], verified=False)["corpus"] == "a"
    P.check_resume("t", [honest, forged, unverified], {"corpus": "a", "torch": "2.5.0", "eval_bytes": None,
                                                       "verifier": None}, verified=True)
    assert P.recorded([forged, unverified], verified=True) == {}


def test_the_verifier_builds_the_tokenizer_from_the_bytes_it_checked(tmp_path: Path) -> None:
    from autoresearch_nb.harness.tokenizer import prepare_tokenizer, tokenizer_path
    from autoresearch_nb.verifier import Refused, pinned_tokenizer, tokenizer_key

    corpus = prepare_folder(_folder(tmp_path / "src"), tmp_path / "corpus")
    trusted = prepare_tokenizer(corpus, "bpe-300")
    pins = json.dumps(P.pin(corpus.path))
    assert tokenizer_key(corpus, "bpe-300") in json.loads(pins)["files"] and tokenizer_key(corpus, "byte") is None
    built = pinned_tokenizer(pins, corpus, "bpe-300")
    assert built.encode(b"another text").tolist() == trusted.encode(b"another text").tolist()
    path = tokenizer_path(corpus, "bpe-300")
    path.write_bytes(path.read_bytes().replace(b'"vocab"', b'"vocab" ', 1))  # a run's rewrite after the pins
    with pytest.raises(Refused, match="changed since the session started"):
        pinned_tokenizer(pins, corpus, "bpe-300")
