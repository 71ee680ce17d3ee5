"""The schema DSL: value types, defaults, located errors and checked sections."""

import os
import textwrap

import pytest

from broker.config.loader import ConfigError, load_yaml, parse_yaml
from broker.config.schema import (NOTHING, Any, Bool, Choice, Duration, Endpoint, Field, Float, Int,
                                  ListOf, MapOf, Path, Schema, Section, Size, Str, Tagged, config_error)

HTTP = Schema("http channel", {
    "name": Field(Str(pattern=r"^[a-z][\w.\-]*$"), required=True),
    "type": Field(Str(), required=True),
    "path": Field(Str(pattern=r"^/", problem='must start with "/"'), required=True),
    "data_format": Field(Choice("json", "xml"), default="json"),
    "security": Field(Str(), default=None),
})
REGISTRY = {"http": HTTP}
LIMITS = Schema("limits", {
    "max_body_size": Field(Size(), default="1MiB"),
    "header_timeout": Field(Duration(), default=10.0),
    "threads": Field(Int(min=1, max=512), default=10),
    "mode": Field(Choice("reject", "drop"), default="reject"),
})
ROOT = Schema("config", {
    "name": Field(Str(), required=True),
    "limits": Field(LIMITS, default={}),
    "channels": Field(ListOf(Tagged("type", REGISTRY)), default=[]),
})


def _parse(text, file="c.yaml"):
    return parse_yaml(textwrap.dedent(text), file)


def _fails(type_, value):
    """The ConfigError checking ``value`` against ``type_`` raises."""
    with pytest.raises(ConfigError) as caught:
        type_.check(value)
    return caught.value


def _root_error(text):
    with pytest.raises(ConfigError) as caught:
        ROOT.check(_parse(text))
    return caught.value


# Value types: good and bad values.

@pytest.mark.parametrize("type_, value, expected", [
    (Str(), "abc", "abc"),
    (Str(pattern=r"^[a-z]+$"), "abc", "abc"),
    (Str(min_length=2), "ab", "ab"),
    (Str(choices=["a", "b"]), "b", "b"),
    (Int(), 0, 0),
    (Int(min=1, max=3), 3, 3),
    (Float(), 2, 2.0),
    (Float(min=0.5), 0.5, 0.5),
    (Bool(), False, False),
    (Size(), 512, 512),
    (Size(), "512KiB", 512 * 1024),
    (Size(), "1MiB", 1024 * 1024),
    (Size(), "10MB", 10_000_000),
    (Size(), "1.5 KiB", 1536),
    (Size(), "7B", 7),
    (Duration(), 3, 3.0),
    (Duration(), "500ms", 0.5),
    (Duration(), "10s", 10.0),
    (Duration(), "5m", 300.0),
    (Duration(), "1h30m", 5400.0),
    (Choice("reject", "drop"), "drop", "drop"),
    (Choice(1, 2), 2, 2),
    (ListOf(Int()), [1, 2], (1, 2)),
    (MapOf(Int()), {"a": 1}, {"a": 1}),
    (Endpoint(), "tcp:17010:interface=127.0.0.1", "tcp:17010:interface=127.0.0.1"),
    (Endpoint(), "tcp6:port=0", "tcp6:port=0"),
    (Endpoint(), "unix:/run/broker.sock:mode=600", "unix:/run/broker.sock:mode=600"),
    (Endpoint(), "ssl:443:privateKey=k.pem", "ssl:443:privateKey=k.pem"),
    (Any(), {"a": [1, {"b": None}]}, {"a": [1, {"b": None}]}),
])
def test_good_values(type_, value, expected):
    """Each type accepts its good values and converts them."""
    assert type_.check(value) == expected


@pytest.mark.parametrize("type_, value, problem", [
    (Str(), 12, "expected a string, got 12"),
    (Str(pattern=r"^[a-z]+$"), "A1", 'must match ^[a-z]+$, got "A1"'),
    (Str(pattern=r"^/", problem='must start with "/"'), "x", 'must start with "/"'),
    (Str(min_length=1), "", "must not be empty"),
    (Str(choices=["json", "xml"]), "jsno", 'expected "json" or "xml", got "jsno" (did you mean "json"?)'),
    (Int(), "abc", 'expected an integer, got "abc"'),
    (Int(), True, "expected an integer, got true"),
    (Int(), 1.5, "expected an integer, got 1.5"),
    (Int(min=1), 0, "must be at least 1, got 0"),
    (Int(max=3), 4, "must be at most 3, got 4"),
    (Float(), "x", 'expected a number, got "x"'),
    (Float(), float("nan"), "expected a number, got nan"),
    (Float(max=1), 2, "must be at most 1, got 2.0"),
    (Bool(), "true", 'expected true or false, got "true"'),
    (Bool(), 1, "expected true or false, got 1"),
    (Bool(), None, "expected true or false, got null"),
    (Size(), "ten", 'expected a size such as 512KiB or 10MB, got "ten"'),
    (Size(), -1, "must be at least 0 bytes, got -1 bytes"),
    (Size(), 1.5, "expected a size such as 512KiB or 10MB, got 1.5"),
    (Duration(), "soon", 'expected a duration such as 500ms, 10s or 5m, got "soon"'),
    (Duration(), -1, "must be at least 0.0s, got -1.0s"),
    (Duration(), True, "expected a duration such as 500ms, 10s or 5m, got true"),
    (Choice("reject", "drop"), "rejct", 'expected "reject" or "drop", got "rejct" (did you mean "reject"?)'),
    (Choice(1, 2), True, "expected 1 or 2, got true"),
    (ListOf(Int()), "x", 'expected a list, got "x"'),
    (ListOf(Int(), min_items=1), [], "needs at least 1 item, got 0"),
    (MapOf(Int()), [1], "expected a mapping, got a list"),
    (Endpoint(), "17010", 'expected an endpoint such as "tcp:17010:interface=127.0.0.1", got "17010"'),
    (Endpoint(), "tpc:80", 'unknown endpoint type "tpc" (did you mean "tcp"?); known: ssl, tcp, tcp6, unix'),
    (Endpoint(), "tcp:http", 'endpoint port must be a number from 0 to 65535, got "http"'),
    (Endpoint(), "tcp:70000", 'endpoint port must be a number from 0 to 65535, got "70000"'),
    (Endpoint(), "tcp:interface=::1", 'endpoint "tcp:interface=::1" has no port'),
    (Endpoint(), "unix:", 'endpoint "unix:" has no address'),
    (Path(), "", 'expected a path, got ""'),
])
def test_bad_values(type_, value, problem):
    """Each type rejects its bad values with a clear problem."""
    assert _fails(type_, value).problem == problem


def test_list_item_error_names_index():
    """A bad list item is reported with its index in the key path."""
    assert _fails(ListOf(Int()), [1, "x"]).key == "[1]"


def test_map_of_rejects_non_string_keys_and_is_read_only():
    """MapOf wants text keys and returns a mapping that cannot be changed."""
    assert _fails(MapOf(Int()), {1: 2}).problem == "expected a text key, got 1"
    result = MapOf(Int()).check({"a": 1})
    with pytest.raises(TypeError):
        result["a"] = 2


def test_any_returns_plain_copies():
    """Any hands back plain dicts and lists, not the loader's located ones."""
    result = Any().check(_parse("a: [1, {b: 2}]\n"))
    assert type(result) is dict and type(result["a"]) is list and type(result["a"][1]) is dict


# Schemas: defaults, unknown keys, required keys, located errors.

def test_defaults_are_filled_and_converted():
    """Absent keys get their defaults, checked like given values."""
    config = ROOT.check(_parse("name: b\n"))
    assert config.limits.max_body_size == 1024 * 1024
    assert config.limits.header_timeout == 10.0
    assert config.limits.mode == "reject"
    assert config.channels == ()


def test_null_value_takes_the_default():
    """A key written with no value (null) reads as its default."""
    assert ROOT.check(_parse("name: b\nlimits:\n")).limits.threads == 10


def test_optional_without_default_reads_none():
    """An optional field without a default reads as None."""
    section = Schema("s", {"a": Field(Int())}).check({})
    assert section.a is None and section.get("a", 5) is None


def test_unknown_key_with_suggestion():
    """An unknown key is reported at its line, suggesting a close known key."""
    error = _root_error("""\
        name: b
        limits:
          threads: 4
          max_body_sise: 1MiB
        """)
    assert str(error) == 'c.yaml:4: limits.max_body_sise: unknown key "max_body_sise" (did you mean "max_body_size"?)'


def test_unknown_key_without_close_match_has_no_suggestion():
    """No suggestion is made when nothing is close."""
    assert _root_error("name: b\nzzz: 1\n").problem == 'unknown key "zzz"'


def test_missing_required_key_is_reported_at_the_mapping():
    """A missing required key names the mapping that lacks it, at its line."""
    error = _root_error("""\
        name: b
        channels:
          - name: a
            type: http
        """)
    assert str(error) == 'c.yaml:3: channels[0]: missing required key "path"'


def test_nested_list_item_error_has_its_line():
    """An error deep in a list item names the item's index and the value's line."""
    error = _root_error("""\
        name: b
        channels:
          - name: a
            type: http
            path: /a
          - name: b
            type: http
            path: /b
            data_format: yaml
        """)
    assert (error.line, error.key) == (9, "channels[1].data_format")
    assert error.problem == 'expected "json" or "xml", got "yaml"'


def test_pattern_problem_message():
    """A Str pattern can carry its own problem text."""
    error = _root_error("name: b\nchannels:\n  - {name: a, type: http, path: no-slash}\n")
    assert str(error) == 'c.yaml:3: channels[0].path: must start with "/"'


def test_bad_default_is_reported_at_the_parent_mapping():
    """A default that fails its type is reported at the line of the mapping lacking the key."""
    schema = Schema("root", {"a": Field(Schema("a", {"n": Field(Int(), default="x")}), default={})})
    with pytest.raises(ConfigError) as caught:
        schema.check(_parse("# comment\na:\n  {}\n"))
    assert (caught.value.line, caught.value.key) == (2, "a.n")


def test_field_check_hook():
    """A Field's ``check`` callable reports its ValueError at the value's line and key."""
    def even(value):
        if value % 2:
            raise ValueError("must be even")
    schema = Schema("s", {"n": Field(Int(), check=even)})
    with pytest.raises(ConfigError) as caught:
        schema.check(_parse("n: 3\n"))
    assert str(caught.value) == "c.yaml:1: n: must be even"


def _needs_password(section):
    if section.type == "basic_auth" and not section.password:
        raise ValueError("password: is required when type is basic_auth")
    if section.type == "none" and section.password:
        raise ValueError("type none takes no password")


AUTH = Schema("auth", {"type": Field(Str()), "password": Field(Str(), default="")}, validate=_needs_password)


def test_validate_hook_reports_at_named_key():
    """A validate hook's ``key: problem`` is reported at that key (its default: the mapping's line)."""
    with pytest.raises(ConfigError) as caught:
        Schema("r", {"name": Field(Str()), "auth": Field(AUTH)}).check(
            _parse("name: x\nauth:\n  type: basic_auth\n"))
    assert str(caught.value) == "c.yaml:2: auth.password: is required when type is basic_auth"


def test_validate_hook_without_key_reports_the_mapping():
    """A validate hook's message without a key prefix is reported at the mapping's line."""
    with pytest.raises(ConfigError) as caught:
        AUTH.check(_parse("type: none\npassword: x\n"))
    assert str(caught.value) == "c.yaml:1: type none takes no password"


def test_schema_rejects_a_non_mapping():
    """A Schema wants a mapping."""
    assert _fails(LIMITS, [1]).problem == "expected a mapping, got a list"


def test_field_needs_a_type_instance():
    """Declaring a Field with a class instead of an instance fails at once."""
    with pytest.raises(TypeError):
        Field(Int)
    with pytest.raises(TypeError):
        Field(Int(), required=True, default=1)


# Tagged.

def test_tagged_picks_the_schema_by_type():
    """The tag value selects the registry's schema."""
    config = ROOT.check(_parse("name: b\nchannels:\n  - {name: a, type: http, path: /a}\n"))
    assert config.channels[0].type == "http" and config.channels[0].data_format == "json"


def test_tagged_unknown_type_names_known_types():
    """An unknown tag is reported at its line, naming the known types."""
    error = _root_error("name: b\nchannels:\n  - name: a\n    type: htp\n")
    assert str(error) == ('c.yaml:4: channels[0].type: unknown type "htp" (did you mean "http"?); '
                          "known types: http")


def test_tagged_missing_tag():
    """A mapping without the tag key is reported, naming the choices."""
    error = _root_error("name: b\nchannels:\n  - name: a\n")
    assert str(error) == 'c.yaml:3: channels[0]: missing required key "type" (one of: http)'


def test_registry_gains_entries_after_construction():
    """Types added to the registry after the Tagged is built are known."""
    registry = {}
    schema = Schema("r", {"items": Field(ListOf(Tagged("kind", registry)))})
    registry["amqp"] = Schema("amqp", {"queue": Field(Str(), required=True)})
    items = schema.check(_parse("items:\n  - {kind: amqp, queue: q}\n")).items
    assert items[0].queue == "q" and items[0].kind == "amqp"


# Path, substitution and checked sections.

def test_path_is_relative_to_the_config_file(tmp_path):
    """A relative Path is resolved against the directory of the file it came from."""
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "b.yaml"
    config.write_text("paths: [../plugins, /abs/x]\n")
    schema = Schema("s", {"paths": Field(ListOf(Path()))})
    paths = schema.check(load_yaml(config)).paths
    assert paths == (os.path.join(str(tmp_path), "plugins"), os.path.abspath("/abs/x"))


def test_path_default_is_relative_to_the_config_file(tmp_path):
    """A Path default is resolved against the config file's directory too."""
    config = tmp_path / "b.yaml"
    config.write_text("{}\n")
    schema = Schema("s", {"dir": Field(Path(), default="plugins")})
    assert schema.check(load_yaml(config)).dir == os.path.join(str(tmp_path), "plugins")


def test_typed_substitution_still_fits_a_string_field(monkeypatch):
    """A secret that looks like a number stays the text it was set to in a Str field."""
    monkeypatch.setenv("BROKER_T_PASSWORD", "007")
    section = AUTH.check(_parse("type: x\npassword: ${BROKER_T_PASSWORD}\n"))
    assert section.password == "007"


def test_typed_substitution_fills_int_and_bool(monkeypatch):
    """``${PORT:17010}`` and ``${DEBUG:false}`` check as an int and a bool."""
    monkeypatch.delenv("BROKER_T_NONE", raising=False)
    schema = Schema("s", {"port": Field(Int()), "debug": Field(Bool())})
    section = schema.check(_parse("port: ${BROKER_T_NONE:17010}\ndebug: ${BROKER_T_NONE:false}\n"))
    assert (section.port, section.debug) == (17010, False)


def test_section_is_read_only_with_attribute_and_item_access():
    """A checked section reads like an object and a mapping and cannot be changed."""
    limits = ROOT.check(_parse("name: b\nlimits: {threads: 4}\n")).limits
    assert isinstance(limits, Section)
    assert limits.threads == limits["threads"] == limits.get("threads") == 4
    assert limits.get("nope", "d") == "d" and "threads" in limits and "nope" not in limits
    assert list(limits) == ["max_body_size", "header_timeout", "threads", "mode"]
    with pytest.raises(AttributeError):
        limits.threads = 5
    with pytest.raises(AttributeError):
        limits.nope  # noqa: B018


def test_section_to_dict_exports_plain_values():
    """``to_dict`` gives plain dicts and lists for export."""
    config = ROOT.check(_parse("name: b\nchannels:\n  - {name: a, type: http, path: /a}\n"))
    exported = config.to_dict()
    assert exported["channels"] == [{"name": "a", "type": "http", "path": "/a", "data_format": "json",
                                     "security": None}]
    assert exported["limits"]["threads"] == 10


def test_section_keeps_file_and_lines():
    """A section knows its file and the lines of its keys."""
    config = ROOT.check(_parse("name: b\nchannels:\n  - name: a\n    type: http\n    path: /a\n"))
    channel = config.channels[0]
    assert (channel.file, channel.line, channel.line_of("path")) == ("c.yaml", 3, 5)


def test_a_field_named_like_a_helper_wins():
    """A key called ``file``, ``line`` or ``to_dict`` is the field's value, not the helper."""
    schema = Schema("s", {"file": Field(Str()), "line": Field(Int()), "to_dict": Field(Bool())})
    section = schema.check(_parse("file: a\nline: 7\nto_dict: true\n"))
    assert (section.file, section.line, section.to_dict) == ("a", 7, True)
    assert config_error(section, "line", "bad").line == 2


def test_config_error_for_a_checked_key():
    """``config_error`` reports a later problem at the key's line with the full path."""
    config = ROOT.check(_parse("""\
        name: b
        channels:
          - name: a
            type: http
            path: /a
        """))
    error = config_error(config.channels[0], "path", 'no such service "x"')
    assert str(error) == 'c.yaml:5: channels[0].path: no such service "x"'


def test_config_error_for_a_defaulted_key_uses_the_section_line():
    """A key that was not written is reported at the line of its section."""
    config = ROOT.check(_parse("name: b\nchannels:\n  - {name: a, type: http, path: /a}\n"))
    error = config_error(config.channels[0], "security", 'no security definition "s"')
    assert str(error) == 'c.yaml:3: channels[0].security: no security definition "s"'


def test_nothing_is_the_no_default_marker():
    """A Field without a default holds NOTHING."""
    assert Field(Int()).default is NOTHING and repr(NOTHING) == "NOTHING"
