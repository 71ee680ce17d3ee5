"""A small declarative schema that checks a loaded configuration tree.

The value types live in :mod:`broker.config.values`.  A :class:`Schema` maps keys to :class:`Field` objects, each holding a value type::

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

from collections.abc import Mapping

from broker.config.loader import Located, Section, config_error
from broker.config.values import (NOTHING, Any, Bool, Choice, Duration, Endpoint, Float, Int,
                                  ListOf, MapOf, Name, Path, Size, Str, Type, Where, join_key, show,
                                  suggest, typed_text)

__all__ = ["NOTHING", "Any", "Bool", "Choice", "Duration", "Endpoint", "Field", "Float", "Int",
           "ListOf", "MapOf", "Name", "Path", "Schema", "Section", "Size", "Str", "Tagged", "Type",
           "config_error"]


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
            raise where.error(f"expected a mapping, got {show(value)}")
        values, lines, defaulted, variables = {}, {}, {}, {}
        for key, item in value.items():
            child = where.child(value, key)
            field = self.fields.get(key)
            if field is None:
                raise child.error(f"unknown key {show(key)}{suggest(key, self.fields)}")
            lines[key] = child.line
            if isinstance(value, Located) and value.variables_of(key):
                variables[key] = value.variables_of(key)
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
                child = defaulted.get(key) or Where(where.file, where.line, join_key(where.path, key))
                values[key] = field._check(field.default, child)
        section = Section(self.name, {key: values[key] for key in self.fields},
                          where.file, where.line, lines, where.path, variables)
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
            raise where.error(f'expected a mapping with a "{tag_key}" key, got {show(value)}')
        known = ", ".join(sorted(map(str, self.registry))) or "none"
        if value.get(tag_key) is None:
            raise where.error(f'missing required key "{tag_key}" (one of: {known})')
        child = where.child(value, tag_key)
        tag = typed_text(value[tag_key], child)
        schema = self.registry.get(tag) if tag is not None else None
        if schema is None:
            raise child.error(f"unknown {tag_key} {show(value[tag_key])}"
                              f"{suggest(value[tag_key], self.registry)}; "
                              f"known {tag_key}s: {known}")
        if not isinstance(schema, Schema):
            raise TypeError(f"registry entry {tag!r} must be a Schema, got {schema!r}")
        if tag_key not in schema.fields:
            schema = schema.extend({tag_key: Field(Str(), required=True)})
        return schema._check(value, where)
