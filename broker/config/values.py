"""Value types of the configuration schema and the helpers their messages use.

:mod:`broker.config.schema` builds mappings (:class:`~broker.config.schema.Schema`,
:class:`~broker.config.schema.Tagged`) out of these; each type checks and
converts one loaded value or raises a :class:`ConfigError` saying where.
"""

import difflib
import math
import os
import re
from collections.abc import Mapping
from types import MappingProxyType

from broker.config.loader import ConfigError, Located, LocatedList, to_plain

__all__ = ["NOTHING", "Any", "Bool", "Choice", "Duration", "Endpoint", "Float", "Int", "ListOf",
           "MapOf", "Name", "Path", "Size", "Str", "Type", "Where", "join_key", "show", "suggest",
           "typed_text"]


class _Nothing:
    """The type of :data:`NOTHING`, the default of a :class:`Field` that has none."""

    def __repr__(self):
        return "NOTHING"


NOTHING = _Nothing()


def join_key(path, key):
    """``path.key``: the dotted path of a key below ``path``."""
    return f"{path}.{key}" if path else str(key)


class Where:
    """Where a value sits: its file, line, dotted key path and, when ``${}`` typed it, its text."""

    __slots__ = ("file", "line", "path", "text")

    def __init__(self, file=None, line=None, path="", text=None):
        self.file, self.line, self.path, self.text = file, line, path, text

    def child(self, container, key):
        """Where ``container[key]`` sits (``container`` being the value here)."""
        path = f"{self.path}[{key}]" if isinstance(container, (list, tuple)) else join_key(self.path, key)
        if isinstance(container, (Located, LocatedList)):
            return Where(container.file or self.file, container.line_of(key), path, container.text_of(key))
        return Where(self.file, self.line, path)

    def error(self, problem):
        return ConfigError(problem, self.file, self.line, self.path or None)


def show(value):
    """``value`` as a message shows it: strings quoted, YAML spellings for null and booleans."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if len(value) <= 40 else f'"{value[:37]}..."'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _one_of(values):
    shown = [show(value) for value in values]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def suggest(word, candidates):
    match = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f' (did you mean "{match[0]}"?)' if match else ""


def typed_text(value, where):
    """``value`` if it is a string, the text ``${}`` typed it from, or None."""
    return value if isinstance(value, str) else where.text


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bounds(value, low, high, where, unit=""):
    if low is not None and value < low:
        raise where.error(f"must be at least {low}{unit}, got {value}{unit}")
    if high is not None and value > high:
        raise where.error(f"must be at most {high}{unit}, got {value}{unit}")
    return value


class Type:
    """A value type: :meth:`check` converts a loaded value or raises :class:`ConfigError`."""

    def check(self, value, file=None):
        """``value`` checked and converted.

        :param file: the file that relative paths and messages refer to when
            ``value`` does not know it (a :class:`Located` does).
        :raises ConfigError: at the first mistake.
        """
        where = Where(getattr(value, "file", None) or file, getattr(value, "line", None))
        return self._check(value, where)

    def _check(self, value, where):
        raise NotImplementedError


class Any(Type):
    """Anything, returned as plain dicts, lists and scalars (copied)."""

    def _check(self, value, where):
        return to_plain(value)


class Str(Type):
    """A string.

    :param pattern: a regular expression the string must contain a match of
        (anchor it with ``^...$`` to match the whole string).
    :param min_length: the least number of characters.
    :param choices: the allowed strings.
    :param problem: the message when ``pattern`` does not match, e.g. ``'must start with "/"'``.
    """

    def __init__(self, pattern=None, min_length=None, choices=None, problem=None):
        self.pattern = re.compile(pattern) if pattern is not None else None
        self.min_length = min_length
        self.choices = tuple(choices) if choices is not None else None
        self.problem = problem

    def _check(self, value, where):
        text = typed_text(value, where)
        if text is None:
            raise where.error(f"expected a string, got {show(value)}")
        if self.choices is not None and text not in self.choices:
            raise where.error(f"expected {_one_of(self.choices)}, got {show(text)}"
                              f"{suggest(text, self.choices)}")
        if self.min_length is not None and len(text) < self.min_length:
            raise where.error("must not be empty" if not text else
                              f"must be at least {self.min_length} characters long")
        if self.pattern is not None and not self.pattern.search(text):
            raise where.error(self.problem or f"must match {self.pattern.pattern}, got {show(text)}")
        return text


class Name(Str):
    """The name of something in the config (a channel, a connection, a job...): letters,
    digits, ``_``, ``.`` and ``-``, starting with a letter or a digit."""

    PATTERN = r"^[A-Za-z0-9][\w.\-]*$"

    def __init__(self):
        super().__init__(self.PATTERN, problem=None)

    def _check(self, value, where):
        text = typed_text(value, where)
        if text is not None and not self.pattern.search(text):
            raise where.error(f"expected a name (letters, digits, _ . -, starting with a letter or "
                              f"a digit), got {show(text)}")
        return super()._check(value, where)


class Int(Type):
    """An integer (not a boolean), optionally within ``min``..``max``."""

    def __init__(self, min=None, max=None):
        self.min, self.max = min, max

    def _check(self, value, where):
        if not _is_number(value) or isinstance(value, float):
            raise where.error(f"expected an integer, got {show(value)}")
        return _bounds(value, self.min, self.max, where)


class Float(Type):
    """A number, returned as a float, optionally within ``min``..``max``; never NaN."""

    def __init__(self, min=None, max=None):
        self.min, self.max = min, max

    def _check(self, value, where):
        if not _is_number(value) or math.isnan(value):
            raise where.error(f"expected a number, got {show(value)}")
        return _bounds(float(value), self.min, self.max, where)


class Bool(Type):
    """``true`` or ``false`` as YAML spells them; not ``"yes"``, ``1`` or a quoted ``"true"``."""

    def _check(self, value, where):
        if not isinstance(value, bool):
            raise where.error(f"expected true or false, got {show(value)}")
        return value


_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?b?|b|bytes?)?", re.IGNORECASE)


class Size(Type):
    """A number of bytes: an integer or text like ``512KiB``, ``1MiB``, ``10MB``; returns an int.

    ``KB``/``MB``/``GB``/``TB`` are powers of 1000, ``KiB``/``MiB``/... powers of 1024.
    """

    def __init__(self, min=0, max=None):
        self.min, self.max = min, max

    def _check(self, value, where):
        if _is_number(value) and not isinstance(value, float):
            return _bounds(value, self.min, self.max, where, " bytes")
        match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise where.error(f"expected a size such as 512KiB or 10MB, got {show(value)}")
        unit = (match.group(2) or "b").lower()
        scale = 1 if unit[0] == "b" else (1024 if "i" in unit else 1000) ** ("kmgt".index(unit[0]) + 1)
        return _bounds(round(float(match.group(1)) * scale), self.min, self.max, where, " bytes")


_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ms|s|m|h|d)\s*)+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Duration(Type):
    """Seconds as a float: a number, or text like ``500ms``, ``10s``, ``5m``, ``1h30m``."""

    def __init__(self, min=0.0, max=None):
        self.min, self.max = min, max

    def _check(self, value, where):
        seconds = None
        if _is_number(value):
            seconds = float(value)
        elif isinstance(value, str):
            text = value.strip()
            if _DURATION.fullmatch(text):
                seconds = sum(float(n) * _SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
            elif re.fullmatch(r"\d+(?:\.\d*)?|\.\d+", text):
                seconds = float(text)
        if seconds is None or not math.isfinite(seconds):
            raise where.error(f"expected a duration such as 500ms, 10s or 5m, got {show(value)}")
        return _bounds(seconds, self.min, self.max, where, "s")


class Choice(Type):
    """One of the given ``values``."""

    def __init__(self, *values):
        if not values:
            raise TypeError("Choice() needs at least one value")
        self.values = values

    def _check(self, value, where):
        for candidate in (value, where.text):
            for allowed in self.values:
                if candidate == allowed and type(candidate) is type(allowed):
                    return allowed
        raise where.error(f"expected {_one_of(self.values)}, got {show(value)}"
                          f"{suggest(value, self.values)}")


class ListOf(Type):
    """A list whose items are all ``type``; returned as a tuple."""

    def __init__(self, type, min_items=0):
        self.type, self.min_items = type, min_items

    def _check(self, value, where):
        if not isinstance(value, (list, tuple)):
            raise where.error(f"expected a list, got {show(value)}")
        if len(value) < self.min_items:
            raise where.error(f"needs at least {self.min_items} item{'s' * (self.min_items != 1)}, "
                              f"got {len(value)}")
        return tuple(self.type._check(item, where.child(value, index)) for index, item in enumerate(value))


class MapOf(Type):
    """A mapping of string keys to ``value_type`` values; returned as a read-only mapping."""

    def __init__(self, value_type):
        self.value_type = value_type

    def _check(self, value, where):
        if not isinstance(value, Mapping):
            raise where.error(f"expected a mapping, got {show(value)}")
        result = {}
        for key, item in value.items():
            child = where.child(value, key)
            if not isinstance(key, str):
                raise child.error(f"expected a text key, got {show(key)}")
            result[key] = self.value_type._check(item, child)
        return MappingProxyType(result)


_ENDPOINT_TYPES = {"tcp": "port", "tcp6": "port", "ssl": "port", "unix": "address"}


class Endpoint(Type):
    """A Twisted server endpoint string such as ``tcp:17010:interface=127.0.0.1``.

    Only the syntax is checked: a known type (``tcp``, ``tcp6``, ``ssl``,
    ``unix``) and a port (0-65535) or socket path, positional or as
    ``port=``/``address=``.  The string is returned unchanged.
    """

    def _check(self, value, where):
        text = typed_text(value, where)
        if text is None or ":" not in text:
            raise where.error(f'expected an endpoint such as "tcp:17010:interface=127.0.0.1", '
                              f"got {show(value)}")
        kind, *parts = re.split(r"(?<!\\):", text)
        if kind not in _ENDPOINT_TYPES:
            raise where.error(f"unknown endpoint type {show(kind)}{suggest(kind, _ENDPOINT_TYPES)}; "
                              f"known: {', '.join(sorted(_ENDPOINT_TYPES))}")
        if any(part.startswith("=") for part in parts):
            raise where.error(f"endpoint option without a name in {show(text)}")
        key = _ENDPOINT_TYPES[kind]
        options = dict(part.split("=", 1) for part in parts if "=" in part)
        main = next((part for part in parts if "=" not in part), options.get(key))
        if not main:
            raise where.error(f"endpoint {show(text)} has no {key}")
        if key == "port" and not (main.isdigit() and int(main) <= 65535):
            raise where.error(f"endpoint port must be a number from 0 to 65535, got {show(main)}")
        return text


class Path(Type):
    """A file system path, made absolute relative to the directory of its config file."""

    def _check(self, value, where):
        text = typed_text(value, where)
        if not text:
            raise where.error(f"expected a path, got {show(value)}")
        base = os.path.dirname(os.fspath(where.file)) if where.file else ""
        return os.path.abspath(os.path.join(base, os.path.expanduser(text)))
