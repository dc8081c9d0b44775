"""Where a row's number came from, whether a resume would mix incomparable numbers, and the verifier's pins.

Every row records the harness, evaluation (verifier version and ``eval_bytes``), corpus fingerprint, tokenizer
and torch version its number came from (:data:`FIELDS`, taken from the run's summary, the verifier's facts
winning). Opening a run that has rows compares them with what this session would measure under
(:func:`current`, computed without importing torch: torch's version from its package metadata, the corpus from
its ``meta.json``, ``eval_bytes`` from the device class), and refuses with :class:`IncomparableRun` when the
corpus, the evaluation bytes, the verifier or torch's major.minor differ (:data:`COMPARED`).

The pins (:func:`pin`): at the first experiment of a session the loop hashes the files the verifier reads (the
corpus's ``meta.json``, ``val.bin``, the holdout beside it, and the cached tokenizers whose hash a trusted
process recorded in the manifest beside the holdout) and hands the hashes, keyed by path relative to the corpus
folder, to every verification (:func:`autoresearch_nb.verifier.check_pins`), which refuses a file that changed
since (a run may write the shared tokenizer cache) and builds the tokenizer from the very bytes it checked
(:func:`pinned_bytes`). Hashing is once per session; the verifier re-hashes a read-only file only
when its ``stat`` (inode, size, mtime, ctime: a write always moves ctime) changed, a writable one every time.

    >>> differences({"corpus": "stdlib-py3.11.7-aaa", "torch": "2.5.1"}, {"corpus": "x-1", "torch": "2.5.0"})
    ["corpus: the run's rows were scored on stdlib-py3.11.7-aaa, this session would use x-1"]
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import platform
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import AutoresearchError
from . import environ

# The summary keys every row keeps as columns (Experiment fields of the same names).
FIELDS = ("harness", "verifier", "eval_bytes", "corpus", "tokenizer", "torch")
# What must agree for two numbers to be comparable (torch by major.minor: a patch release keeps kernels' maths;
# budget_clock is the loop's own, from the row, not the summary: a wall second and a CPU second buy other steps).
COMPARED = ("corpus", "eval_bytes", "verifier", "torch", "budget_clock")
HARNESS_FILES = ("meta.json", "val.bin")  # in the corpus folder, pinned (with the holdout beside it) when present
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
              "autoresearch-nb prepare; torch: the version the run used; the clock: --budget-clock)")


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
                    "torch": "trained under torch", "budget_clock": "trained on the budget clock"}[key]
            out.append(f"{key}: the run's rows were {what} {a}, this session would use {b}")
    return out


def recorded(experiments: Iterable[Any], verified: bool = False) -> dict[str, Any]:
    """The provenance of a run: its latest row whose fields came from a trusted source. With ``verified``
    (verification is on) only rows the verifier scored; else only clean rows (keep, discard). Never a crash
    row: what it says is what the run printed, which may be forged to block resumes."""
    for exp in reversed(list(experiments)):
        if verified and not getattr(exp, "verified", False):
            continue
        if not verified and getattr(exp, "status", None) not in ("keep", "discard"):  # Status is a str enum
            continue
        values = {key: getattr(exp, key, None) for key in (*FIELDS, "budget_clock")}
        if getattr(exp, "metric", None) is not None and any(values[k] is not None for k in COMPARED):
            return values
    return {}


def check_resume(tag: str, experiments: Iterable[Any], current_values: Mapping[str, Any],
                 verified: bool = False) -> None:
    """Raise :class:`IncomparableRun` when the run's trusted rows (:func:`recorded`) and this session disagree
    on :data:`COMPARED`."""
    stored = recorded(experiments, verified)
    found = differences(stored, current_values)
    if found:
        raise IncomparableRun(tag, found, stored, current_values)


# -- this session, without torch -------------------------------------------------------------------------

@functools.cache
def constants() -> Any:
    """``harness/constants.py`` loaded on its own (once per process): importing it through the package would
    import torch."""
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


def current(folder: Path, env: Mapping[str, str] | None = None, verifier: str | None = None,
            clock: str | None = None) -> dict[str, Any]:
    """This session's provenance for :data:`COMPARED` with the corpus in ``folder`` (None where unknown: no
    prepared corpus yet); ``clock``: the session's budget clock."""
    env = environ.snapshot() if env is None else dict(env)
    meta = read_meta(Path(folder))
    size = meta.get("val_bytes") if meta else None
    return {"corpus": meta.get("fingerprint") if meta else None, "torch": torch_version(), "verifier": verifier,
            "budget_clock": clock,
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


HOLDOUT = "<holdout>/holdout.bin"  # the pin key of the holdout file, kept in the folder beside the corpus


def hidden(folder: Path) -> Path:
    """The holdout folder beside corpus ``folder`` (``harness.corpus.holdout_dir``'s rule, without torch)."""
    folder = Path(folder).expanduser().absolute()
    return folder.with_name(folder.name + constants().HOLDOUT_SUFFIX)


def locate(folder: Path, key: str) -> Path:
    """The file pin ``key`` names for the corpus in ``folder`` (keys are relative, so a node whose cache lives
    elsewhere checks the same pins)."""
    if key == HOLDOUT:
        return hidden(folder) / "holdout.bin"
    return Path(folder) / key


def trusted_tokenizers(folder: Path) -> dict[str, str]:
    """``{file name: sha256}`` of the tokenizers a trusted process prepared (``harness.tokenizer``'s manifest
    in the holdout folder, which runs cannot write)."""
    try:
        found = json.loads((hidden(folder) / constants().TOKENIZER_MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def pin(folder: Path) -> dict[str, Any]:
    """The hashes of the files the verifier reads for the corpus in ``folder``: its ``meta.json`` and
    ``val.bin``, the holdout beside it, and the cached tokenizers a trusted process prepared (a file whose hash
    is not in that manifest, e.g. one a run wrote, is left out, so the verifier refuses it):
    ``{"fingerprint": ..., "files": {key: {"sha256", "stat", "writable"}}}``, keys relative (:func:`locate`).
    Tokenizer files are marked writable (runs may write that cache), so the verifier hashes them every time."""
    folder = Path(folder).resolve()
    keys = [*HARNESS_FILES, HOLDOUT] + [f"{TOKENIZERS}/{p.name}" for p in sorted((folder / TOKENIZERS).glob("*.json"))]
    trusted = trusted_tokenizers(folder)
    files = {}
    for key in keys:
        path = locate(folder, key)
        if not path.is_file():
            continue
        writable = key.startswith(f"{TOKENIZERS}/")
        digest = sha256(path)
        if writable and trusted.get(path.name) != digest:
            continue
        files[key] = {"sha256": digest, "stat": signature(path), "writable": writable}
    meta = read_meta(folder) or {}
    return {"fingerprint": meta.get("fingerprint"), "files": files}


def pin_problem(pins: Mapping[str, Any], folder: Path, tokenizer: str | None) -> str | None:
    """Why the pinned files can no longer be trusted, or None: the corpus has another fingerprint, a pinned
    file is gone or changed, or the tokenizer a run used (``tokenizer``: its key, ``tokenizers/NAME.json``) was
    not prepared by a trusted process before the session (a run wrote it)."""
    meta = read_meta(Path(folder)) or {}
    if meta.get("fingerprint") != pins.get("fingerprint"):
        return f"the corpus is {meta.get('fingerprint')}, but the session pinned {pins.get('fingerprint')}"
    files: Mapping[str, Any] = pins.get("files") or {}
    for key, want in files.items():
        path = locate(folder, key)
        try:
            if not want.get("writable") and signature(path) == list(want.get("stat") or ()):
                continue  # untouched since the session hashed it (any write moves ctime)
            if sha256(path) == want.get("sha256"):
                continue
        except OSError as e:
            return f"{path} is gone or unreadable since the session started ({e.strerror})"
        return (f"{path} changed since the session started (sha256 differs from the pinned one): a run may have "
                "written to the shared cache; delete it and prepare it again (autoresearch-nb prepare)")
    if tokenizer is not None and tokenizer not in files:
        return (f"the tokenizer file {locate(folder, tokenizer)} was not prepared by a trusted process before the "
                "session (a run may have written it), so it cannot be trusted: prepare it (autoresearch-nb "
                "prepare --tokenizer NAME, or setup = ...) and resume")
    return None


def pinned_bytes(pins: Mapping[str, Any], folder: Path, key: str) -> bytes:
    """The bytes of pinned file ``key``, read once and checked against its pin (so what the caller builds from
    them is what was checked). Raises ValueError saying why when it is not pinned or differs."""
    want = (pins.get("files") or {}).get(key)
    path = locate(folder, key)
    if not want:
        raise ValueError(f"{path} was not pinned at the session's start (not prepared by a trusted process)")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path} is gone or unreadable since the session started ({e.strerror})") from None
    if hashlib.sha256(data).hexdigest() != want.get("sha256"):
        raise ValueError(f"{path} changed since the session started (sha256 differs from the pinned one)")
    return data


__all__ = ["FIELDS", "COMPARED", "IncomparableRun", "of_summary", "differences", "recorded", "check_resume",
           "current", "device_class", "eval_size", "torch_version", "pin", "pin_problem", "pinned_bytes", "locate"]
