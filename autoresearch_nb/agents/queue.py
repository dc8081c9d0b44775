"""The queue agent: experiments planned by the user in a file, run in order.

``queue.toml`` at the repo root (re-read before every proposal, so entries can be appended during a run)::

    [[experiment]]
    description = "double the learning rate"
    edits = [{ search = "LR = 0.01", replace = "LR = 0.02" }]

    [[experiment]]
    description = "a whole new file"
    file = "ideas/train_v2.py"        # or: content = '''...'''

A JSON list of the same tables also works (``queue.json``). Entries already proposed in this run (matched by
their position among equal descriptions in the history) are skipped, so a resumed run continues the queue.
"""
from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Iterator

from ..config import Config
from ..edits import Edit, printable, unencodable
from ..layout import STATE_DIR
from .base import Context, Proposal, QueueExhausted


class QueueAgent:
    """Proposes the experiments listed in a queue file, in order."""

    name = "queue"

    def __init__(self, config: Config, repo: Path) -> None:
        self.config = config
        self.repo = Path(repo)
        self.path = self.repo / config.queue_file

    def entries(self) -> list[Any]:
        """The queued entries, in order. An entry that is not a table is kept: it becomes a failed proposal."""
        if self.config.queue_file == "queue.toml" and not self.path.exists():
            self.path = self.repo / "queue.json"  # the default name in its JSON spelling, if that is what exists
            if not self.path.exists():
                self.path = self.repo / "queue.toml"
        if not self.path.exists():
            raise QueueExhausted(f"no queue file at {self.path}")
        text = self.path.read_text()
        try:
            data = json.loads(text) if self.path.suffix == ".json" else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as e:
            raise QueueExhausted(f"{self.path} cannot be parsed: {e}") from None
        if isinstance(data, dict):
            data = data.get("experiment", [])
            if isinstance(data, dict):  # a single [experiment] table instead of [[experiment]]
                data = [data]
        if not isinstance(data, list):
            raise QueueExhausted(f"{self.path} must hold a list of experiments, not {type(data).__name__}")
        return data

    def propose(self, context: Context) -> Proposal:
        # An entry the user edited before approving is still that entry (Loop.edit appends " (edited)").
        done = [e.description.removesuffix(" (edited)") for e in context.history if e.agent == self.name]
        seen: dict[str, int] = {}
        for entry in self.entries():
            if not isinstance(entry, dict):
                desc = printable(" ".join(str(entry).split())[:200]) or "(no description)"
                seen[desc] = seen.get(desc, 0) + 1
                if done.count(desc) < seen[desc]:
                    return Proposal(desc, error=f"queued entry {entry!r} is not a table with a description "
                                                "and edits, file or content")
                continue
            desc = printable(str(entry.get("description", "")).strip()) or "(no description)"
            seen[desc] = seen.get(desc, 0) + 1
            if done.count(desc) >= seen[desc]:
                continue
            bad = next(filter(None, map(unencodable, _strings(entry))), None)
            if bad is not None:  # e.g. "\ud800" in queue.json: no file, commit or store row can hold it
                return Proposal(desc, error=f"the queued entry holds {bad}, which UTF-8 cannot encode")
            return self._proposal(desc, entry)
        raise QueueExhausted(f"all {sum(seen.values())} queued experiments in {self.path.name} have been proposed")

    def _inside(self, name: str) -> Path | None:
        """The queued file's path when it lies inside the repo (symlinks resolved), outside git and our data."""
        root = self.repo.resolve()
        if Path(name).is_absolute():
            return None
        path = (root / name).resolve()
        if not path.is_relative_to(root):
            return None
        if {".git", STATE_DIR} & set(path.relative_to(root).parts):
            return None
        return path

    def _proposal(self, desc: str, entry: dict[str, Any]) -> Proposal:
        if "file" in entry:
            src = self._inside(str(entry["file"]))
            if src is None:
                return Proposal(desc, error=f"queued file {entry['file']!r} is not inside the repository (or is in "
                                            ".git or .autoresearch); a queued file must be a path in the repo")
            if not src.is_file():
                return Proposal(desc, error=f"queued file {entry['file']!r} does not exist")
            try:
                return Proposal(desc, content=src.read_text())
            except (OSError, UnicodeDecodeError) as e:
                return Proposal(desc, error=f"queued file {entry['file']!r} cannot be read: {e}")
        if "content" in entry:
            return Proposal(desc, content=str(entry["content"]))
        raw = entry.get("edits", entry.get("edit", []))
        if isinstance(raw, dict):
            raw = [raw]
        if not isinstance(raw, list):
            return Proposal(desc, error=f"'edits' must be a list of {{search, replace}} tables, not {raw!r}")
        edits = []
        for e in raw:
            if not isinstance(e, dict) or "search" not in e or "replace" not in e:
                return Proposal(desc, error=f"edit {e!r} needs 'search' and 'replace'")
            if e.get("path") not in (None, self.config.editable):
                return Proposal(desc, error=f"edit touches {e['path']!r}; only {self.config.editable} may change")
            edits.append(Edit(str(e["search"]), str(e["replace"])))
        if not edits:
            return Proposal(desc, error="the queued experiment has no edits, file or content")
        return Proposal(desc, edits=tuple(edits))


def _strings(value: Any) -> Iterator[str]:
    """Every string in a parsed entry (keys and values, nested)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)

