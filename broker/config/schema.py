"""A small declarative schema that checks a loaded configuration tree.

A :class:`Schema` maps keys to :class:`Field` objects, each holding a value type::

    LIMITS = Schema("limits", {
        "max_body_size": Field(Size(), default="1MiB"),
        "mode": Field(Choice("reject", "drop"), default="reject"),
    })
    LIMITS.check(tree).max_body_size        # 1048576

:meth:`Schema.check` returns a read-only :class:`Section` holding every
declared key, defaults filled in and checked like given values; lists
become tuples.  The first mistake stops the check with a :class:`ConfigError`
naming file, line and dotted key path (``channels[2].data_format``); a
default is reported at the line of the mapping that lacks the key.
"""

import difflib
import math
import os
import re
from collections.abc import Mapping
from types import MappingProxyType

from broker.config.loader import ConfigError, Located, LocatedList, Section, config_error, to_plain

__all__ = ["NOTHING", "Any", "Bool", "Choice", "Duration", "Endpoint", "Field", "Float", "Int",
           "ListOf", "MapOf", "Path", "Schema", "Section", "Size", "Str", "Tagged", "Type",
           "config_error"]


class _Nothing:
    """The type of :data:`NOTHING`, the default of a :class:`Field` that has none."""

    def __repr__(self):
        return "NOTHING"


NOTHING = _Nothing()


def _join(path, key):
    return f"{path}.{key}" if path else str(key)


class _Where:
    """Where a value sits: its file, line, dotted key path and, when ``${}`` typed it, its text."""

    __slots__ = ("file", "line", "path", "text")

    def __init__(self, file=None, line=None, path="", text=None):
        self.file, self.line, self.path, self.text = file, line, path, text

    def child(self, container, key):
        """Where ``container[key]`` sits (``container`` being the value here)."""
        path = f"{self.path}[{key}]" if isinstance(container, (list, tuple)) else _join(self.path, key)
        if isinstance(container, (Located, LocatedList)):
            return _Where(container.file or self.file, container.line_of(key), path, container.text_of(key))
        return _Where(self.file, self.line, path)

    def error(self, problem):
        return ConfigError(problem, self.file, self.line, self.path or None)


def _show(value):
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
    shown = [_show(value) for value in values]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def _suggest(word, candidates):
    match = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f' (did you mean "{match[0]}"?)' if match else ""


def _text(value, where):
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
        where = _Where(getattr(value, "file", None) or file, getattr(value, "line", None))
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
        text = _text(value, where)
        if text is None:
            raise where.error(f"expected a string, got {_show(value)}")
        if self.choices is not None and text not in self.choices:
            raise where.error(f"expected {_one_of(self.choices)}, got {_show(text)}"
                              f"{_suggest(text, self.choices)}")
        if self.min_length is not None and len(text) < self.min_length:
            raise where.error("must not be empty" if not text else
                              f"must be at least {self.min_length} characters long")
        if self.pattern is not None and not self.pattern.search(text):
            raise where.error(self.problem or f"must match {self.pattern.pattern}, got {_show(text)}")
        return text


class Int(Type):
    """An integer (not a boolean), optionally within ``min``..``max``."""

    def __init__(self, min=None, max=None):
        self.min, self.max = min, max

    def _check(self, value, where):
        if not _is_number(value) or isinstance(value, float):
            raise where.error(f"expected an integer, got {_show(value)}")
        return _bounds(value, self.min, self.max, where)


class Float(Type):
    """A number, returned as a float, optionally within ``min``..``max``; never NaN."""

    def __init__(self, min=None, max=None):
        self.min, self.max = min, max

    def _check(self, value, where):
        if not _is_number(value) or math.isnan(value):
            raise where.error(f"expected a number, got {_show(value)}")
        return _bounds(float(value), self.min, self.max, where)


class Bool(Type):
    """``true`` or ``false`` as YAML spells them; not ``"yes"``, ``1`` or a quoted ``"true"``."""

    def _check(self, value, where):
        if not isinstance(value, bool):
            raise where.error(f"expected true or false, got {_show(value)}")
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
            raise where.error(f"expected a size such as 512KiB or 10MB, got {_show(value)}")
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
            raise where.error(f"expected a duration such as 500ms, 10s or 5m, got {_show(value)}")
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
        raise where.error(f"expected {_one_of(self.values)}, got {_show(value)}"
                          f"{_suggest(value, self.values)}")


class ListOf(Type):
    """A list whose items are all ``type``; returned as a tuple."""

    def __init__(self, type, min_items=0):
        self.type, self.min_items = type, min_items

    def _check(self, value, where):
        if not isinstance(value, (list, tuple)):
            raise where.error(f"expected a list, got {_show(value)}")
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
            raise where.error(f"expected a mapping, got {_show(value)}")
        result = {}
        for key, item in value.items():
            child = where.child(value, key)
            if not isinstance(key, str):
                raise child.error(f"expected a text key, got {_show(key)}")
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
        text = _text(value, where)
        if text is None or ":" not in text:
            raise where.error(f'expected an endpoint such as "tcp:17010:interface=127.0.0.1", '
                              f"got {_show(value)}")
        kind, *parts = re.split(r"(?<!\\):", text)
        if kind not in _ENDPOINT_TYPES:
            raise where.error(f"unknown endpoint type {_show(kind)}{_suggest(kind, _ENDPOINT_TYPES)}; "
                              f"known: {', '.join(sorted(_ENDPOINT_TYPES))}")
        if any(part.startswith("=") for part in parts):
            raise where.error(f"endpoint option without a name in {_show(text)}")
        key = _ENDPOINT_TYPES[kind]
        options = dict(part.split("=", 1) for part in parts if "=" in part)
        main = next((part for part in parts if "=" not in part), options.get(key))
        if not main:
            raise where.error(f"endpoint {_show(text)} has no {key}")
        if key == "port" and not (main.isdigit() and int(main) <= 65535):
            raise where.error(f"endpoint port must be a number from 0 to 65535, got {_show(main)}")
        return text


class Path(Type):
    """A file system path, made absolute relative to the directory of its config file."""

    def _check(self, value, where):
        text = _text(value, where)
        if not text:
            raise where.error(f"expected a path, got {_show(value)}")
        base = os.path.dirname(os.fspath(where.file)) if where.file else ""
        return os.path.abspath(os.path.join(base, os.path.expanduser(text)))


class Field:
    """One key of a :class:`Schema`.

    :param type: the value's :class:`Type` (a :class:`Schema` for a nested mapping).
    :param required: whether the key must be given.
    :param default: the value when the key is absent or null; checked like a
        given value.  Without one, an absent optional key reads as None.
    :param check: an extra ``callable(value)`` on the converted value, raising
        ``ValueError("problem")``.
    :param doc: what the key means, for documentation.
    """

    def __init__(self, type, required=False, default=NOTHING, check=None, doc=""):
        if not isinstance(type, Type):
            raise TypeError(f"Field() needs a type instance such as Int(), got {type!r}")
        if required and default is not NOTHING:
            raise TypeError("a required Field has no default")
        self.type, self.required, self.default, self.check, self.doc = type, required, default, check, doc

    def _check(self, value, where):
        value = self.type._check(value, where)
        if self.check is not None:
            try:
                self.check(value)
            except ValueError as error:
                raise where.error(str(error)) from None
        return value


class Schema(Type):
    """A mapping with known keys; checks into a :class:`Section`.

    :param name: what the mapping is, for messages and ``repr``.
    :param fields: ``{key: Field}``, in the order sections list them.
    :param validate: a ``callable(section)`` run on the checked section for
        rules across keys; it raises ``ValueError("key: problem")`` (reported
        at that key's line) or ``ValueError("problem")`` (at the mapping's).
    """

    def __init__(self, name, fields, validate=None):
        for key, field in fields.items():
            if not isinstance(key, str) or key.startswith("_"):
                raise TypeError(f"{name}: a key must be a string not starting with '_', got {key!r}")
            if not isinstance(field, Field):
                raise TypeError(f"{name}: {key} must be a Field, got {field!r}")
        self.name, self.fields, self.validate = name, dict(fields), validate

    def __repr__(self):
        return f"Schema({self.name!r}, [{', '.join(self.fields)}])"

    def extend(self, fields, name=None):
        """A new schema with this one's fields and validation plus (or replaced by) ``fields``."""
        return Schema(name or self.name, {**self.fields, **fields}, self.validate)

    def _check(self, value, where):
        if not isinstance(value, Mapping):
            raise where.error(f"expected a mapping, got {_show(value)}")
        values, lines, defaulted = {}, {}, {}
        for key, item in value.items():
            child = where.child(value, key)
            field = self.fields.get(key)
            if field is None:
                raise child.error(f"unknown key {_show(key)}{_suggest(key, self.fields)}")
            lines[key] = child.line
            if item is None and not field.required:
                defaulted[key] = child
            else:
                values[key] = field._check(item, child)
        for key, field in self.fields.items():
            if key in values:
                continue
            if field.required:
                raise where.error(f'missing required key "{key}"')
            if field.default is NOTHING or field.default is None:
                values[key] = None
            else:
                child = defaulted.get(key) or _Where(where.file, where.line, _join(where.path, key))
                values[key] = field._check(field.default, child)
        section = Section(self.name, {key: values[key] for key in self.fields},
                          where.file, where.line, lines, where.path)
        if self.validate is not None:
            try:
                self.validate(section)
            except ValueError as error:
                key, colon, problem = str(error).partition(": ")
                if colon and key in self.fields:
                    raise config_error(section, key, problem) from None
                raise config_error(section, None, str(error)) from None
        return section


class Tagged(Type):
    """A mapping whose ``tag_key`` names its schema in ``registry`` (``{tag: Schema}``).

    The registry is read at check time, so types added after this is built
    are known.  A schema that does not declare ``tag_key`` accepts it anyway.
    """

    def __init__(self, tag_key, registry):
        self.tag_key, self.registry = tag_key, registry

    def _check(self, value, where):
        tag_key = self.tag_key
        if not isinstance(value, Mapping):
            raise where.error(f'expected a mapping with a "{tag_key}" key, got {_show(value)}')
        known = ", ".join(sorted(map(str, self.registry))) or "none"
        if value.get(tag_key) is None:
            raise where.error(f'missing required key "{tag_key}" (one of: {known})')
        child = where.child(value, tag_key)
        tag = _text(value[tag_key], child)
        schema = self.registry.get(tag) if tag is not None else None
        if schema is None:
            raise child.error(f"unknown {tag_key} {_show(value[tag_key])}"
                              f"{_suggest(value[tag_key], self.registry)}; "
                              f"known {tag_key}s: {known}")
        if not isinstance(schema, Schema):
            raise TypeError(f"registry entry {tag!r} must be a Schema, got {schema!r}")
        if tag_key not in schema.fields:
            schema = schema.extend({tag_key: Field(Str(), required=True)})
        return schema._check(value, where)
