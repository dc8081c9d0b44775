"""Run directories: a plain export of an experiment's commit, with no ``.git``, outside the user's checkout.

    >>> path = run_dir_for(repo, tag="nov29", worker=0)            # doctest: +SKIP
    >>> refresh(repo, sha, path, include=("data",))   # writes only what differs  # doctest: +SKIP
    >>> tmp_for(path)                      # its private TMPDIR, emptied by refresh  # doctest: +SKIP
    >>> changes(repo, sha, path)           # after the run: tracked paths it changed  # doctest: +SKIP

Why outside the checkout (``~/.cache/autoresearch_nb/runs/<repo>-<hash>/<tag>/w<i>``, or ``root=``) rather than
under ``.autoresearch/``: nothing a run does by relative path (``../../README.md``) lands in the checkout or the
store, and nothing that searches upwards (git, pytest, a ``pyproject.toml`` lookup) finds the user's repository.
The sandbox's environment also sets ``GIT_CEILING_DIRECTORIES`` to the directory above, for a home that is
itself a git repository.

One directory per worker is reused: :func:`refresh` hashes what is there (git's blob hash, so no file is read
from git unless it differs), rewrites what differs and deletes everything else, byte-code caches included (a
stale ``.pyc`` of a same-size file rewritten within a second would be used). Nothing on disk is trusted:
symlinks a run planted are removed, never followed. :func:`changes` compares the same way, ignoring caches,
so it replaces ``git status`` (which a run could defeat by committing, resetting or deleting ``.git``).

What an export leaves out: gitignored data, virtual environments, LFS content (the pointer files are
exported) and submodules. ``include`` names such paths (relative to the repo); each appears in the run
directory as a symlink to the original, which the sandbox policy makes readable, not writable.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import GitError, SandboxError
from . import environ
from .layout import RunPaths

# Written by tools as a side effect of running; never a change to the repository.
CACHE_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints",
                        ".hypothesis", ".cache"})
CACHE_SUFFIXES = (".pyc", ".pyo")
_MODES = {0o100644, 0o100755, 0o120000}
_trees: dict[tuple[str, str], dict[str, tuple[int, str]]] = {}  # a commit's tree never changes
_hashes: dict[str, dict[str, tuple[tuple[int, ...], tuple[int, str]]]] = {}  # run dir -> path -> (stat, entry)


@dataclass(frozen=True)
class Refreshed:
    """What :func:`refresh` did: paths written and deleted (caches included)."""

    written: tuple[str, ...]
    deleted: tuple[str, ...]


def _git_env() -> dict[str, str]:
    # The loop may run inside a git hook or with GIT_DIR set: name the repository by -C only.
    return {k: v for k, v in environ.snapshot().items() if not k.startswith("GIT_")}


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True, env=_git_env())
    if proc.returncode != 0:
        raise GitError("git failed", command="git " + " ".join(args), code=proc.returncode,
                       stderr=proc.stderr.decode("utf-8", "replace"))
    return proc.stdout


def tree(repo: str | os.PathLike[str], sha: str) -> dict[str, tuple[int, str]]:
    """``{path: (mode, blob sha)}`` of the commit's files (submodules left out), cached per commit."""
    repo = Path(repo).resolve()
    key = (str(repo), sha)
    if key not in _trees:
        out: dict[str, tuple[int, str]] = {}
        for entry in _git(repo, "ls-tree", "-r", "-z", "--full-tree", sha).split(b"\0"):
            if not entry:
                continue
            meta, path = entry.split(b"\t", 1)
            mode, kind, blob = meta.split()
            if kind == b"blob" and int(mode, 8) in _MODES:
                out[os.fsdecode(path)] = (int(mode, 8), blob.decode())
        if len(_trees) > 256:
            _trees.clear()
        _trees[key] = out
    return _trees[key]


def run_dir_for(repo: str | os.PathLike[str], tag: str, worker: int = 0,
                root: str | os.PathLike[str] | None = None) -> Path:
    """Where worker ``worker`` of session ``tag`` runs: outside the checkout, one per repository and tag."""
    repo = Path(repo).resolve()
    path = RunPaths(repo, tag).run_dir(worker, root)
    if path == repo or repo in path.parents or path in repo.parents:
        raise SandboxError(f"run directory {path} would overlap the checkout {repo}: choose another root")
    return path


def _blob_hash(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


HASH_CHUNK = 1 << 20  # bytes read at a time: a run may leave a file of many GB (sparse or not)


def _file_hash(f, size: int) -> str | None:
    """Git's blob hash of an open file of ``size`` bytes, read in bounded memory; None when the file does not
    hold exactly ``size`` bytes (it changed while read: it differs, whatever it holds)."""
    h = hashlib.sha1(b"blob %d\0" % size)
    seen = 0
    while chunk := f.read(HASH_CHUNK):
        seen += len(chunk)
        if seen > size:
            return None
        h.update(chunk)
    return h.hexdigest() if seen == size else None


def _is_cache(name: str) -> bool:
    return name in CACHE_DIRS or name.endswith(CACHE_SUFFIXES)


def _scan(run_dir: Path, links: set[str]) -> tuple[dict[str, tuple[int, str] | None], list[str]]:
    """Files on disk as ``{path: (mode, blob sha)}`` (None for anything not a plain file or symlink), and the
    cache paths seen. Never follows a symlink; raises OSError on a directory it cannot read."""
    files: dict[str, tuple[int, str] | None] = {}
    caches: list[str] = []
    memo = _hashes.setdefault(str(run_dir), {})
    if len(memo) > 100_000:
        memo.clear()

    def fail(error: OSError) -> None:  # a directory the run made unreadable: it differs, whatever it holds
        rel = os.path.relpath(error.filename or ".", run_dir)
        if rel == ".":
            raise error
        files[rel] = None

    for top, dirs, names in os.walk(run_dir, onerror=fail):
        rel_top = os.path.relpath(top, run_dir)
        rel_top = "" if rel_top == "." else rel_top + "/"
        for name in list(dirs):
            rel = rel_top + name
            if rel in links or _is_cache(name) or os.path.islink(os.path.join(top, name)):
                dirs.remove(name)
                if rel in links:
                    continue
                if _is_cache(name):
                    caches.append(rel)
                else:
                    names.append(name)  # a symlink to a directory is an entry like a file
        for name in names:
            rel = rel_top + name
            if rel in links:
                continue
            if _is_cache(name):
                caches.append(rel)
                continue
            full = os.path.join(top, name)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                files[rel] = (0o120000, _blob_hash(os.fsencode(os.readlink(full))))
            elif stat.S_ISREG(st.st_mode):
                # ctime cannot be set by a run (utime moves it to now), so an unchanged stat is unchanged content
                key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
                if memo.get(rel, (None,))[0] == key:
                    files[rel] = memo[rel][1]
                    continue
                try:
                    fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                except OSError:
                    files[rel] = None
                    continue
                with os.fdopen(fd, "rb") as f:
                    digest = _file_hash(f, os.fstat(f.fileno()).st_size)
                files[rel] = None if digest is None else (0o100755 if st.st_mode & 0o111 else 0o100644, digest)
                if digest is not None:
                    memo[rel] = (key, files[rel])
            else:
                files[rel] = None  # a FIFO, socket or device: never the commit's content
    return files, caches


def _include_links(include: tuple[str, ...]) -> set[str]:
    out = set()
    for rel in include:
        p = Path(rel)
        if p.is_absolute() or ".." in p.parts or not p.parts:
            raise SandboxError(f"sandbox_include must name a path inside the repository, not {rel!r}")
        out.add(p.as_posix())
    return out


def changes(repo: str | os.PathLike[str], sha: str, run_dir: str | os.PathLike[str], *,
            include: tuple[str, ...] = (), added: bool = False) -> list[str]:
    """Paths of the commit's tree that differ in ``run_dir`` by content, mode or type, or are missing; with
    ``added``, also files the run created. Caches (``__pycache__``, ``*.pyc``, ``.pytest_cache``...) and the
    ``include`` links are not changes.

    >>> changes(repo, sha, run_dir)       # doctest: +SKIP
    ['train.py']
    """
    return diff_tree(tree(repo, sha), run_dir, include=include, added=added)


def diff_tree(want: Mapping[str, tuple[int, str]], run_dir: str | os.PathLike[str], *,
              include: tuple[str, ...] = (), added: bool = False) -> list[str]:
    """:func:`changes` against a :func:`tree` listing shipped from elsewhere (a Ray worker has no repository)."""
    have, _ = _scan(Path(run_dir), _include_links(include))
    out = [p for p, entry in want.items() if have.get(p) != tuple(entry)]
    if added:
        out += [p for p in have if p not in want]
    return sorted(out)


def tmp_for(run_dir: str | os.PathLike[str]) -> Path:
    """The run's private temp directory (``TMPDIR``), beside the run directory; emptied by :func:`refresh`."""
    run = Path(run_dir)
    return run.parent / f"{run.name}.tmp"


def pristine_for(run_dir: str | os.PathLike[str]) -> Path:
    """Where :func:`keep_pristine` keeps a run directory's state before its run: beside it, where runs cannot
    write."""
    run = Path(run_dir)
    return run.parent / f"{run.name}.pristine"


def keep_pristine(run_dir: str | os.PathLike[str]) -> Path:
    """Before a run, a copy of its freshly exported directory (the commit's files and the ``include`` links,
    links copied as links, no caches) out of the run's reach: verify and guard commands later run in a copy of
    it, not among the files the run left (a ``json.py`` or ``conftest.py`` beside a check would replace what
    it imports)."""
    run, dest = Path(run_dir), pristine_for(run_dir)
    if dest.exists() or dest.is_symlink():
        _remove(dest)
    shutil.copytree(run, dest, symlinks=True, ignore=lambda _top, names: [n for n in names if _is_cache(n)])
    return dest


def check_tree(pristine: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """A fresh copy of ``pristine`` at ``dest`` (whatever was there first removed, links never followed), for
    one verify or guard command to run in."""
    dest = Path(dest)
    if dest.exists() or dest.is_symlink():
        _remove(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(pristine, dest, symlinks=True)
    return dest


def move_outputs(run_dir: str | os.PathLike[str], pristine: str | os.PathLike[str],
                 dest: str | os.PathLike[str]) -> Path:
    """Move what the run created (every path of ``run_dir`` that ``pristine`` lacks, caches aside) into the
    empty folder ``dest``, keeping relative paths; links are moved as links, never followed. The tracked
    files stay where they are (the run's changes to them are still compared after), and the next
    :func:`refresh` would have deleted the moved files anyway."""
    run, before, out = Path(run_dir), Path(pristine), Path(dest)
    if out.exists() or out.is_symlink():
        _remove(out)
    out.mkdir(parents=True)
    for top, dirs, names in os.walk(run):
        rel_top = os.path.relpath(top, run)
        for name in [*dirs, *names]:
            rel = os.path.normpath(os.path.join(rel_top, name))
            if _is_cache(name) or os.path.lexists(before / rel):
                continue
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(run / rel, target)
        dirs[:] = [d for d in dirs if (before / rel_top / d).is_dir() and not (run / rel_top / d).is_symlink()
                   and not _is_cache(d)]
    return out


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
        return

    def unlock(func, target, _exc):  # a run may have taken its own rights away; we own the files
        os.chmod(os.path.dirname(target), 0o700)
        if os.path.isdir(target) and not os.path.islink(target):
            os.chmod(target, 0o700)
        func(target)

    shutil.rmtree(path, onerror=unlock)


def _write(run_dir: Path, rel: str, mode: int, data: bytes) -> None:
    path = run_dir / rel
    parent = path.parent
    for up in [*reversed(Path(rel).parents)][1:]:  # every directory on the way must be a real one of ours
        step = run_dir / up
        if step.is_symlink() or (step.exists() and not step.is_dir()):
            step.unlink()
    parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        _remove(path)
    if mode == 0o120000:
        os.symlink(os.fsdecode(data), path)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755 if mode == 0o100755 else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _blobs(repo: Path, shas: list[str]) -> dict[str, bytes]:
    if not shas:
        return {}
    out = _git(repo, "cat-file", "--batch", stdin="".join(s + "\n" for s in shas).encode())
    blobs: dict[str, bytes] = {}
    pos = 0
    while pos < len(out):
        end = out.index(b"\n", pos)
        sha, _kind, size = out[pos:end].split()
        start = end + 1
        blobs[sha.decode()] = out[start:start + int(size)]
        pos = start + int(size) + 1
    return blobs


def refresh(repo: str | os.PathLike[str], sha: str, run_dir: str | os.PathLike[str], *,
            include: tuple[str, ...] = ()) -> Refreshed:
    """Make ``run_dir`` hold exactly the commit's files (plus the ``include`` links), writing only what differs.

    >>> refresh(repo, sha, run_dir).written       # doctest: +SKIP
    ('train.py',)
    """
    repo, run = Path(repo).resolve(), Path(run_dir)
    want = tree(repo, sha)
    links = _include_links(include)
    tracked = links & set(want) | {link for link in links if any(p.startswith(link + "/") for p in want)}
    if tracked:
        raise SandboxError(f"sandbox_include names tracked paths ({', '.join(sorted(tracked))}): they are "
                           "exported with the commit already")
    run.mkdir(parents=True, exist_ok=True)
    tmp = tmp_for(run)
    if tmp.exists():
        _remove(tmp)
    tmp.mkdir()
    try:
        have, caches = _scan(run, links)
    except OSError:  # a directory the run made unreadable: start from nothing
        _remove(run)
        run.mkdir(parents=True)
        have, caches = {}, []
    extra = [p for p in have if p not in want] + caches
    for rel in extra:
        _remove(run / rel)
    stale = [p for p, entry in want.items() if have.get(p) != entry]
    blobs = _blobs(repo, sorted({want[p][1] for p in stale}))
    for rel in stale:
        _write(run, rel, want[rel][0], blobs[want[rel][1]])
    _prune_dirs(run, want, links)
    for rel in sorted(links):
        link, target = run / rel, repo / rel
        if not (link.is_symlink() and os.readlink(link) == str(target)):
            if link.is_symlink() or link.exists():
                _remove(link)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, link)
    return Refreshed(written=tuple(stale), deleted=tuple(sorted(extra)))


def _prune_dirs(run: Path, want: dict[str, tuple[int, str]], links: set[str]) -> None:
    keep = {str(parent) for p in [*want, *links] for parent in Path(p).parents}
    for top, dirs, _names in os.walk(run, topdown=False):
        rel = os.path.relpath(top, run)
        if rel != "." and rel not in keep and not os.listdir(top):
            os.rmdir(top)


__all__ = ["Refreshed", "run_dir_for", "tmp_for", "refresh", "changes", "diff_tree", "tree", "CACHE_DIRS"]
