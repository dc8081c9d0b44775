# Run: python -m pytest tests/test_harness_safefs.py -q
"""Writing into caches runs can write: planted links are removed, never followed (issue 22). The last test
plants the link as a run would and runs the loop's real trusted prepare step (a subprocess)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from autoresearch_nb.harness.corpus import write_corpus
from autoresearch_nb.harness.safefs import real_dir, write_file
from autoresearch_nb.verify import prepare_command


def test_a_planted_link_on_the_way_is_replaced_by_a_real_folder(tmp_path: Path) -> None:
    base, victim = tmp_path / "data", tmp_path / "checkout"
    (base / "tokens").mkdir(parents=True)
    victim.mkdir()
    os.symlink(victim, base / "tokens" / "bpe")
    (base / "tokens" / "file").write_text("a file where a folder belongs")
    made = real_dir(base, "tokens/bpe/train", "more")
    assert made == base / "tokens" / "bpe" / "train" / "more" and made.is_dir()
    assert not (base / "tokens" / "bpe").is_symlink() and list(victim.iterdir()) == []
    assert real_dir(base, "tokens", "file").is_dir()


def test_a_file_is_written_beside_a_planted_temp_link_and_replaces_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's")
    target = tmp_path / "out.bin"
    os.symlink(victim, tmp_path / f".out.bin.{os.getpid()}.tmp")  # the temp name, guessed by a run
    os.symlink(victim, target)                                     # and the file itself
    write_file(target, b"data")
    assert victim.read_text() == "the user's"
    assert not target.is_symlink() and target.read_bytes() == b"data"


def test_the_trusted_prepare_step_never_writes_through_a_link_a_run_planted(tmp_path: Path) -> None:
    """A run replaced the token-shard folder with a link to the user's checkout; the next session's prepare
    step wrote 6.6 MB of shards into it. Now the link is removed and the shards land in the cache."""
    train = [(f"t{i:03d}", f"document {i} says {'word ' * (i % 7)}and ends\n".encode() * 20) for i in range(60)]
    corpus = write_corpus(tmp_path / "cache", "data", train, [("v", b"validation text\n" * 20)], source="test")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "train.py").write_text('TOKENIZER = "bpe-300"\n')
    tokens = corpus.path / "tokens"
    tokens.mkdir(exist_ok=True)
    planted = tokens / f"bpe-300-{corpus.fingerprint}"
    os.symlink(checkout, planted)  # what the run did
    env = {**os.environ, "AUTORESEARCH_DATA": str(corpus.path), "AUTORESEARCH_DEVICE": "cpu"}
    done = subprocess.run(prepare_command(checkout / "train.py"), cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "prepared the tokenizer bpe-300" in done.stdout
    assert sorted(p.name for p in checkout.iterdir()) == ["train.py"]  # nothing written into the checkout
    assert not planted.is_symlink() and (planted / "train" / "manifest.json").is_file()


@pytest.mark.parametrize("kind", ["file", "link"])
def test_the_tokenizer_file_is_written_past_a_planted_entry(tmp_path: Path, kind: str) -> None:
    from autoresearch_nb.harness.tokenizer import prepare_tokenizer, tokenizer_path

    train = [(f"t{i:03d}", f"document {i} ends\n".encode() * 20) for i in range(30)]
    corpus = write_corpus(tmp_path / "cache", "data", train, [("v", b"validation text\n" * 20)], source="test")
    victim = tmp_path / "victim"
    victim.mkdir()
    folder = corpus.path / "tokenizers"
    if folder.exists():
        folder.rmdir()
    if kind == "link":
        os.symlink(victim, folder)
    else:
        folder.write_text("not a folder")
    prepare_tokenizer(corpus, "bpe-260")
    assert tokenizer_path(corpus, "bpe-260").is_file() and list(victim.iterdir()) == []
