# Run: python -m pytest tests/test_harness_prepare.py -q
from __future__ import annotations

import json

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
    # the train split is tokenized here too (a run would otherwise spend its time limit on it: GBs on a GPU VM)
    manifest = folder / "tokens" / f"bpe-300-{corpus.fingerprint}" / "train" / "manifest.json"
    assert manifest.exists() and json.loads(manifest.read_text())["shards"]
    assert not (folder / "tokens" / f"bpe-300-{corpus.fingerprint}" / "val").exists()  # only what training reads


def _texts(tmp_path):
    src = tmp_path / "texts"
    src.mkdir()
    for i in range(3):
        (src / f"doc{i}.txt").write_text(f"document {i}\n" * 50)
    return src


def test_tokenizer_from_train_py_never_evaluates_code(tmp_path):
    # Fault 16: TOKENIZER was eval()'d; this expression reached subprocess.Popen through object.__subclasses__.
    import os
    import subprocess
    import sys
    from pathlib import Path
    evil = tmp_path / "train.py"
    evil.write_text("TOKENIZER = [c for c in ().__class__.__mro__[1].__subclasses__() if c.__name__ == 'Popen']"
                    "[0](['touch', 'PWNED']) and 'byte'\n")
    env = {**os.environ, C.ENV_CACHE: str(tmp_path / "cache"), C.ENV_DEVICE: "cpu",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-m", "autoresearch_nb.harness.prepare", "--dataset",
                           str(_texts(tmp_path)), "--tokenizer", f"from:{evil}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "TOKENIZER must be a literal" in proc.stderr and not (tmp_path / "PWNED").exists()


def test_tokenizer_from_train_py_follows_the_cuda_switch(tmp_path, monkeypatch):
    from pathlib import Path
    from autoresearch_nb.harness.prepare import tokenizer_of
    monkeypatch.setenv(C.ENV_DEVICE, "cpu")
    assert tokenizer_of(str(Path(__file__).resolve().parents[1] / "train.py")) == "bpe-2048"
    monkeypatch.setenv(C.ENV_DEVICE_CLASS, "cuda")
    assert tokenizer_of(str(Path(__file__).resolve().parents[1] / "train.py")) == "bpe-8192"
    (tmp_path / "t.py").write_text("TOKENIZER = 'bpe-300' if not CUDA else 'byte'\n")
    assert tokenizer_of(str(tmp_path / "t.py")) == "byte"
