"""The loop's one reader of environment variables (stdlib only). The harness, which runs inside train.py, has its
own: :mod:`autoresearch_nb.harness.runtime`. Separate programs that set up their own process (the sandbox's
wrapper, the verifier, the dashboard's demo target) touch their own environment and are not the loop.

Why one module: every variable the loop reads is listed here, and a test checks that no other module of the
loop reads ``os.environ`` (tests/test_architecture.py), so a setting cannot hide in a corner of the code.

Variables the loop reads by name:

- ``ANTHROPIC_API_KEY`` (and the other credentials in :data:`SECRETS`): the default agent, and masking;
- ``AUTORESEARCH_DATA`` / ``AUTORESEARCH_DATASET``: the corpus runs use (:func:`.sandbox.dataset_cache`);
- ``AUTORESEARCH_NB_DISPLAY``: the dashboard's mode; ``AUTORESEARCH_FAULT_PAUSE[_S]``: the fault campaign's hook;
- ``XDG_CACHE_HOME``: the cache (:func:`.layout.cache_home`); ``PATH`` / ``PYTHONPATH``: what runs may read;
- the ``GIT_*`` variables a hook may set (the loop's git must not follow them).

Everything else is read as a whole: :func:`snapshot` is the environment a run's is built from (scrubbed by
:mod:`.scrub`).
"""
from __future__ import annotations

import os
from collections.abc import Iterable

API_KEY = "ANTHROPIC_API_KEY"
SECRETS = (API_KEY, "ANTHROPIC_AUTH_TOKEN")  # the agents' own credentials, masked in their messages


def snapshot() -> dict[str, str]:
    """A copy of the loop's environment, as it is now."""
    return dict(os.environ)


def get(name: str, default: str = "") -> str:
    """The value of ``name`` ("" or ``default`` when unset), stripped of surrounding blanks."""
    return os.environ.get(name, default).strip()


def raw(name: str) -> str | None:
    """The value of ``name`` exactly as set (None when unset): for secrets, which are compared, not parsed."""
    return os.environ.get(name)


def any_set(names: Iterable[str]) -> bool:
    """True when any of ``names`` is set (even empty)."""
    return any(name in os.environ for name in names)


def api_key() -> str:
    """The Anthropic API key, or "" when none is set."""
    return get(API_KEY)


def set_default(name: str, value: str) -> None:
    """Set ``name`` for this process and its children unless the user set it (Ray's start-up settings)."""
    os.environ.setdefault(name, value)


__all__ = ["API_KEY", "SECRETS", "any_set", "api_key", "get", "raw", "set_default", "snapshot"]
