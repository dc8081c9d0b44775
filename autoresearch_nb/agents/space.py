"""Search-space discovery: the tunable constants in an editable file's CAPS hyperparameter block.

A *parameter* is a module-level assignment of a CAPS name to a literal on one line::

    MATRIX_LR = 0.04            # float > 0: log scale around the value (wider for learning rates)
    WARMDOWN_RATIO = 0.5        # fraction-like name: linear, inside [0, 1]
    DEPTH = 8                   # small int: integer steps around the value
    TOTAL_BATCH_SIZE = 2**19    # power of two: steps of the exponent
    USE_BIAS = False            # bool: both values
    WINDOW_PATTERN = "SSSL"     # choices: SSSL, SSLL, LLLL
    ADAM_BETAS = (0.8, 0.95)    # choices: (0.8, 0.95), (0.9, 0.95), (0.9, 0.99)
    DEPTH = 8 if CUDA else 4    # two numeric branches: tuned as the last one, the first moves with it
    SEED = 42                   # never tuned (SEED, TIME_BUDGET, UNTIMED...); nor anything marked ``# fixed``
    WEIGHT_DECAY = 0.2          # range: 0.0, 0.4   explicit bounds, linear (``# range: 1e-4, 1e-1, log``)

Strings and tuples are tuned only when a ``# choices:`` comment (or an override) lists their values.
``# only when OPTIMIZER = muon`` (or ``= a, b``) makes a constant conditional: in a file where OPTIMIZER has
another value it does nothing, and the tuner does not propose it.
The comments' grammar: ``# range: LOW, HIGH[, log]`` (numbers), ``# choices: A, B, C`` (literals or bare words,
commas or bars between them); text after the bounds or after the last value is the author's prose and is ignored;
a comment that does not start that way is a :class:`SpaceError` naming the constant and its line.
When the file has a banner comment containing "hyperparameters", only the assignments from that banner
down to the first function or class are read; otherwise every top-level CAPS literal before the first
function or class.

>>> space = discover("LR = 0.01\\nDEPTH = 4\\n")
>>> [p.name for p in space]
['LR', 'DEPTH']
>>> space.render("LR = 0.01\\nDEPTH = 4\\n", {"LR": 0.02})
'LR = 0.02\\nDEPTH = 4\\n'
"""
from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping

from ..errors import AutoresearchError
from ..pysource import parse

_CAPS = re.compile(r"^[A-Z][A-Z0-9_]*$")
_LR = re.compile(r"(^|_)(LR|LEARNING_RATE)(_|$)")
_FRACTION = re.compile(r"(RATIO|FRAC|FRACTION|DROPOUT|PROB|BETA\d?|MOMENTUM|EMA|SMOOTHING|ALPHA)(_|$)")
_NEVER = re.compile(r"SEED|TIME_BUDGET|UNTIMED|EVAL_")  # tuning these would game the budget or the metric
_BANNER = re.compile(r"^\s*#.*hyper\s*-?\s*param", re.I)
_CHOICES = re.compile(r"#.*?\bchoices?\s*[:=]\s*(.+)$", re.I)
_RANGE = re.compile(r"#.*?\brange\s*[:=]\s*(.+)$", re.I)
_WHEN = re.compile(r"#.*?\bonly\s+(?:when|if|with)\s+([A-Z][A-Z0-9_]*)\s*(?:==|=|\bin\b|\bis\b)\s*(.+)$")
_FIXED = re.compile(r"#.*\b(fixed|no[- ]?tune|tune\s*:\s*(no|off|false))\b", re.I)


class SpaceError(AutoresearchError, ValueError):
    """The editable file has no tunable constants, or a value no longer parses."""


@dataclass(frozen=True)
class Param:
    """One tunable constant.

    ``kind`` is ``float``, ``int``, ``pow2`` (an int stepped by its exponent) or ``choice`` (bools,
    strings, tuples: a small set of literal values). ``low``/``high`` are in the parameter's own units
    (for ``pow2``: exponents). ``choices`` holds source-text literals such as ``"'SSSL'"`` or ``"True"``.
    """

    name: str
    kind: str
    value: Any
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[str, ...] = ()
    line: int = 0                 # 1-based line of the assignment in the file it was found in
    # ``# only when OPTIMIZER = muon``: the controlling constant and the source texts of the values under which
    # this one does anything; with another value it is inert and never proposed
    when: tuple[str, tuple[str, ...]] | None = None

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether this constant does anything in a file whose constants are ``values``."""
        if self.when is None:
            return True
        name, texts = self.when
        return name not in values or any(_same(_literal(t), values[name]) for t in texts)

    def distribution(self) -> Any:
        """The Optuna distribution of this parameter (imports optuna)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "float":
            return FloatDistribution(float(self.low), float(self.high), log=self.log)
        if self.kind in ("int", "pow2"):
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return CategoricalDistribution(list(self.choices))

    def encode(self, value: Any) -> Any:
        """A value as it appears in the file -> the value Optuna sees. ``None`` when it cannot be encoded."""
        if self.kind == "choice":
            for choice in self.choices:
                if _same(_literal(choice), value):
                    return choice
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if self.kind == "pow2":
            if value <= 0 or not float(value).is_integer() or int(value) & (int(value) - 1):
                return None
            return int(value).bit_length() - 1
        if self.kind == "int":
            return int(value) if float(value).is_integer() else None
        return float(value)

    def decode(self, x: Any) -> Any:
        """The value Optuna proposed -> the value to write into the file."""
        if self.kind == "choice":
            return _literal(x)
        if self.kind == "pow2":
            return 2 ** int(x)
        if self.kind == "int":
            return int(x)
        return _round_in(float(x), float(self.low), float(self.high))

    def contains(self, x: Any) -> bool:
        if x is None:
            return False
        if self.kind == "choice":
            return x in self.choices
        return float(self.low) - 1e-12 <= float(x) <= float(self.high) + 1e-12

    def text(self, value: Any, original: str = "") -> str:
        """Source text for ``value``, keeping the file's style (``2**19``, ``"x"`` vs ``'x'``)."""
        if self.kind == "choice":
            text = next((c for c in self.choices if _same(_literal(c), value)), repr(value))
            if original.startswith('"') and text.startswith("'") and isinstance(value, str) \
                    and not re.search(r'["\\]', value):
                text = f'"{value}"'
            return text
        if self.kind == "pow2":
            k = int(value).bit_length() - 1
            return f"2**{k}" if re.search(r"\*\*", original) else str(int(value))
        if self.kind == "int":
            return str(int(value))
        return _float_text(float(value))


@dataclass(frozen=True)
class Space:
    """The tunable constants of one file, in file order."""

    params: tuple[Param, ...]
    path: str = ""
    skipped: tuple[str, ...] = field(default=())   # CAPS names seen but not tunable, for messages

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def distributions(self) -> dict[str, Any]:
        return {p.name: p.distribution() for p in self.params}

    def values(self, source: str) -> dict[str, Any]:
        """The current value of each parameter in ``source`` (missing or unparsable ones left out)."""
        found = _assignments(source)
        return {p.name: found[p.name][0] for p in self.params if p.name in found}

    def describe(self, source: str, values: Mapping[str, Any]) -> str:
        """``"MATRIX_LR 0.04 -> 0.028, DEPTH 4 -> 6 (8 -> 10 if CUDA)"`` for the changes ``values`` makes."""
        found = _assignments(source)
        new = _assignments(self.render(source, values))
        parts = []
        for name, value in values.items():
            p, old = self[name], found[name]
            part = f"{name} {p.text(old[0])} -> {p.text(value)}"
            if old[4] is not None and new[name][4] is not None:
                part += f" ({_num_text(old[4][0])} -> {_num_text(new[name][4][0])} if {old[4][3]})"
            parts.append(part)
        return ", ".join(parts)

    def encoded(self, source: str) -> dict[str, Any] | None:
        """Optuna params for ``source``; ``None`` when a parameter is missing or outside the space."""
        values = self.values(source)
        out = {}
        for p in self.params:
            if p.name not in values:
                return None
            x = p.encode(values[p.name])
            if not p.contains(x):
                return None
            out[p.name] = x
        return out

    def render(self, source: str, values: Mapping[str, Any]) -> str:
        """``source`` with the named parameters set to ``values`` (file values, not Optuna's)."""
        lines = source.splitlines(keepends=True)
        found = _assignments(source)
        for name, value in values.items():
            if name not in found:
                raise SpaceError(f"{name} is not assigned on one line at the top level of the file")
            old, lineno, start, end, linked = found[name]
            line = lines[lineno - 1]
            new = line[:start] + self[name].text(value, line[start:end]) + line[end:]
            if linked is not None:  # the other branch moves with this one (it comes first on the line)
                other, b_start, b_end, _ = linked
                new = new[:b_start] + _num_text(_follow(self[name], old, value, other), line[b_start:b_end]) \
                    + new[b_end:]
            lines[lineno - 1] = _keep_comment_column(line, new)
        return "".join(lines)


def describe_change(old: str, new: str) -> str:
    r"""What ``new`` changes against ``old``, in words: ``"MUON_LR 0.02 -> 0.01, DEPTH 4 -> 6"`` for the top-level
    constants it sets (``+ other code`` when more than those lines changed), else ``"3 lines changed"``.

    >>> describe_change("LR = 0.02\nN = 4\n", "LR = 0.01\nN = 4\n")
    'LR 0.02 -> 0.01'
    >>> describe_change("LR = 0.02\nx = 1\n", "LR = 0.03\nx = 2\n")
    'LR 0.02 -> 0.03 + other code'
    """
    before, after = _assignments(old), _assignments(new)
    parts = []
    for name, (value, *_rest, linked) in after.items():
        was = before.get(name)
        if was is None:
            parts.append(f"{name} = {_value_text(value)} (new)")
        elif not _same(was[0], value):
            parts.append(f"{name} {_value_text(was[0])} -> {_value_text(value)}")
        elif (was[4] is None) != (linked is None) or (linked is not None and not _same(was[4][0], linked[0])):
            other = (linked or was[4])[3]
            parts.append(f"{name} if {other}: {_value_text(was[4][0]) if was[4] else '-'} -> "
                         f"{_value_text(linked[0]) if linked else '-'}")
    parts += [f"{name} removed" for name in before if name not in after]
    # the rest of the file: every line but the constants' own
    rest_old = [line for i, line in enumerate(old.splitlines(), 1) if i not in {v[1] for v in before.values()}]
    rest_new = [line for i, line in enumerate(new.splitlines(), 1) if i not in {v[1] for v in after.values()}]
    if parts:
        return ", ".join(parts) + (" + other code" if rest_old != rest_new else "")
    a, b = old.splitlines(), new.splitlines()
    changed = sum(1 for x, y in zip(a, b) if x != y) + abs(len(a) - len(b))
    return f"{changed} line{'s' if changed != 1 else ''} changed"


def _value_text(value: Any) -> str:
    """A constant's value as a description shows it (numbers short, other literals as Python writes them)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _num_text(value)
    return repr(value)


def discover(source: str, path: str = "", overrides: Mapping[str, Any] | None = None) -> Space:
    """Find the tunable constants of ``source``. ``overrides`` maps a name to a list of choices or to
    ``(low, high)`` / ``(low, high, "log")`` bounds; an override of ``None`` drops the name.
    Raise :class:`SpaceError` when the file does not parse; return an empty space when nothing is tunable.
    """
    try:
        tree = parse(source)
    except SyntaxError as e:
        raise SpaceError(f"{path or 'the file'} does not parse: {e.msg} (line {e.lineno})") from None
    lines = source.splitlines()
    first_line, last_line = _block(tree, lines)
    found = _assignments(source, tree)
    overrides = dict(overrides or {})
    params, skipped = [], []
    for name, (value, lineno, start, end, _linked) in found.items():
        if not first_line <= lineno <= last_line:
            continue
        line = lines[lineno - 1]
        comment = line[end:]
        if name in overrides:
            spec = overrides[name]
            if spec is None:
                skipped.append(name)
                continue
            param = _from_override(name, value, spec, lineno)
        elif _FIXED.search(comment) or _NEVER.search(name):
            skipped.append(name)
            continue
        else:
            param = _infer(name, value, line[start:end], comment, lineno)
        when = _WHEN.search(comment) if param is not None else None
        if when:
            param = replace(param, when=(when.group(1), tuple(
                v if isinstance(v, str) else _source(v) for v in comment_choices(when.group(2), name, lineno, "'# only when NAME ='"))))
        if param is None:
            skipped.append(name)
        else:
            params.append(param)
    return Space(tuple(params), path, tuple(skipped))


# --- inference ---------------------------------------------------------------------------------------

def _infer(name: str, value: Any, text: str, comment: str, lineno: int) -> Param | None:
    choices = _CHOICES.search(comment)
    if choices:
        return _choice_param(name, value, comment_choices(choices.group(1), name, lineno), lineno)
    if isinstance(value, bool):
        return Param(name, "choice", value, choices=("True", "False"), line=lineno)
    if not isinstance(value, (int, float)):
        return None  # strings and tuples need a list of choices
    bounds = _RANGE.search(comment)
    if bounds:
        return _from_override(name, value, comment_range(bounds.group(1), name, lineno), lineno)
    if isinstance(value, int):
        return _int_param(name, value, text, lineno)
    return _float_param(name, float(value), lineno)


def _float_param(name: str, v: float, lineno: int) -> Param | None:
    if not math.isfinite(v):
        return None
    if _FRACTION.search(name) and 0.0 <= v <= 1.0:
        top = 0.999 if re.search(r"BETA|MOMENTUM|EMA", name) else 1.0
        if v == 0.0:
            return Param(name, "float", v, 0.0, 0.3, line=lineno)
        if re.search(r"BETA|MOMENTUM|EMA", name) and v >= 0.5:
            # what matters is 1 - beta: tune it on a log scale of the gap
            gap = 1.0 - v
            return Param(name, "float", v, max(0.5, 1.0 - 4 * gap), min(top, 1.0 - gap / 4), line=lineno)
        return Param(name, "float", v, max(0.0, v / 3), min(top, v * 3), line=lineno)
    if v > 0:
        factor = 8.0 if _LR.search(name) else 4.0
        return Param(name, "float", v, v / factor, v * factor, log=True, line=lineno)
    if v < 0:
        return Param(name, "float", v, v * 3, v / 3, line=lineno)
    return Param(name, "float", v, 0.0, 0.2 if "DECAY" in name else 1.0, line=lineno)


def _int_param(name: str, v: int, text: str, lineno: int) -> Param | None:
    if v >= 2 and v & (v - 1) == 0 and (v >= 16 or "**" in text or "<<" in text):
        k = v.bit_length() - 1
        return Param(name, "pow2", v, max(0, k - 2), k + 2, line=lineno)
    if v <= 0:
        return Param(name, "int", v, v, v + 8, line=lineno) if v == 0 else None
    if v <= 64:
        spread = max(2, v // 2)
        return Param(name, "int", v, max(1, v - spread), v + spread, line=lineno)
    return Param(name, "int", v, max(1, v // 4), v * 4, log=True, line=lineno)


def _choice_param(name: str, value: Any, options: list[Any], lineno: int) -> Param | None:
    texts = []
    for option in options:
        text = option if isinstance(option, str) and option.startswith(_QUOTED) else _source(option)
        if all(not _same(_literal(t), _literal(text)) for t in texts):
            texts.append(text)
    if not any(_same(_literal(t), value) for t in texts):
        texts.insert(0, _source(value))
    return Param(name, "choice", value, choices=tuple(texts), line=lineno) if len(texts) > 1 else None


def _from_override(name: str, value: Any, spec: Any, lineno: int) -> Param | None:
    spec = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    # "log" arrives bare from an override and quoted ("'log'") from a ``# range:`` comment
    log = bool(spec) and isinstance(spec[-1], str) and spec[-1].strip().strip("'\"").lower() == "log"
    nums = spec[:-1] if log else spec
    if (len(nums) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in nums)
            and isinstance(value, (int, float)) and not isinstance(value, bool)):
        low, high = sorted(nums)
        if isinstance(value, int) and all(isinstance(x, int) for x in nums):
            return Param(name, "int", value, low, high, log=log and low > 0, line=lineno)
        return Param(name, "float", float(value), float(low), float(high), log=log and low > 0, line=lineno)
    return _choice_param(name, value, spec, lineno)


# --- parsing -----------------------------------------------------------------------------------------

_QUOTED = ("'", '"')


def _block(tree: ast.Module, lines: list[str]) -> tuple[int, int]:
    """Line range holding the hyperparameters: from the banner (if any) to the first def or class."""
    start = 1
    for i, line in enumerate(lines, 1):
        if _BANNER.match(line):
            start = i
            break
    end = len(lines)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.lineno > start:
            end = node.lineno - 1
            break
    return start, end


def _assignments(source: str, tree: ast.Module | None = None) -> dict[str, tuple[Any, int, int, int, Any]]:
    """Top-level ``CAPS = literal`` on one line: name -> (value, line, start col, end col, linked).

    For ``A if COND else B`` with numbers on both sides, the value is B's and ``linked`` is
    ``(A's value, A's start col, A's end col, COND's source)``; otherwise ``linked`` is None.
    """
    if tree is None:
        try:
            tree = parse(source)
        except SyntaxError:
            return {}
    lines = source.splitlines()
    out: dict[str, tuple[Any, int, int, int, Any]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if not isinstance(target, ast.Name) or not _CAPS.match(target.id):
            continue
        if value.lineno != value.end_lineno or node.lineno != value.lineno:
            continue
        raw = lines[value.lineno - 1].encode()

        def cols(node: ast.AST) -> tuple[int, int]:  # col offsets are UTF-8 bytes; we want str indices
            return (len(raw[:node.col_offset].decode(errors="replace")),
                    len(raw[:node.end_col_offset].decode(errors="replace")))

        linked = None
        try:
            if isinstance(value, ast.IfExp):
                body, literal = _evaluate(value.body), _evaluate(value.orelse)
                if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (body, literal)):
                    continue
                test = raw[value.test.col_offset:value.test.end_col_offset].decode(errors="replace")
                linked = (body, *cols(value.body), test or "...")
                value = value.orelse
            else:
                literal = _evaluate(value)
        except ValueError:
            continue
        out.setdefault(target.id, (literal, value.lineno, *cols(value), linked))
    return out


def _evaluate(node: ast.AST) -> Any:
    """A literal, or simple arithmetic on numbers (``2**19``, ``3e-4 * 2``, ``-1``)."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (int, float, str, bool)) or node.value is None:
            return node.value
        raise ValueError
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate(e) for e in node.elts)
    if isinstance(node, ast.List):
        return [_evaluate(e) for e in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _evaluate(node.operand)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        a, b = _evaluate(node.left), _evaluate(node.right)
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in (a, b)):
            raise ValueError
        ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
               ast.Div: lambda: a / b, ast.FloorDiv: lambda: a // b,
               ast.Pow: lambda: a ** b if abs(b) <= 64 else _raise(),
               ast.LShift: lambda: a << b if isinstance(a, int) and isinstance(b, int) and 0 <= b <= 64 else _raise()}
        try:
            return ops[type(node.op)]()
        except (KeyError, ZeroDivisionError, TypeError, OverflowError):
            raise ValueError from None
    raise ValueError


def _raise() -> Any:
    raise ValueError


_NUMBER = r"[-+]?(?:\d+\s*\*\*\s*\d+|\d[\d_]*\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
_RANGE_TEXT = re.compile(rf"^\s*({_NUMBER})\s*,\s*({_NUMBER})\s*(?:,\s*(log|linear)\b)?", re.I)
_WORD = re.compile(r"^[A-Za-z0-9_.+-]+$")


def comment_range(text: str, name: str = "", line: int | None = None) -> list[Any]:
    """The bounds of a ``# range: LOW, HIGH[, log]`` comment; text after them is the author's prose.

    >>> comment_range("1, 64 subarrays this small are insertion-sorted")
    [1, 64]
    >>> comment_range("1e-4, 1e-1, log  (learning rates)")
    [0.0001, 0.1, 'log']
    """
    found = _RANGE_TEXT.match(text)
    if not found:
        where = f"{name} (line {line})" if line is not None else name or "a constant"
        raise SpaceError(f"{where}: '# range:' needs two numbers and an optional 'log' (range: 1e-4, 1e-1, log), "
                         f"not {text.strip()!r}")
    low, high, scale = found.groups()
    bounds: list[Any] = [_number(low), _number(high)]
    return bounds + (["log"] if scale and scale.lower() == "log" else [])


def _number(text: str) -> int | float:
    """A number of a range comment: a literal, or a power written ``2**10``."""
    base, power, exponent = text.replace(" ", "").partition("**")
    return int(base) ** int(exponent) if power else ast.literal_eval(base)


def _split_top(text: str) -> list[str]:
    """``text`` split at commas and bars outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, c in enumerate(text):
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c in ",|" and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def _leading_item(piece: str) -> tuple[Any, str] | None:
    """The first choice in ``piece`` and what follows it: a bracketed or quoted literal, or one bare word."""
    piece = piece.strip()
    if piece[:1] in "([{'\"":
        for end in range(len(piece), 0, -1):  # the longest prefix that is a literal
            try:
                value = ast.literal_eval(piece[:end])
            except (ValueError, SyntaxError):
                continue
            return (repr(value) if isinstance(value, str) else value), piece[end:]
        return None
    word, _, rest = piece.partition(" ")
    if word[-1:] in ":;" and len(word) > 1:  # "muon: its learning rate": the value ends at the colon
        word, rest = word[:-1], ": " + rest
    if not _WORD.match(word):
        return None
    try:
        value = ast.literal_eval(word)
    except (ValueError, SyntaxError):
        value = word
    return (repr(value) if isinstance(value, str) else value), rest


def comment_choices(text: str, name: str = "", line: int | None = None, what: str = "'# choices:'") -> list[Any]:
    """The values of a ``# choices: a, b, c`` comment: literals or bare words (strings), separated by commas or
    bars; the list ends at the first item followed by prose, which is the author's note.

    >>> comment_choices("relu2, gelu, swiglu   the MLP's activation")
    ["'relu2'", "'gelu'", "'swiglu'"]
    >>> comment_choices("(0.8, 0.95), (0.9, 0.99) the betas")
    [(0.8, 0.95), (0.9, 0.99)]
    """
    out: list[Any] = []
    for piece in _split_top(text):
        if not piece.strip():
            continue
        found = _leading_item(piece)
        if found is None:
            where = f"{name} (line {line})" if line is not None else name or "a constant"
            raise SpaceError(f"{where}: {what} lists values separated by commas (a, b, c), and "
                             f"{piece.strip()!r} is not one")
        value, rest = found
        out.append(value)
        if rest.strip():
            break  # prose after the last value
    return out


def _parse_choices(text: str) -> list[Any]:
    """``a, b, c`` / ``'a', 'b'`` / ``(1, 2), (3, 4)`` / ``a | b`` -> list of values (bare words: strings)."""
    text = text.strip()
    try:
        value = ast.literal_eval(f"[{text}]")
        return [v if not isinstance(v, str) else repr(v) for v in value]
    except (ValueError, SyntaxError):
        pass
    out: list[Any] = []
    for part in re.split(r"\s*[,|]\s*", text):
        if not part:
            continue
        try:
            v = ast.literal_eval(part)
            out.append(repr(v) if isinstance(v, str) else v)
        except (ValueError, SyntaxError):
            out.append(repr(part))
    return out


def _literal(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _source(value: Any) -> str:
    return repr(value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _keep_comment_column(old: str, new: str) -> str:
    """Pad or trim the spaces before a trailing comment so it stays in its column (cleaner diffs)."""
    a, b = re.search(r"(\s+)#[^'\"]*$", old), re.search(r"(\s+)#[^'\"]*$", new)
    if not a or not b:
        return new
    pad = max(1, len(b.group(1)) - (b.start() - a.start()))
    return new[:b.start()] + " " * pad + new[b.end(1):]


def _follow(p: Param, old: Any, new: Any, other: Any) -> Any:
    """The other branch of a conditional after its tuned branch went from ``old`` to ``new``."""
    if p.kind == "pow2":
        shift = (int(new).bit_length() - 1) - (int(old).bit_length() - 1)
        return max(1, int(other * 2.0 ** shift)) if isinstance(other, int) else other * 2.0 ** shift
    if p.kind == "int":
        return max(1, other + int(new) - int(old)) if isinstance(other, int) else other + new - old
    if old and other and p.log:
        ratio = float(new) / float(old)
        return max(1, round(other * ratio)) if isinstance(other, int) else float(f"{other * ratio:.3g}")
    return other + (new - old) if not isinstance(other, int) else round(other + new - old)


def _num_text(v: Any, original: str = "") -> str:
    if isinstance(v, int):
        k = v.bit_length() - 1
        return f"2**{k}" if "**" in original and v > 0 and v & (v - 1) == 0 else str(v)
    return _float_text(float(v))


def _float_text(v: float) -> str:
    text = repr(float(f"{v:.3g}"))
    return text


def _round_in(v: float, low: float, high: float) -> float:
    """Round to 3 significant digits (readable diffs), staying inside the bounds."""
    r = float(f"{v:.3g}")
    if r < low or r > high:
        r = float(f"{v:.6g}")
        r = min(max(r, low), high)
    return r
