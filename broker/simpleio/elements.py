"""SimpleIO elements: the typed fields a service declares (Zato-compatible).

Each element knows how to :meth:`~Elem.parse` an input value, whether it
arrived as text (query string, form, XML) or as a JSON-native value, how to
:meth:`~Elem.render` a service's value into something JSON-able, and which
JSON Schema fragment describes it.  ``parse`` raises :class:`ValueError`
whose text is a short problem safe to show the caller ("expected an
integer").

A plain string name gets its type from Zato's naming conventions
(:func:`elem_from_name`); :class:`AsIs` turns them off.
"""

import datetime as _dt
import decimal as _decimal
import re
import uuid as _uuid
from collections.abc import Mapping
from copy import deepcopy

__all__ = [
    "INT64_MAX", "INT64_MIN", "NOT_GIVEN", "Elem", "Text", "Int", "Float", "Bool", "Decimal", "Date",
    "DateTime", "UUID",
    "List", "Dict", "AsIs", "Integer", "Boolean", "Opaque", "elem_from_name", "to_jsonable",
]


class _NotGiven:
    """The type of :data:`NOT_GIVEN`."""

    __slots__ = ()

    def __repr__(self):
        return "NOT_GIVEN"

    def __bool__(self):
        return False


#: Marks "no default declared" (None is a legitimate default).
NOT_GIVEN = _NotGiven()

_INT_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_DATETIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ].+)?", re.ASCII)
_TRUE = frozenset({"true", "yes", "on", "y", "t", "1"})
_FALSE = frozenset({"false", "no", "off", "n", "f", "0"})
_BOOL_PREFIXES = ("by_", "has_", "is_", "may_", "needs_", "should_")
_INT_SUFFIXES = ("_count", "_id", "_size", "_size_min", "_size_max", "_timeout")
#: The range an :class:`Int` accepts unless it declares its own: 64-bit signed.
INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1
_MAX_INT_DIGITS = 4300  # sys.int_info.default_max_str_digits: int() refuses longer text
_FLOAT_RANGE = "is out of range for a floating-point number"
_DECIMAL_CONTEXT = _decimal.DefaultContext
_DECIMAL_RANGE = "is out of range: its exponent is beyond +/-999999"


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _characters(count):
    return "1 character" if count == 1 else f"{count} characters"


def to_jsonable(value):
    """Convert nested values to JSON-able ones (Decimal → str, dates → ISO 8601, UUID → str).

    :param value: any value built of mappings, sequences and scalars.
    :return: the same structure with only JSON-native types.
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (_decimal.Decimal, _uuid.UUID)):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    raise ValueError(f"cannot render a {type(value).__name__}")


class Elem:
    """Base of all elements; a :class:`Text` unless a subclass says otherwise.

    :param name: the key in the input or output.
    :param default: used when an optional value is missing; NOT_GIVEN = none.
    """

    __slots__ = ("name", "default")

    #: Short problem text when a value cannot be parsed.
    problem = "expected text"
    #: JSON Schema of the element, without its default.
    schema = {"type": "string"}
    #: The JSON types a JSON body may give it, where they are more than ``schema``'s.
    json_input_types = None

    def __init__(self, name, default=NOT_GIVEN):
        if not isinstance(name, str) or not name:
            raise TypeError(f"{type(self).__name__} needs a non-empty string name, not {name!r}")
        self.name = name
        self.default = default

    def __repr__(self):
        if self.default is NOT_GIVEN:
            return f"{type(self).__name__}({self.name!r})"
        return f"{type(self).__name__}({self.name!r}, default={self.default!r})"

    @property
    def has_default(self):
        """Whether a default was declared on the element."""
        return self.default is not NOT_GIVEN

    def get_default(self):
        """The declared default, copied if mutable so callers may change it."""
        default = self.default
        return deepcopy(default) if isinstance(default, (list, dict)) else default

    def renamed(self, name):
        """A copy of this element under another name (same type and default)."""
        return type(self)(name, self.default)

    def parse(self, value):
        """Convert one input value.

        :param value: a string (query, form, XML) or a JSON-native value.
        :return: the converted value.
        :raise ValueError: with a short problem text.
        """
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float, _decimal.Decimal, _uuid.UUID)):
            return str(value)
        if isinstance(value, (_dt.date, _dt.time)):
            return value.isoformat()
        if isinstance(value, (bytes, bytearray)):
            try:
                return bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(self.problem) from None
        raise ValueError(self.problem)

    def render(self, value):
        """Turn a service's value into a JSON-able one.

        :raise ValueError: the value does not fit the element.
        """
        return self.parse(value)

    def json_schema(self):
        """A JSON Schema (2020-12 / OpenAPI 3.1) fragment for this element."""
        schema = dict(self.schema)
        if self.has_default and not callable(self.default):
            try:
                schema["default"] = self.render(self.get_default()) if self.default is not None else None
            except (ValueError, TypeError):
                pass
        return schema


class Text(Elem):
    """A string; numbers are accepted and converted, mappings and lists are not.

    :param min_length: the fewest characters accepted (0 unless declared).
    :param max_length: the most characters accepted; None = any.
    """

    __slots__ = ("min_length", "max_length")
    json_input_types = ("string", "number", "boolean")  # a number or boolean is taken as its text

    def __init__(self, name, default=NOT_GIVEN, *, min_length=0, max_length=None):
        super().__init__(name, default)
        if not _is_int(min_length) or min_length < 0 or (
                max_length is not None and (not _is_int(max_length) or max_length < min_length)):
            raise TypeError(f"Text {name!r}: min_length and max_length must be integers, "
                            f"0 <= min_length <= max_length (got {min_length!r}, {max_length!r})")
        self.min_length = min_length
        self.max_length = max_length

    def __repr__(self):
        bounds = "".join(f", {key}={value!r}" for key, value, default in
                         (("min_length", self.min_length, 0), ("max_length", self.max_length, None))
                         if value != default)
        return super().__repr__()[:-1] + bounds + ")"

    def renamed(self, name):
        return type(self)(name, self.default, min_length=self.min_length, max_length=self.max_length)

    def parse(self, value):
        text = value if value.__class__ is str else Elem.parse(self, value)
        if self.max_length is not None and len(text) > self.max_length:
            raise ValueError(f"must be at most {_characters(self.max_length)} long")
        if self.min_length and len(text) < self.min_length:
            raise ValueError(f"must be at least {_characters(self.min_length)} long")
        return text

    def json_schema(self):
        schema = super().json_schema()
        if self.min_length:
            schema["minLength"] = self.min_length
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        return schema


class Int(Elem):
    """An integer within ``min`` and ``max`` (64-bit signed unless declared);
    bools and non-integral numbers are refused.

    :param min: the smallest value accepted.
    :param max: the largest value accepted.
    """

    __slots__ = ("min", "max")
    problem = "expected an integer"
    schema = {"type": "integer"}

    def __init__(self, name, default=NOT_GIVEN, *, min=INT64_MIN, max=INT64_MAX):
        super().__init__(name, default)
        if not (_is_int(min) and _is_int(max)) or min > max:
            raise TypeError(f"Int {name!r}: min and max must be integers, min <= max "
                            f"(got {min!r}, {max!r})")
        self.min = min
        self.max = max

    def __repr__(self):
        bounds = "".join(f", {key}={value!r}" for key, value, default in
                         (("min", self.min, INT64_MIN), ("max", self.max, INT64_MAX))
                         if value != default)
        return super().__repr__()[:-1] + bounds + ")"

    def renamed(self, name):
        return type(self)(name, self.default, min=self.min, max=self.max)

    def parse(self, value):
        if isinstance(value, bool):
            raise ValueError(self.problem)
        if isinstance(value, int):
            if self.min <= value <= self.max:  # the common case, without a call
                return value
            return self._in_range(value)
        if isinstance(value, float):
            if value.is_integer():
                return int(self._in_range(value))
        elif isinstance(value, _decimal.Decimal):
            if value.is_finite() and value == value.to_integral_value():
                return int(self._in_range(value))
        elif isinstance(value, str):
            text = value.strip()
            if _INT_RE.fullmatch(text):
                negative = text[0] == "-"
                digits = text.lstrip("+-").lstrip("0") or "0"
                if len(digits) > _MAX_INT_DIGITS:  # beyond any range: int() would refuse it
                    raise ValueError(self._below if negative else self._above)
                return self._in_range(-int(digits) if negative else int(digits))
        raise ValueError(self.problem)

    def _in_range(self, number):
        """``number`` (compared before any conversion, so a huge one costs nothing)."""
        if number < self.min:
            raise ValueError(self._below)
        if number > self.max:
            raise ValueError(self._above)
        return number

    @property
    def _below(self):
        return f"must be at least {self.min}"

    @property
    def _above(self):
        return f"must be at most {self.max}"

    def json_schema(self):
        schema = super().json_schema()
        schema["minimum"] = self.min
        schema["maximum"] = self.max
        return schema


class Float(Elem):
    """A finite floating-point number."""

    __slots__ = ()
    problem = "expected a number"
    schema = {"type": "number"}

    def parse(self, value):
        if isinstance(value, bool):
            raise ValueError(self.problem)
        try:
            if isinstance(value, (int, float, _decimal.Decimal)):
                result = float(value)
            elif isinstance(value, str) and _NUMBER_RE.fullmatch(value.strip()):
                result = float(value.strip())
            else:
                raise ValueError(self.problem)
        except OverflowError:  # an int past a double's range
            raise ValueError(_FLOAT_RANGE) from None
        if result != result:
            raise ValueError(self.problem)
        if result in (float("inf"), float("-inf")):
            raise ValueError(_FLOAT_RANGE)
        return result


class Bool(Elem):
    """A boolean; also true/yes/on/y/t/1 and false/no/off/n/f/0 in any case."""

    __slots__ = ()
    problem = "expected a boolean (true/false)"
    schema = {"type": "boolean"}

    def parse(self, value):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            text = value.strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
        raise ValueError(self.problem)


class Decimal(Elem):
    """An exact decimal number; rendered as a string so no digit is lost.

    Its exponent stays within the default decimal context's (``1E-999999`` to
    ``9.9E+999999``), where arithmetic on it works.
    """

    __slots__ = ()
    problem = "expected a decimal number"
    schema = {"type": "string", "format": "decimal"}
    json_input_types = ("string", "number")

    def parse(self, value):
        if isinstance(value, bool):
            raise ValueError(self.problem)
        try:
            if isinstance(value, _decimal.Decimal):
                result = value
            elif isinstance(value, int):
                result = _decimal.Decimal(value)
            elif isinstance(value, float):
                result = _decimal.Decimal(repr(value))
            elif isinstance(value, str) and _NUMBER_RE.fullmatch(value.strip()):
                result = _decimal.Decimal(value.strip())
            else:
                raise ValueError(self.problem)
        except _decimal.InvalidOperation:  # an exponent past what decimal can hold
            raise ValueError(_DECIMAL_RANGE) from None
        if not result.is_finite():
            raise ValueError(self.problem)
        if result and not _DECIMAL_CONTEXT.Emin <= result.adjusted() <= _DECIMAL_CONTEXT.Emax:
            raise ValueError(_DECIMAL_RANGE)
        return result

    def render(self, value):
        return str(self.parse(value))


class Date(Elem):
    """A calendar date, ``YYYY-MM-DD``; never inferred from a name."""

    __slots__ = ()
    problem = "expected a date YYYY-MM-DD"
    schema = {"type": "string", "format": "date"}

    def parse(self, value):
        if isinstance(value, _dt.datetime):
            return value.date()
        if isinstance(value, _dt.date):
            return value
        if isinstance(value, str) and _DATE_RE.fullmatch(value.strip()):
            try:
                return _dt.date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise ValueError(self.problem)

    def render(self, value):
        return self.parse(value).isoformat()


class DateTime(Elem):
    """A date and time in ISO 8601 (``2024-05-01T10:00:00+02:00``, ``...Z``)."""

    __slots__ = ()
    problem = "expected a date-time in ISO 8601 (YYYY-MM-DDTHH:MM:SS)"
    schema = {"type": "string", "format": "date-time"}

    def parse(self, value):
        if isinstance(value, _dt.datetime):
            return value
        if isinstance(value, _dt.date):
            return _dt.datetime(value.year, value.month, value.day)
        if isinstance(value, str) and _DATETIME_RE.fullmatch(value.strip()):
            try:
                return _dt.datetime.fromisoformat(value.strip())
            except ValueError:
                pass
        raise ValueError(self.problem)

    def render(self, value):
        return self.parse(value).isoformat()


class UUID(Elem):
    """A UUID; parsed to :class:`uuid.UUID`, rendered in its canonical string form."""

    __slots__ = ()
    problem = "expected a UUID"
    schema = {"type": "string", "format": "uuid"}

    def parse(self, value):
        if isinstance(value, _uuid.UUID):
            return value
        if isinstance(value, str):
            try:
                return _uuid.UUID(value.strip())
            except ValueError:
                pass
        raise ValueError(self.problem)

    def render(self, value):
        return str(self.parse(value))


class List(Elem):
    """A list; a lone string (one form/query/XML value) becomes a one-item list."""

    __slots__ = ()
    problem = "expected a list"
    schema = {"type": "array"}

    def parse(self, value):
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, str):
            return [value]
        raise ValueError(self.problem)

    def render(self, value):
        if isinstance(value, (list, tuple, set, frozenset)):
            return to_jsonable(value)
        raise ValueError(self.problem)


class Dict(Elem):
    """A mapping (a JSON object)."""

    __slots__ = ()
    problem = "expected an object"
    schema = {"type": "object"}

    def parse(self, value):
        if isinstance(value, Mapping):
            return dict(value)
        raise ValueError(self.problem)

    def render(self, value):
        if isinstance(value, Mapping):
            return to_jsonable(value)
        raise ValueError(self.problem)


class AsIs(Elem):
    """Any value, passed through unchanged; turns the naming conventions off."""

    __slots__ = ()
    problem = "expected a value"
    schema = {}

    def parse(self, value):
        return value

    def render(self, value):
        return value


Integer = Int
Boolean = Bool
Opaque = AsIs


def elem_from_name(name):
    """The element Zato's naming conventions give a plain string name.

    ``by_/has_/is_/may_/needs_/should_`` prefixes → :class:`Bool`; ``id`` and
    ``_count/_id/_size/_size_min/_size_max/_timeout`` suffixes → :class:`Int`;
    anything else → :class:`Text`.  Dates are never inferred.

    :param name: the declared name.
    :return: a new element.
    """
    if name.startswith(_BOOL_PREFIXES):
        return Bool(name)
    if name == "id" or name.endswith(_INT_SUFFIXES):
        return Int(name)
    return Text(name)
