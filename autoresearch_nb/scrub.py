"""Secrets kept out of a run's environment and out of everything written down (logs, the store, results.tsv,
commits): judged by a variable's name *and* by its value.

    >>> clean = scrub_env({"DATABASE_URL": "postgres://u:hunter2pw@db/x", "PATH": "/usr/bin"})
    >>> sorted(clean.env), clean.withheld
    (['PATH'], ('DATABASE_URL',))
    >>> redact("connecting to postgres://u:hunter2pw@db/x", clean.secrets)
    'connecting to [redacted]'

By name: :func:`looks_secret` (``HF_TOKEN``, ``DB_PASSWORD``, ``AWS_*``). By value: URLs with credentials
(``scheme://user:pass@``), well-known token shapes (``sk-``, ``ghp_``/``github_pat_``, ``xox?-``, ``AKIA``,
``hf_``, ``glpat-``, ``AIza``, ``npm_``, ``pypi-``, JWTs, PEM private keys). :func:`redact` removes every value
of at least :data:`MIN_SECRET` characters of a withheld variable, and anything of those shapes, from text.

Not covered: a secret a run reads from a file it may read, or one encoded (base64, split) before printing.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .config import looks_secret
from . import environ

MIN_SECRET = 8            # shorter values are too common to redact everywhere ("true", "8080")
MASK = "[redacted]"
_TOKEN_SHAPES = (
    r"sk-[A-Za-z0-9_-]{16,}",                                  # OpenAI, Anthropic (sk-ant-...)
    r"gh[pousr]_[A-Za-z0-9]{30,}", r"github_pat_[A-Za-z0-9_]{22,}",
    r"xox[abeoprs]-[A-Za-z0-9-]{10,}",                           # Slack
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",                                # AWS access key ids
    r"hf_[A-Za-z0-9]{30,}", r"glpat-[A-Za-z0-9_-]{20,}", r"AIza[0-9A-Za-z_-]{35}",
    r"npm_[A-Za-z0-9]{36}", r"pypi-[A-Za-z0-9_-]{50,}",
    r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",  # JWT
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
)
# Bounded repeats: an unbounded scheme would make the search quadratic on a long run of letters (a log line of
# megabytes of "xxxx" took minutes).
_URL_CREDENTIALS = r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s/:@]{1,256}:[^\s/@]{1,256}@"
_SHAPES = re.compile(r"(?<![A-Za-z0-9])(?:%s)" % "|".join(_TOKEN_SHAPES) + "|" + _URL_CREDENTIALS)


def looks_secret_value(value: str) -> bool:
    """True for a value that holds credentials whatever its variable is called.

    >>> looks_secret_value("postgres://user:password@host/db"), looks_secret_value("https://pypi.org/simple")
    (True, False)
    """
    return bool(_SHAPES.search(value))


@dataclass(frozen=True)
class Scrubbed:
    """A run's environment without secrets: ``withheld`` names them, ``secrets`` holds their values (for
    :func:`redact`; never written anywhere)."""

    env: dict[str, str]
    withheld: tuple[str, ...]
    secrets: tuple[str, ...]

    def __repr__(self) -> str:  # a record printed in a traceback or a notebook must not show the values
        return f"Scrubbed(env=<{len(self.env)} variables>, withheld={self.withheld!r}, secrets=<{len(self.secrets)}>)"


def scrub_env(base: Mapping[str, str] | None = None, allow: Iterable[str] = (),
              extra: Mapping[str, str] | None = None) -> Scrubbed:
    """``base`` (default ``os.environ``) without variables whose name or value looks secret, unless named in
    ``allow``; then ``extra`` (the loop's own settings, trusted) on top."""
    allow = set(allow)
    env: dict[str, str] = {}
    withheld: list[str] = []
    secrets: list[str] = []
    for name, value in (environ.snapshot() if base is None else base).items():
        if name not in allow and (looks_secret(name) or looks_secret_value(value)):
            withheld.append(name)
            secrets.append(value)
        else:
            env[name] = value
    env.update(extra or {})
    return Scrubbed(env=env, withheld=tuple(sorted(withheld)), secrets=tuple(secrets))


def _pattern(secrets: Iterable[str]) -> re.Pattern[str]:
    values = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)  # longest first
    parts = [re.escape(v) for v in values] + [_SHAPES.pattern]
    return re.compile("|".join(parts))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret value (>= 8 characters) and every credential shape replaced by ``[redacted]``.

    >>> redact("key=sk-ant-" + "api03-abcdefghijklmnopqrstuv and ok", ())
    'key=[redacted] and ok'
    """
    return _pattern(secrets).sub(MASK, text)


class Redactor:
    """:func:`redact` for a byte stream (a run's log), line by line so a secret split across two reads is still
    caught. ``feed`` returns what can be written now; ``flush`` the rest.

    >>> r = Redactor(["hunter2hunter2"]); r.feed(b"pw hunter2") + r.feed(b"hunter2\\n") + r.flush()
    b'pw [redacted]\\n'
    """

    MAX_PENDING = 1 << 20   # a line with no end is redacted in pieces past this

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._re = re.compile(_pattern(secrets).pattern.encode("utf-8", "surrogateescape"))
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        if cut == 0 and len(data) < self.MAX_PENDING:
            self._pending = data
            return b""
        cut = cut or len(data)
        self._pending = data[cut:]
        return self._re.sub(MASK.encode(), data[:cut])

    def flush(self) -> bytes:
        data, self._pending = self._pending, b""
        return self._re.sub(MASK.encode(), data)


__all__ = ["Scrubbed", "scrub_env", "redact", "Redactor", "looks_secret", "looks_secret_value", "MIN_SECRET"]
