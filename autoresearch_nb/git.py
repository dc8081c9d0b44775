"""Git for the loop, through gitpython: one branch and one worktree per run; the user's checkout is never touched.

A run with tag ``T`` lives on branch ``autoresearch/T`` in the worktree ``.autoresearch/worktrees/T``. Each
experiment is one commit changing only the editable file; every experiment commit is also kept under
``refs/autoresearch/T/<number>`` so a discarded diff stays reachable after the branch moves back.
"""
from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import git as gitpython

from .errors import ConfigError, GitError
from .safetext import printable

if TYPE_CHECKING:
    from .records import Experiment

from .layout import STATE_DIR, RunPaths  # noqa: F401  (STATE_DIR re-exported)
from . import environ
# Who commits when the repository has no identity configured (a fresh container, CI): a commit must not fail.
IDENTITY = {"GIT_AUTHOR_NAME": "autoresearch_nb", "GIT_AUTHOR_EMAIL": "autoresearch_nb@localhost",
            "GIT_COMMITTER_NAME": "autoresearch_nb", "GIT_COMMITTER_EMAIL": "autoresearch_nb@localhost"}
_GIT_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR")


def _output(text: object) -> str:
    """What the command printed: gitpython wraps it as ``\n  stderr: '...'``."""
    m = re.fullmatch(r"\s*std(?:out|err): '(.*)'\s*", str(text or ""), re.S)
    return m.group(1) if m else str(text or "")


def parse_porcelain(out: str) -> list[str]:
    """The paths in ``git status --porcelain -z`` output; a rename or copy gives both its new and old path."""
    paths = []
    entries = out.split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        paths.append(path)
        if code[0] in "RC" and i < len(entries):  # renames carry the old path as the next entry
            paths.append(entries[i])
            i += 1
    return paths


STATUS_ARGS = ("status", "--porcelain", "-z", "--untracked-files=all")


def commit_message(exp: "Experiment") -> str:
    """The commit message of an experiment: its number and description, then the run's tag."""
    first = printable(" ".join(exp.description.split()))[:72] or "experiment"  # no escapes in `git log`
    return f"exp {exp.number}: {first}\n\nautoresearch_nb tag {exp.tag}"


def _call(repo: gitpython.Repo, *args: str) -> str:
    try:
        return repo.git.execute(["git", *args], strip_newline_in_stdout=True)
    except gitpython.GitCommandError as e:
        raise GitError("git failed", command="git " + " ".join(args), code=e.status,
                       stdout=_output(e.stdout), stderr=_output(e.stderr)) from None


def _open(path: Path) -> gitpython.Repo:
    repo = gitpython.Repo(path)
    if environ.any_set(_GIT_VARS):
        # A hook or a parent git process may have set these; they would point our commands elsewhere.
        gitdir = Path(repo.git_dir)
        repo.git.update_environment(GIT_DIR=str(gitdir), GIT_WORK_TREE=str(path),
                                    GIT_INDEX_FILE=str(gitdir / "index"),
                                    GIT_OBJECT_DIRECTORY=str(Path(repo.common_dir) / "objects"),
                                    GIT_COMMON_DIR=str(repo.common_dir))
    return repo


def find_repo(path: str | Path) -> Path:
    """The top level of the git repository holding ``path``; a clear error when there is none."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise ConfigError(f"{p} does not exist")
    try:
        repo = gitpython.Repo(p, search_parent_directories=True)
    except (gitpython.InvalidGitRepositoryError, gitpython.NoSuchPathError):
        raise ConfigError(f"{p} is not a git repository (run `git init` and commit your files first)") from None
    if repo.working_tree_dir is None:
        raise ConfigError(f"{p} is a bare git repository; the loop needs a working tree")
    if not repo.head.is_valid():
        raise ConfigError(f"{repo.working_tree_dir} has no commits yet; commit the editable file first")
    return Path(repo.working_tree_dir)


class Workspace:
    """The run's worktree and branch. All writes happen here, never in the user's checkout."""

    def __init__(self, repo_root: Path, tag: str, editable: str) -> None:
        self.root = Path(repo_root)
        self.tag = tag
        self.editable = editable
        self.branch = f"autoresearch/{tag}"
        self.path = RunPaths(self.root, tag).worktree
        self.main = _open(self.root)
        self._exclude_state_dir()
        self._ensure_worktree()
        self.repo = _open(self.path)

    # -- setup -------------------------------------------------------------------------------------
    def _exclude_state_dir(self) -> None:
        # .git/info/exclude, not .gitignore: the loop must not change the user's tracked files.
        exclude = Path(self.main.common_dir) / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        text = exclude.read_text() if exclude.exists() else ""
        if f"/{STATE_DIR}/" not in text.splitlines():
            exclude.write_text(text + ("" if text.endswith("\n") or not text else "\n") + f"/{STATE_DIR}/\n")

    def _ensure_worktree(self) -> None:
        branch_exists = bool(_call(self.main, "branch", "--list", self.branch))
        if self.path.exists() and (self.path / ".git").exists():
            return
        _call(self.main, "worktree", "prune")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if branch_exists:
            _call(self.main, "worktree", "add", "--force", str(self.path), self.branch)
        else:
            start = _call(self.main, "rev-parse", "HEAD")
            try:
                _call(self.main, "cat-file", "-e", f"{start}:{self.editable}")
            except GitError:
                raise ConfigError(
                    f"{self.editable} is not in the last commit of {self.root}; commit it first "
                    "(the run starts from HEAD, so uncommitted edits would be invisible to it)") from None
            _call(self.main, "worktree", "add", "-b", self.branch, str(self.path), start)

    # -- reading -----------------------------------------------------------------------------------
    def head(self) -> str:
        return _call(self.repo, "rev-parse", "HEAD")

    def file_path(self) -> Path:
        return self.path / self.editable

    def read(self, sha: str = "HEAD") -> str:
        """The editable file as committed at ``sha``, byte for byte."""
        try:
            return self.repo.git.execute(["git", "cat-file", "blob", f"{sha}:{self.editable}"],
                                         strip_newline_in_stdout=False)
        except gitpython.GitCommandError as e:
            raise GitError(f"cannot read {self.editable} at {sha}", command="git cat-file",
                           code=e.status, stderr=_output(e.stderr)) from None

    def changed_paths(self) -> list[str]:
        """Paths that differ from HEAD in the worktree (modified, deleted or new and not ignored)."""
        return parse_porcelain(self.repo.git.execute(["git", *STATUS_ARGS], strip_newline_in_stdout=False))

    # -- writing -----------------------------------------------------------------------------------
    def commit(self, content: str, message: str) -> str:
        """Write the editable file and commit only it. Returns the new sha."""
        self.check()
        target = self.file_path()
        target.write_text(content)
        _call(self.repo, "add", "--", self.editable)
        # Never sign: an unattended run must not wait on a passphrase prompt or fail on a missing key.
        args = ["git", "-c", "commit.gpgsign=false", "commit", "--no-verify", "--allow-empty", "-q",
                "-m", message, "--", self.editable]
        try:
            self.repo.git.execute(args, env=self._identity())
        except gitpython.GitCommandError as e:
            raise GitError("git commit failed", command=" ".join(args), code=e.status,
                           stdout=_output(e.stdout), stderr=_output(e.stderr)) from None
        return self.head()

    def _identity(self) -> dict[str, str]:
        """:data:`IDENTITY` where the repository has no user configured, else nothing (the user's own)."""
        try:
            _call(self.repo, "config", "user.email")
            _call(self.repo, "config", "user.name")
            return {}
        except GitError:
            return IDENTITY

    def restore(self, sha: str) -> None:
        """Put the worktree on ``sha`` with nothing else in it, if it is not there already."""
        if self.head() != sha or self.changed_paths():
            self.reset(sha)

    def check(self) -> None:
        """Refuse to act (:class:`GitError`) unless the worktree is still ours: its ``.git`` file names a
        worktree of the user's repository and its HEAD is the run's branch. Without this a worktree whose
        ``.git`` was deleted would let ``git reset --hard`` act on the user's own checkout."""
        dotgit = self.path / ".git"
        where = Path(self.main.common_dir).resolve() / "worktrees"
        text = dotgit.read_text(errors="replace").strip() if dotgit.is_file() and not dotgit.is_symlink() else ""
        if not text.startswith("gitdir:") or Path(text[7:].strip()).resolve().parent != where:
            raise GitError(f"the run's worktree {self.path} no longer points at its repository ({dotgit}); "
                           "refusing to touch it", command="check", code=None)
        head = _call(self.repo, "symbolic-ref", "-q", "HEAD")
        if head != f"refs/heads/{self.branch}":
            raise GitError(f"the run's worktree is on {head or 'a detached HEAD'}, not refs/heads/{self.branch}; "
                           "refusing to reset it", command="git symbolic-ref HEAD", code=None)

    def reset(self, sha: str) -> None:
        """Move the branch and worktree to ``sha`` and remove untracked, not-ignored files."""
        self.check()
        _call(self.repo, "reset", "--hard", "-q", sha)
        _call(self.repo, "clean", "-fdq")

    def keep_ref(self, number: int, sha: str) -> None:
        """Keep experiment ``number``'s commit reachable whatever happens to the branch."""
        _call(self.repo, "update-ref", f"refs/autoresearch/{self.tag}/{number}", sha)

    # -- parallel workers ----------------------------------------------------------------------------
    def commit_on(self, parent: str, content: str, message: str) -> str:
        """Create a commit of ``content`` on ``parent`` without touching any worktree or branch.

        Parallel workers start from commits that are not (yet) on the branch; the branch only moves on keep.
        """
        import io

        from gitdb import IStream

        data = content.encode()
        blob = self.repo.odb.store(IStream("blob", len(data), io.BytesIO(data))).hexsha.decode()
        index = Path(self.repo.git_dir) / f"autoresearch-tmp-index-{os.getpid()}-{threading.get_ident()}"
        env = {"GIT_INDEX_FILE": str(index)}
        try:
            self.repo.git.execute(["git", "read-tree", parent], env=env)
            self.repo.git.execute(["git", "update-index", "--add", "--cacheinfo",
                                   f"100644,{blob},{self.editable}"], env=env)
            tree = self.repo.git.execute(["git", "write-tree"], env=env)
        except gitpython.GitCommandError as e:
            raise GitError("cannot build the experiment's tree", command=" ".join(map(str, e.command)),
                           code=e.status, stderr=str(e.stderr or "")) from None
        finally:
            index.unlink(missing_ok=True)
        try:
            return self.repo.git.execute(["git", "commit-tree", tree, "-p", parent, "-m", message],
                                         env=self._identity())
        except gitpython.GitCommandError as e:
            raise GitError("git commit-tree failed", command="git commit-tree", code=e.status,
                           stderr=str(e.stderr or "")) from None

    def archive(self, sha: str) -> bytes:
        """The tree of ``sha`` as a tar archive (what a remote worker needs to run it)."""
        return self.repo.git.execute(["git", "archive", "--format=tar", sha], as_process=False,
                                     stdout_as_string=False)
