"""The guarded JSON decoder every client document goes through (broker.jsonfast)."""

import json

import pytest

from broker import jsonfast
from broker.errors import BadRequest
from broker.jsonfast import DEFAULT_MAX_DEPTH, JSONInputError, decode_json, set_max_depth

LONG = b"12345678901234567890123"  # past 64 bits: the stdlib reads the document


def nested(depth, inner=b""):
    return b"[" * depth + inner + b"]" * depth


@pytest.fixture
def depth_limit():
    """Restore the module's depth limit after a test changes it."""
    yield set_max_depth
    set_max_depth(DEFAULT_MAX_DEPTH)


def test_the_common_document_is_read_as_json_loads_reads_it():
    doc = {"text": "hi", "n": 2, "at": "10:00", "nested": [{"a": None, "b": [1.5, True]}]}
    assert decode_json(json.dumps(doc).encode()) == doc
    assert decode_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}  # a BOM is skipped
    assert decode_json(b'{"n": %s}' % LONG) == {"n": int(LONG)}  # exactly, not as a float


@pytest.mark.parametrize("inner", [b"", LONG], ids=["orjson", "stdlib"])
def test_nesting_up_to_the_limit_is_read_and_deeper_is_refused_and_counted(inner):
    assert decode_json(nested(DEFAULT_MAX_DEPTH, inner)) is not None
    before = jsonfast.COUNTERS["too_deep"]
    with pytest.raises(JSONInputError, match=f"^Malformed JSON: nested more than {DEFAULT_MAX_DEPTH} "
                                             "levels deep$"):
        decode_json(nested(DEFAULT_MAX_DEPTH + 1, inner))
    assert jsonfast.COUNTERS["too_deep"] == before + 1


@pytest.mark.parametrize("doc", [
    b"[" * 100000 + b"]" * 100000,
    b"[" * 100000 + LONG + b"]" * 100000,        # the stdlib's path: no RecursionError leaks out
    b'{"a":' * 100000 + b"1" + b"}" * 100000,
    b"[" * 100000,
    b"[" * 300 + b'{"a": 1, "a": 2}' + b"]" * 300,   # deeper than orjson writes: no dumps tried
])
def test_hostile_nesting_is_a_bad_request_not_a_recursion_error(doc):
    with pytest.raises(BadRequest, match="nested more than 64 levels deep"):
        decode_json(doc)


def test_brackets_inside_strings_do_not_count_as_nesting():
    doc = json.dumps(["[" * 200, {"k": "{" * 200}]).encode()
    assert decode_json(doc) == ["[" * 200, {"k": "{" * 200}]


def test_the_depth_limit_is_configurable_within_bounds(depth_limit):
    depth_limit(2)
    assert decode_json(b"[[1]]") == [[1]]
    with pytest.raises(JSONInputError, match="nested more than 2 levels deep"):
        decode_json(b'[{"a": []}]')
    with pytest.raises(ValueError):
        depth_limit(jsonfast.MAX_DEPTH_LIMIT + 1)


@pytest.mark.parametrize("doc, key", [
    (b'{"a": 1, "a": 2}', "a"),
    (b'{"a" :1,"a":2}', "a"),                        # whitespace before the colon counts the same
    (b'{"x": {"y": [{"k": 1, "k": 1}]}}', "k"),      # in a nested object, same value
    (b'{"t": "10:00", "t": "11:00"}', "t"),          # colons inside strings
    (b'{"a\\u003a": 1, "a\\u003a": 2}', "a:"),       # a colon written as an escape
    (b'{"s": "\\u003a", "a": 1, "a": 2}', "a"),
    (b'{"n": %s, "n": 1}' % LONG, "n"),              # on the stdlib's path
])
def test_a_repeated_key_is_refused_naming_it(doc, key):
    before = jsonfast.COUNTERS["duplicate_keys"]
    with pytest.raises(JSONInputError) as caught:
        decode_json(doc)
    assert caught.value.message == f'Malformed JSON: the key "{key}" is given twice in one object'
    assert caught.value.errors == [{"field": key, "problem": "is given twice"}]
    assert jsonfast.COUNTERS["duplicate_keys"] == before + 1


@pytest.mark.parametrize("doc", [
    b'{"url": "http://a:1/b", "at": "2024-05-01T10:00:00Z"}',   # colons in strings, no repeat
    b'{"a": "\\\\u003a", "b": 1}',                            # the text \u003a, not a colon
    b'[{"a": 1}, {"a": 2}]',                                  # the same key in two objects
])
def test_documents_without_a_repeated_key_are_read(doc):
    assert decode_json(doc) == json.loads(doc)


@pytest.mark.parametrize("doc", [
    b'{"a": "\\ud800"}', b'["\\udc00"]', b'["x\\ud83dy"]',
    b'{"n": %s, "a": "\\ud800"}' % LONG,                      # on the stdlib's path
])
def test_a_lone_surrogate_is_refused(doc):
    with pytest.raises(JSONInputError, match="lone surrogate"):
        decode_json(doc)


def test_a_surrogate_pair_and_an_escaped_backslash_are_fine():
    assert decode_json(b'["\\ud83d\\ude00", "\\\\ud800"]') == ["\U0001F600", "\\ud800"]
    assert decode_json(b'[%s, "\\ud83d\\ude00"]' % LONG) == [int(LONG), "\U0001F600"]


@pytest.mark.parametrize("doc, reason", [
    (b'{"a": "\xff"}', "not valid UTF-8 (byte 7)"),
    (b'{"a": 1e400}', "1e400 is out of range"),
    (b'[-1e999, %s]' % LONG, "-1e999 is out of range"),
    (b'{"a": NaN}', "NaN is not valid JSON"),
    (b'[Infinity]', "Infinity is not valid JSON"),
    (b'{"a": }', "Expecting value at line 1 column 7"),
    (b"", "Expecting value"),
    (b"[" + b"1" * 5000 + b"]", "a number is too long"),
])
def test_malformed_documents_say_why(doc, reason):
    with pytest.raises(JSONInputError) as caught:
        decode_json(doc)
    assert reason in caught.value.message
    assert isinstance(caught.value, BadRequest) and caught.value.status == 400
