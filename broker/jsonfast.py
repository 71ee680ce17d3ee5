"""JSON input: the one guarded decoder for documents clients send, and when orjson may read one.

:func:`decode_json` reads every JSON document that arrives from outside (HTTP
bodies, published messages, WebSocket frames, AMQP and ZeroMQ messages, Zato
invoke payloads).  A bad document raises :class:`JSONInputError` (a
:class:`~broker.errors.BadRequest`) and nothing else; refused besides what is
malformed: nesting deeper than ``limits.max_json_depth``, a key given twice in
one object, a lone surrogate (``"\\ud800"``), invalid UTF-8, NaN, Infinity and
numbers beyond a double's range.

orjson reads the common document (and stops at 1024 levels by itself); the
stdlib reads exactly what orjson would read inexactly (integers beyond 64
bits, which orjson turns into floats) and names the repeated key when a
cheap count says there may be one.
"""

import json
import re

import orjson

from broker.errors import BadRequest

__all__ = ["COUNTERS", "DEFAULT_MAX_DEPTH", "MAX_DEPTH_LIMIT", "JSONInputError", "decode_json",
           "orjson_may_read", "set_max_depth"]

#: How deep objects and arrays may nest in a client's document unless configured.
DEFAULT_MAX_DEPTH = 64
#: The deepest ``limits.max_json_depth`` may go: orjson writes no deeper.
MAX_DEPTH_LIMIT = 254
#: Counted when a check trips; shown under ``json`` in ``/broker/metrics``.
COUNTERS = {"too_deep": 0, "duplicate_keys": 0}

_MAX_CONTAINERS = 256
_LONG_NUMBER = re.compile(rb"\d{19}")  # 19 digits may already be past 64 bits
_BOM = b"\xef\xbb\xbf"
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_max_depth = DEFAULT_MAX_DEPTH


class JSONInputError(BadRequest):
    """A client's JSON document is malformed or refused.

    :ivar reason: what is wrong, briefly ("nested more than 64 levels deep").
    """

    def __init__(self, reason, field=None):
        self.reason = reason
        errors = [{"field": field, "problem": "is given twice"}] if field is not None else None
        super().__init__(f"Malformed JSON: {reason}", errors)


def set_max_depth(depth):
    """Set how deep a client's document may nest (``limits.max_json_depth``)."""
    global _max_depth
    if not 1 <= depth <= MAX_DEPTH_LIMIT:
        raise ValueError(f"the JSON depth limit must be 1 to {MAX_DEPTH_LIMIT}, not {depth}")
    _max_depth = depth


def orjson_may_read(data):
    """Whether orjson reads ``data`` (bytes the broker wrote itself) exactly as ``json.loads`` would."""
    return (data.count(b"[") + data.count(b"{") <= _MAX_CONTAINERS
            and _LONG_NUMBER.search(data) is None)


def decode_json(data):
    """Decode one JSON document a client sent.

    :param data: the document as bytes (UTF-8, an optional BOM is skipped).
    :return: the value.
    :raise JSONInputError: the document is malformed, too deep, repeats a key
        in an object or holds a lone surrogate; the message says which, and
        where when the parser knows.
    """
    objects = data.count(b"{")
    containers = objects + data.count(b"[")
    if _LONG_NUMBER.search(data) is not None:
        value = _decode_exactly(data)
        if containers > _max_depth:
            _check_depth(value)
        return value
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        if data.startswith(_BOM):
            return decode_json(data[3:])
        if error.msg.startswith("depth limit"):
            raise _too_deep() from None
        _decode_exactly(data)  # the stdlib's reason is the clearer one; raises if it has one
        raise JSONInputError(f"{error.msg} at line {error.lineno} column {error.colno}") from None
    if containers > _max_depth:  # else too few to nest that deep
        _check_depth(value)
    if objects and _may_repeat_a_key(data, value, containers):
        _decode_exactly(data)  # raises naming the repeated key, if there is one
    return value


# -- the checks -------------------------------------------------------------------


def _too_deep():
    COUNTERS["too_deep"] += 1
    return JSONInputError(f"nested more than {_max_depth} levels deep")


def _check_depth(value):
    """Raise if ``value``'s objects and arrays nest deeper than the limit."""
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > _max_depth:
            raise _too_deep()
        inner = []
        for container in level:
            for item in (container.values() if container.__class__ is dict else container):
                if item.__class__ is dict or item.__class__ is list:
                    inner.append(item)
        level = inner


def _may_repeat_a_key(data, value, containers):
    """Cheap: whether the document may hold a key twice in one object.

    Each key brings one ``:`` to the document, so one flat object with as many
    keys as colons repeats none.  Otherwise a colon inside a string shows up
    in the re-encoded value as well (also when written ``\\u003a``), so the
    counts differ only if a repeated key (or a string it carried) was dropped
    while decoding — or when the text ``\\u003a`` follows an escaped
    backslash, which only costs the precise check.
    """
    colons = data.count(b":")
    if colons < 2 or (containers == 1 and colons == len(value)):
        return False
    if data.find(b"\\u") >= 0:
        colons += data.count(b"\\u003a") + data.count(b"\\u003A")
    return colons != orjson.dumps(value).count(b":")


class _RepeatedKey(Exception):
    def __init__(self, key):
        super().__init__(key)
        self.key = key


def _object(pairs):
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return result


def _constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _finite(text):
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


# One decoder for every call (json.loads with keyword arguments builds a new one each time).
_EXACT = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant, parse_float=_finite)


def _decode_exactly(data):
    """The stdlib's reading: integers of any length, repeated keys named."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise JSONInputError(f"not valid UTF-8 (byte {error.start})") from None
    try:
        value = _EXACT.decode(text)
    except _RepeatedKey as repeated:
        COUNTERS["duplicate_keys"] += 1
        raise JSONInputError(f'the key "{repeated.key}" is given twice in one object',
                             field=repeated.key) from None
    except json.JSONDecodeError as error:
        raise JSONInputError(f"{error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:  # far deeper than any limit
        raise _too_deep() from None
    except ValueError as error:
        raise JSONInputError("a number is too long" if "digits" in str(error) else str(error)) from None
    if _SURROGATE_ESCAPE.search(data) is not None and _holds_lone_surrogate(value):
        raise JSONInputError("a string holds a lone surrogate (\\ud800-\\udfff)")
    return value


def _holds_lone_surrogate(value):
    # The stdlib pairs \\ud83d\\ude00 into one character: any surrogate left is alone.
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
