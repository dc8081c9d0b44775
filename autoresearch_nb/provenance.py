"""Where a row's number came from, whether a resume would mix incomparable numbers, and the verifier's pins.

Every row records the harness, evaluation (verifier version and ``eval_bytes``), corpus fingerprint, tokenizer
and torch version its number came from (:data:`FIELDS`, taken from the run's summary, the verifier's facts
winning). Opening a run that has rows compares them with what this session would measure under
(:func:`current`, computed without importing torch: torch's version from its package metadata, the corpus from
its ``meta.json``, ``eval_bytes`` from the device class), and refuses with :class:`IncomparableRun` when the
corpus, the evaluation bytes, the verifier or torch's major.minor differ (:data:`COMPARED`).

The pins (:func:`pin`): at the first experiment of a session the loop hashes the files the verifier reads (the
corpus's ``meta.json``, ``val.bin``, the holdout, the cached tokenizers) and hands the hashes to every
verification (:func:`autoresearch_nb.verifier.check_pins`), which refuses a file that changed since (a run may
write the shared tokenizer cache). Hashing is once per session; the verifier re-hashes a read-only file only
when its ``stat`` (inode, size, mtime, ctime: a write always moves ctime) changed, a writable one every time.

    >>> differences({"corpus": "stdlib-py3.11.7-aaa", "torch": "2.5.1"}, {"corpus": "x-1", "torch": "2.5.0"})
    ["corpus: the run's rows were scored on stdlib-py3.11.7-aaa, this session would use x-1"]
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import AutoresearchError

# The summary keys every row keeps as columns (Experiment fields of the same names).
FIELDS = ("harness", "verifier", "eval_bytes", "corpus", "tokenizer", "torch")
# What must agree for two numbers to be comparable (torch by major.minor: a patch release keeps kernels' maths).
COMPARED = ("corpus", "eval_bytes", "verifier", "torch")
HARNESS_FILES = ("meta.json", "val.bin", "holdout.bin")  # in the corpus folder, pinned when present
TOKENIZERS = "tokenizers"   # the corpus's tokenizer cache: runs may write it (harness.tokenizer.tokenizer_path)
_STAT = ("st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")


class IncomparableRun(AutoresearchError):
    """Resuming would mix numbers measured under different conditions. ``differences`` says which, in words;
    ``stored`` and ``current`` are the two provenances."""

    def __init__(self, tag: str, differences: list[str], stored: Mapping[str, Any], current: Mapping[str, Any]):
        self.tag, self.differences, self.stored, self.current = tag, differences, dict(stored), dict(current)
        super().__init__(
            f"run {tag!r} cannot resume: its numbers would not be comparable with this session's. "
            + "; ".join(differences)
            + ". Start a new tag (--tag), or restore what changed (the corpus: AUTORESEARCH_DATA / "
              "autoresearch-nb prepare; torch: the version the run used)")


def of_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The provenance fields of one run's summary (None where it says nothing)."""
    out: dict[str, Any] = {}
    for key in FIELDS:
        value = summary.get(key)
        if key == "eval_bytes":
            out[key] = int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        else:
            out[key] = None if value is None else str(value)
    return out


def major_minor(version: str | None) -> str | None:
    """``2.5.1+cu121`` -> ``2.5``."""
    return None if not version else ".".join(str(version).split("+")[0].split(".")[:2])


def differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between a run's recorded provenance and this session's, in words; a value either side
    does not know is not compared."""
    out = []
    for key in COMPARED:
        a, b = stored.get(key), current.get(key)
        if a is None or b is None:
            continue
        if key == "torch" and major_minor(a) == major_minor(b):
            continue
        if key == "eval_bytes" and int(a) == int(b):
            continue
        if str(a) != str(b):
            what = {"corpus": "scored on", "eval_bytes": "scored on eval_bytes", "verifier": "verified by",
                    "torch": "trained under torch"}[key]
            out.append(f"{key}: the run's rows were {what} {a}, this session would use {b}")
    return out


def recorded(experiments: Iterable[Any]) -> dict[str, Any]:
    """The provenance of a run: its latest row that has any (rows without, e.g. a crash, say nothing)."""
    for exp in reversed(list(experiments)):
        values = {key: getattr(exp, key, None) for key in FIELDS}
        if getattr(exp, "metric", None) is not None and any(values[k] is not None for k in COMPARED):
            return values
    return {}


def check_resume(tag: str, experiments: Iterable[Any], current_values: Mapping[str, Any]) -> None:
    """Raise :class:`IncomparableRun` when the run's rows and this session disagree on :data:`COMPARED`."""
    stored = recorded(experiments)
    found = differences(stored, current_values)
    if found:
        raise IncomparableRun(tag, found, stored, current_values)


# -- this session, without torch -------------------------------------------------------------------------

def constants() -> Any:
    """``harness/constants.py`` loaded on its own: importing it through the package would import torch."""
    path = Path(__file__).resolve().parent / "harness" / "constants.py"
    spec = importlib.util.spec_from_file_location("_autoresearch_harness_constants", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def torch_version() -> str | None:
    """The installed torch's version, from its package metadata (no import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return None


def device_class(env: Mapping[str, str]) -> str:
    """The device class runs will get (``harness.runtime.device_class``, guessed without torch): the forcing
    variables first, else CUDA when torch is a CUDA build and the driver is there, MPS on Apple silicon."""
    forced = env.get("AUTORESEARCH_DEVICE_CLASS", "").strip()
    if forced:
        return forced
    name = env.get("AUTORESEARCH_DEVICE", "").strip().split(":")[0]
    if name:
        return name if name in ("cpu", "mps", "cuda") else "cpu"
    build = torch_version() or ""
    if "+cpu" not in build and Path("/dev/nvidiactl").exists():
        return "cuda"
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return "mps"
    return "cpu"


def eval_size(val_bytes: int, cls: str) -> int:
    """``len(harness.eval_bytes(corpus))`` from the val split's size (its chunks and separators)."""
    c = constants()
    total = c.EVAL_BYTES[cls]
    if val_bytes <= total:
        return val_bytes
    return (total // c.EVAL_CHUNKS) * c.EVAL_CHUNKS + (c.EVAL_CHUNKS - 1) * len(c.DOC_SEPARATOR)


def read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def current(folder: Path, env: Mapping[str, str] | None = None, verifier: str | None = None) -> dict[str, Any]:
    """This session's provenance for :data:`COMPARED` with the corpus in ``folder`` (None where unknown: no
    prepared corpus yet)."""
    env = dict(os.environ if env is None else env)
    meta = read_meta(Path(folder))
    size = meta.get("val_bytes") if meta else None
    return {"corpus": meta.get("fingerprint") if meta else None, "torch": torch_version(), "verifier": verifier,
            "eval_bytes": eval_size(int(size), device_class(env)) if isinstance(size, int) else None}


# -- pins ------------------------------------------------------------------------------------------------

def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def signature(path: Path) -> list[int]:
    st = path.stat()
    return [int(getattr(st, name)) for name in _STAT]


def pin(folder: Path, extra: Iterable[Path] = ()) -> dict[str, Any]:
    """The hashes of the files the verifier reads in corpus ``folder`` (and ``extra`` files elsewhere, e.g. a
    holdout kept apart): ``{"dir": ..., "files": {path: {"sha256", "stat", "writable"}}}``. Tokenizer files
    are marked writable (runs may write that cache), so the verifier hashes them every time."""
    folder = Path(folder).resolve()
    paths = [folder / name for name in HARNESS_FILES] + sorted((folder / TOKENIZERS).glob("*.json"))
    files = {}
    for path in [*paths, *(Path(p).resolve() for p in extra)]:
        if path.is_file():
            files[str(path)] = {"sha256": sha256(path), "stat": signature(path),
                                "writable": path.parent.name == TOKENIZERS}
    return {"dir": str(folder), "files": files}


def pin_problem(pins: Mapping[str, Any], folder: Path, tokenizer_file: Path | None) -> str | None:
    """Why the pinned files can no longer be trusted, or None: the corpus folder moved, a pinned file is gone
    or changed, or the tokenizer a run used was not there when the session started (a run wrote it)."""
    if str(Path(folder).resolve()) != pins.get("dir"):
        return f"the corpus is {Path(folder).resolve()}, but the session pinned {pins.get('dir')}"
    files: Mapping[str, Any] = pins.get("files") or {}
    for name, want in files.items():
        path = Path(name)
        try:
            if not want.get("writable") and signature(path) == list(want.get("stat") or ()):
                continue  # untouched since the session hashed it (any write moves ctime)
            if sha256(path) == want.get("sha256"):
                continue
        except OSError as e:
            return f"{path} is gone or unreadable since the session started ({e.strerror})"
        return (f"{path} changed since the session started (sha256 differs from the pinned one): a run may have "
                "written to the shared cache; delete it and prepare it again (autoresearch-nb prepare)")
    if tokenizer_file is not None and str(Path(tokenizer_file).resolve()) not in files:
        return (f"the tokenizer file {tokenizer_file} was not there when the session started (a run wrote it), "
                "so it cannot be trusted: prepare it before the session (autoresearch-nb prepare --tokenizer "
                "NAME, or setup = ...) and resume")
    return None


__all__ = ["FIELDS", "COMPARED", "IncomparableRun", "of_summary", "differences", "recorded", "check_resume",
           "current", "device_class", "eval_size", "torch_version", "pin", "pin_problem"]
