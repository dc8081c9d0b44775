"""``autoresearch-nb prepare``: build a corpus folder that train.py reads.

    autoresearch-nb prepare                                  # stdlib, offline, seconds
    autoresearch-nb prepare --dataset tinystories --shards 1
    autoresearch-nb prepare --dataset climbmix --shards 2 --base-url http://127.0.0.1:8000
    autoresearch-nb prepare --dataset ~/my_texts             # a folder of text or parquet (`text`) files
    autoresearch-nb prepare --dataset stdlib --tokenizer bpe-4096   # also a BPE, and the train split in it

Train on anything but the default with ``AUTORESEARCH_DATA=<the folder printed at the end>``.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterable, Iterator
from itertools import chain
from dataclasses import dataclass
from pathlib import Path

from . import constants as C
from .corpus import Corpus, CorpusError, holdout_dir, parquet_texts, prepare_folder, prepare_stdlib, write_stream
from .download import DownloadError, NotFound, check_parquet, fetch
from .runtime import cache_root, env


@dataclass(frozen=True)
class Remote:
    """A dataset served as parquet shards with a ``text`` column under one base URL."""
    name: str
    base_url: str
    url_env: str
    train_pattern: str          # formatted with i = 0, 1, 2, ...
    val_files: tuple[str, ...]
    default_shards: int
    val_max_bytes: int = 32 * 2**20  # enough validation text for any device class; keeps big shards cheap

    def base(self, override: str | None = None) -> str:
        return (override or env(self.url_env) or self.base_url).rstrip("/")


REMOTES = {
    "tinystories": Remote(
        "tinystories", "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/refs%2Fconvert%2Fparquet/default",
        "AUTORESEARCH_TINYSTORIES_URL", "train/{i:04d}.parquet", ("validation/0000.parquet",), 4),
    "climbmix": Remote(
        "climbmix", "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main",
        "AUTORESEARCH_CLIMBMIX_URL", "shard_{i:05d}.parquet", ("shard_06542.parquet",), 2),
}


def prepare_remote(remote: Remote, out: Path, *, shards: int | None = None, base_url: str | None = None,
                   progress: bool = True, retries: int = 5, backoff: float = 1.0) -> Corpus:
    """Download ``shards`` train shards (fewer if the server runs out) and the validation shard, check each,
    then write the corpus. Shards already downloaded and checked are reused."""
    base = remote.base(base_url)
    downloads = out / "downloads"
    shards = remote.default_shards if shards is None else shards
    if shards < 1:
        raise CorpusError("--shards must be at least 1")

    def get(name: str) -> Path:
        dest = downloads / name.replace("/", "__")
        return fetch(f"{base}/{name}", dest, validate=check_parquet, progress=progress, retries=retries,
                     backoff=backoff)

    train_paths = []
    for i in range(shards):
        try:
            train_paths.append(get(remote.train_pattern.format(i=i)))
        except NotFound:
            if i == 0:
                raise
            break  # the dataset has fewer shards than asked for
    val_paths = [get(name) for name in remote.val_files]
    docs = chain(held_out(_docs(train_paths), C.HOLDOUT_FRACTION, remote.val_max_bytes),
                 (("val", key, text) for key, text in _docs(val_paths, remote.val_max_bytes)))
    return write_stream(out, remote.name, docs, source=f"{base} ({len(train_paths)} train shards)")


def held_out(docs: Iterable[tuple[str, bytes]], fraction: float, max_bytes: int) -> Iterator[tuple[str, str, bytes]]:
    """``(split, key, text)``: a document goes to the holdout when the sha1 of its key falls in the first
    ``fraction`` of the hash range, until the holdout holds ``max_bytes``; the rest to train. One pass, so a
    download bigger than memory streams; same keys, same holdout, on any machine."""
    size, cut = 0, int(fraction * 2**32)
    for key, text in docs:
        held = size < max_bytes and int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) < cut
        size += len(text) if held else 0
        yield ("holdout" if held else "train"), key, text


def _docs(paths: list[Path], max_bytes: int | None = None) -> Iterator[tuple[str, bytes]]:
    size = 0
    for path in paths:
        for i, text in enumerate(parquet_texts(path)):
            if max_bytes is not None and size >= max_bytes:
                return
            size += len(text)
            yield f"{path.name}#{i:08d}", text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autoresearch-nb prepare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=C.DEFAULT_DATASET,
                   help="stdlib (default, offline), tinystories, climbmix, or a folder of text/parquet files")
    p.add_argument("--out", type=Path, help="output folder (default: <cache>/<dataset name>)")
    p.add_argument("--shards", type=int, help="train shards to download (tinystories: 4, climbmix: 2)")
    p.add_argument("--base-url", help="download from here instead (also $AUTORESEARCH_<NAME>_URL)")
    p.add_argument("--retries", type=int, default=5, help="tries per file after the first (default 5)")
    p.add_argument("--tokenizer", default="byte",
                   help="also train and cache this tokenizer, e.g. bpe-4096, or from:train.py (the one that "
                        "file's TOKENIZER line picks on this machine), and tokenize the train split with it")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def prepare(dataset: str = C.DEFAULT_DATASET, out: Path | None = None, **options) -> Corpus:
    """Prepare ``dataset`` into ``out`` (default: the cache) and return the corpus.

        >>> prepare("stdlib").fingerprint
    """
    if dataset == "stdlib":
        return prepare_stdlib(out or cache_root() / "stdlib")
    if dataset in REMOTES:
        return prepare_remote(REMOTES[dataset], Path(out or cache_root() / dataset), **options)
    folder = Path(dataset).expanduser()
    if folder.is_dir():
        name = f"local-{folder.resolve().name}"
        return prepare_folder(folder, Path(out or cache_root() / name), name=name)
    raise CorpusError(f"unknown dataset {dataset!r}: use stdlib, {', '.join(REMOTES)}, or a folder path")


def tokenizer_of(path: str) -> str:
    """The tokenizer a train.py would use on this machine: its ``TOKENIZER = ...`` line, evaluated with the
    same ``CUDA`` switch the file computes (so the loop's setup can train a BPE before the first timed run)."""
    import ast

    from .runtime import device, device_class

    tree = ast.parse(Path(path).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "TOKENIZER" for t in node.targets):
            value = node.value
            # Agent-written code: never eval it. Only `A if CUDA else B` (or `not CUDA`) over literals.
            if isinstance(value, ast.IfExp):
                test, cuda = value.test, device_class(device()) == "cuda"
                if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
                    test, cuda = test.operand, not cuda
                if not (isinstance(test, ast.Name) and test.id == "CUDA"):
                    raise ValueError(f"{path}: TOKENIZER may only switch on CUDA")
                value = value.body if cuda else value.orelse
            try:
                return str(ast.literal_eval(value))
            except ValueError:
                raise ValueError(f"{path}: TOKENIZER must be a literal, not {ast.unparse(value)[:80]}") from None
    return "byte"


def cli(argv: list[str] | None = None) -> int:
    """Entry point for ``autoresearch-nb prepare ARGS``: 0 done, 1 failed, 2 bad flags."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its one-line complaint
        return 0 if exc.code == 0 else 2
    options = {}
    if args.dataset in REMOTES:
        options = dict(shards=args.shards, base_url=args.base_url, progress=not args.no_progress,
                       retries=args.retries)
    elif args.shards is not None or args.base_url:
        print(f"prepare: --shards and --base-url only apply to {', '.join(REMOTES)}", file=sys.stderr)
        return 2
    try:
        corpus = prepare(args.dataset, args.out, **options)
        name = tokenizer_of(args.tokenizer[5:]) if args.tokenizer.startswith("from:") else args.tokenizer
        if name != "byte":
            from .tokenizer import prepare_tokenizer
            tokenizer = prepare_tokenizer(corpus, name)  # trusted: its hash goes in the manifest runs can't write
            from .shards import tokenize_split
            tokenize_split(corpus, tokenizer, "train")  # the shards now, not inside the first run's time limit
    except ValueError as exc:
        print(f"prepare: {exc}", file=sys.stderr)
        return 2
    except (CorpusError, DownloadError, OSError) as exc:
        print(f"prepare: {exc}", file=sys.stderr)
        return 1
    meta = corpus.meta
    print(f"prepared {corpus.name}: {meta['train_bytes'] / 1e6:.1f} MB train ({meta['train_docs']} docs), "
          f"{meta['val_bytes'] / 1e6:.2f} MB val ({meta['val_docs']} docs), "
          f"{meta['holdout_bytes'] / 1e6:.2f} MB holdout ({meta['holdout_docs']} docs), "
          f"fingerprint {corpus.fingerprint}")
    print(f"folder: {corpus.path} (holdout: {holdout_dir(corpus)}, never readable by runs)")
    if corpus.name != C.DEFAULT_DATASET:
        print(f"train on it with: AUTORESEARCH_DATA={corpus.path} python train.py")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
