"""The YAML loader: located trees, ``${ENV}`` substitution and one-line errors."""

import textwrap

import pytest

from broker.config.loader import ConfigError, Located, LocatedList, load_yaml, parse_yaml


def _write(tmp_path, text, name="broker.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _error(text, file="c.yaml"):
    with pytest.raises(ConfigError) as caught:
        parse_yaml(textwrap.dedent(text), file)
    return caught.value


def test_config_error_str_is_file_line_key_problem():
    """``str(ConfigError)`` is exactly ``file:line: key: problem``."""
    error = ConfigError('must start with "/"', "etc/broker.yaml", 12, "channels[2].path")
    assert str(error) == 'etc/broker.yaml:12: channels[2].path: must start with "/"'
    assert (error.file, error.line, error.key, error.problem) == (
        "etc/broker.yaml", 12, "channels[2].path", 'must start with "/"')


def test_config_error_leaves_out_unknown_parts():
    """Parts that are not known are left out of the line."""
    assert str(ConfigError("--listen: bad endpoint")) == "--listen: bad endpoint"
    assert str(ConfigError("no such file", "x.yaml")) == "x.yaml: no such file"
    assert str(ConfigError("bad", "x.yaml", 3)) == "x.yaml:3: bad"


def test_mappings_and_lists_remember_file_and_lines(tmp_path):
    """Every mapping and list knows its file and the line of each key or item."""
    path = _write(tmp_path, """\
        name: b
        limits:
          threads: 4
        channels:
          - name: a
          - name: b
            path: /b
        """)
    tree = load_yaml(path)
    assert isinstance(tree, Located) and isinstance(tree["channels"], LocatedList)
    assert tree.file == str(path)
    assert tree.line_of("name") == 1 and tree.line_of("channels") == 4
    assert tree["limits"].line_of("threads") == 3
    assert tree["channels"].line_of(1) == 6
    assert tree["channels"][1].line_of("path") == 7
    assert tree == {"name": "b", "limits": {"threads": 4}, "channels": [{"name": "a"}, {"name": "b", "path": "/b"}]}


def test_line_of_an_unknown_key_is_the_mapping_line():
    """Asking for a key that was not written gives the mapping's own line."""
    tree = parse_yaml("a: 1\nb:\n  c: 2\n")
    assert tree["b"].line_of("missing") == 3


def test_whole_substitution_is_typed(monkeypatch):
    """An unquoted value that is exactly ``${...}`` is typed as YAML would type it."""
    monkeypatch.setenv("BROKER_T_PORT", "8080")
    monkeypatch.delenv("BROKER_T_DEBUG", raising=False)
    tree = parse_yaml("port: ${BROKER_T_PORT}\ndefault_port: ${BROKER_T_NONE:17010}\n"
                      "debug: ${BROKER_T_DEBUG:false}\nratio: ${BROKER_T_NONE:0.5}\n")
    assert tree == {"port": 8080, "default_port": 17010, "debug": False, "ratio": 0.5}
    assert tree.text_of("port") == "8080"


def test_embedded_substitution_stays_text(monkeypatch):
    """A reference inside a longer string is replaced as text; several per string work."""
    monkeypatch.setenv("BROKER_T_HOST", "example.com")
    monkeypatch.setenv("BROKER_T_PORT", "8080")
    tree = parse_yaml("url: http://${BROKER_T_HOST}:${BROKER_T_PORT}/x\n")
    assert tree["url"] == "http://example.com:8080/x"


def test_quoted_substitution_stays_text(monkeypatch):
    """Quoting a whole reference keeps the result a string."""
    monkeypatch.setenv("BROKER_T_PORT", "8080")
    assert parse_yaml('port: "${BROKER_T_PORT}"\n')["port"] == "8080"


def test_default_may_contain_colons(monkeypatch):
    """Only the first colon separates the variable from its default."""
    monkeypatch.delenv("BROKER_T_LISTEN", raising=False)
    tree = parse_yaml("listen: ${BROKER_T_LISTEN:tcp:17010:interface=127.0.0.1}\n")
    assert tree["listen"] == "tcp:17010:interface=127.0.0.1"


def test_empty_default_is_empty_string(monkeypatch):
    """``${VAR:}`` with VAR unset is the empty string, not null."""
    monkeypatch.delenv("BROKER_T_SECRET", raising=False)
    assert parse_yaml("password: ${BROKER_T_SECRET:}\n")["password"] == ""


def test_set_variable_wins_over_default(monkeypatch):
    """A set variable, even an empty one, replaces the default."""
    monkeypatch.setenv("BROKER_T_SECRET", "")
    assert parse_yaml("password: ${BROKER_T_SECRET:dflt}\n")["password"] == ""


def test_substitution_in_list_items(monkeypatch):
    """Items of a list are substituted and typed like mapping values."""
    monkeypatch.setenv("BROKER_T_N", "3")
    tree = parse_yaml("items:\n  - ${BROKER_T_N}\n  - a${BROKER_T_N}\n")
    assert tree["items"] == [3, "a3"]
    assert tree["items"].text_of(0) == "3"


def test_missing_variable_names_file_line_key_and_variable(monkeypatch):
    """``${VAR}`` with VAR unset and no default is an error at its line and key."""
    monkeypatch.delenv("BROKER_T_UNSET", raising=False)
    error = _error("""\
        name: x
        channels:
          - name: a
            path: /${BROKER_T_UNSET}
        """)
    assert (error.file, error.line, error.key) == ("c.yaml", 4, "channels[0].path")
    assert "BROKER_T_UNSET" in error.problem
    assert str(error).startswith("c.yaml:4: channels[0].path: environment variable BROKER_T_UNSET")


def test_dollar_escape_is_a_literal_reference(monkeypatch):
    """``$${`` writes a literal ``${`` and is not substituted."""
    monkeypatch.setenv("BROKER_T_X", "no")
    tree = parse_yaml("a: $${BROKER_T_X}\nb: cost $5 and $${x} ${BROKER_T_X}\n")
    assert tree == {"a": "${BROKER_T_X}", "b": "cost $5 and ${x} no"}


def test_unclosed_reference_is_an_error():
    """A ``${`` without its ``}`` is reported rather than kept silently."""
    error = _error("a: x${OOPS\n")
    assert (error.line, error.key) == (1, "a") and "closing" in error.problem


def test_bad_variable_name_is_an_error():
    """A reference whose name is not a variable name is reported."""
    assert "bad variable name" in _error("a: ${1X}\n").problem


def test_keys_are_not_substituted(monkeypatch):
    """Keys are taken as written."""
    monkeypatch.setenv("BROKER_T_K", "k")
    assert list(parse_yaml("${BROKER_T_K}: 1\n")) == ["${BROKER_T_K}"]


def test_yaml_1_2_scalars():
    """Only true/false are booleans; no octal, sexagesimal or date surprises."""
    tree = parse_yaml("a: yes\nb: NO\nc: on\nd: True\ne: 010\nf: 1:30\ng: 2024-01-01\nh: 0x1f\ni: 1e3\nj: ~\n")
    assert tree == {"a": "yes", "b": "NO", "c": "on", "d": True, "e": 10, "f": "1:30",
                    "g": "2024-01-01", "h": 31, "i": 1000.0, "j": None}


def test_yaml_syntax_error_is_one_line_with_file_and_line(tmp_path):
    """A syntax error names the file and the line, with no traceback text."""
    path = _write(tmp_path, "name: x\nlimits:\n  threads: 4\n bad: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:4: ")
    assert "\n" not in message and "Traceback" not in message
    assert caught.value.line == 4


def test_duplicate_key_is_an_error():
    """A key written twice is reported at its second line, naming the first."""
    error = _error("a: 1\nb: 2\na: 3\n")
    assert (error.line, error.key) == (3, "a") and "line 1" in error.problem


def test_missing_file(tmp_path):
    """A file that does not exist is a ConfigError naming it."""
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    assert str(caught.value) == f"{path}: no such file"


def test_file_path_is_shown_as_given(tmp_path, monkeypatch):
    """A relative path stays relative in messages."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "b.yaml").write_text("a: [1\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml("etc/b.yaml")
    assert str(caught.value).startswith("etc/b.yaml:")


def test_empty_file_is_empty_mapping(tmp_path):
    """An empty file, or one with only comments, is an empty mapping."""
    assert load_yaml(_write(tmp_path, "")) == {}
    assert load_yaml(_write(tmp_path, "# nothing yet\n", "c.yaml")) == {}


def test_top_level_must_be_a_mapping():
    """A list or scalar at the top level is an error."""
    error = _error("- a\n- b\n")
    assert error.line == 1 and "mapping" in error.problem


def test_not_utf8_is_an_error(tmp_path):
    """Bytes that are not UTF-8 are reported with their line."""
    path = tmp_path / "b.yaml"
    path.write_bytes(b"a: 1\nb: \xff\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    assert caught.value.line == 2 and "UTF-8" in caught.value.problem


def test_recursive_alias_is_an_error():
    """An alias to its own containing collection is reported, not recursed into forever."""
    assert "alias" in _error("a: &x [1, *x]\n").problem


def test_anchors_and_merge_keys_work():
    """Anchors, aliases and ``<<`` merges load as in plain YAML."""
    tree = parse_yaml("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n")
    assert tree["c"] == {"x": 1, "y": 3}


def test_absurd_nesting_is_an_error():
    """Nesting deeper than Python can recurse is one ConfigError, not a RecursionError.

    PyYAML 6.0.4 refuses it itself ("exceeded maximum nesting depth"); older
    releases hit our own guard ("nested too deeply").
    """
    problem = _error("a: " + "[" * 5000 + "]" * 5000 + "\n").problem
    assert "nested too deeply" in problem or "maximum nesting depth" in problem


def test_a_value_remembers_the_variables_it_was_read_from(monkeypatch):
    """``variables_of(key)`` names the ``${NAME}`` a value came from, so a message can say
    which variable to set; a checked section keeps them."""
    from broker.config.schema import Field, Schema, Str
    monkeypatch.delenv("BROKER_TEST_SECRET", raising=False)
    tree = parse_yaml(textwrap.dedent("""\
        password: ${BROKER_TEST_SECRET:}
        url: ${BROKER_TEST_HOST:localhost}:${BROKER_TEST_PORT:1}
        literal: $${NOT_A_VARIABLE}
        plain: text
        """))
    assert tree.variables_of("password") == ("BROKER_TEST_SECRET",)
    assert tree.variables_of("url") == ("BROKER_TEST_HOST", "BROKER_TEST_PORT")
    assert tree.variables_of("literal") == () and tree.variables_of("plain") == ()
    section = Schema("s", {k: Field(Str()) for k in ("password", "url", "literal", "plain")}).check(tree)
    assert section.password == "" and section.variables_of("password") == ("BROKER_TEST_SECRET",)
    assert section.variables_of("plain") == ()
