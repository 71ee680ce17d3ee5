"""SimpleIO elements, naming conventions and compiled declarations."""

import datetime as dt
import decimal
import uuid

import pytest

from broker.errors import ServiceError, ValidationError
from broker.simpleio import (
    NOT_GIVEN, UUID, AsIs, Bool, Boolean, Date, DateTime, Decimal, DeclarationError, Dict, Float,
    Int, Integer, List, Opaque, OutputError, SimpleIODeclaration, Text, compile_simpleio,
    elem_from_name)


def _sio(service_name="t.svc", undeclared_input="reject", **attrs):
    """Compile a SimpleIO class built from ``attrs``."""
    return compile_simpleio(type("SimpleIO", (), attrs), service_name, undeclared_input)


def _problems(callable_, *args):
    with pytest.raises(ValidationError) as caught:
        callable_(*args)
    return {e["field"]: e["problem"] for e in caught.value.errors}


# -- elements: good and bad input ---------------------------------------------------


@pytest.mark.parametrize("value, expected", [("abc", "abc"), (12, "12"), (1.5, "1.5"),
                                             (decimal.Decimal("2.50"), "2.50")])
def test_text_accepts_strings_and_numbers(value, expected):
    """Text keeps strings and converts numbers to strings."""
    assert Text("t").parse(value) == expected


@pytest.mark.parametrize("value", [{"a": 1}, ["a"]])
def test_text_refuses_containers(value):
    """Text refuses objects and lists."""
    with pytest.raises(ValueError, match="expected text"):
        Text("t").parse(value)


@pytest.mark.parametrize("value, expected", [(5, 5), ("42", 42), (" -7 ", -7), (3.0, 3)])
def test_int_accepts_integers(value, expected):
    """Int takes ints, integer strings and integral floats."""
    assert Int("n").parse(value) == expected


@pytest.mark.parametrize("value", [True, False, 2.5, "2.5", "abc", "", "1_000", None, [1]])
def test_int_refuses_non_integers(value):
    """Int refuses bools, fractions and non-numeric text."""
    with pytest.raises(ValueError, match="^expected an integer$"):
        Int("n").parse(value)


@pytest.mark.parametrize("value, problem", [
    (2 ** 63, "must be at most 9223372036854775807"),
    ("9223372036854775808", "must be at most 9223372036854775807"),
    ("1" * 400, "must be at most 9223372036854775807"),
    ("1" * 5000, "must be at most 9223372036854775807"),      # longer than int() converts
    ("-" + "1" * 5000, "must be at least -9223372036854775808"),
    (1e300, "must be at most 9223372036854775807"),
    (decimal.Decimal("1e999999"), "must be at most 9223372036854775807"),
    (-2 ** 63 - 1, "must be at least -9223372036854775808"),
], ids=["2**63", "2**63 text", "400 digits", "5000 digits", "-5000 digits", "1e300", "Decimal 1e999999",
        "-2**63-1"])
def test_int_is_64_bit_by_default(value, problem):
    """Int refuses what a signed 64-bit integer cannot hold, saying the bound, without
    converting a huge number first."""
    with pytest.raises(ValueError, match=f"^{problem}$"):
        Int("n").parse(value)


def test_int_range_edges_and_leading_zeros():
    """The 64-bit bounds themselves are in; leading zeros do not count as digits."""
    assert Int("n").parse(2 ** 63 - 1) == 2 ** 63 - 1
    assert Int("n").parse(str(-2 ** 63)) == -2 ** 63
    assert Int("n").parse("0" * 5000 + "7") == 7
    assert Int("n").parse("-0") == 0


def test_int_declared_range():
    """min/max per element: out of range is a problem naming the bound; the schema shows it."""
    repeat = Int("repeat", default=1, min=0, max=100)
    assert repeat.parse("100") == 100 and repeat.parse(0) == 0
    with pytest.raises(ValueError, match="^must be at most 100$"):
        repeat.parse(101)
    with pytest.raises(ValueError, match="^must be at least 0$"):
        repeat.parse("-1")
    assert repeat.json_schema() == {"type": "integer", "default": 1, "minimum": 0, "maximum": 100}
    assert repr(repeat) == "Int('repeat', default=1, min=0, max=100)"
    assert repeat.renamed("times").max == 100
    with pytest.raises(TypeError, match="min <= max"):
        Int("n", min=5, max=1)


def test_text_declared_lengths():
    """min_length/max_length per element, counted in characters; the schema shows them."""
    name = Text("name", min_length=1, max_length=3)
    assert name.parse("abc") == "abc" and name.parse(12) == "12" and name.parse("ééé") == "ééé"
    with pytest.raises(ValueError, match="^must be at most 3 characters long$"):
        name.parse("abcd")
    with pytest.raises(ValueError, match="^must be at least 1 character long$"):
        name.parse("")
    assert name.json_schema() == {"type": "string", "minLength": 1, "maxLength": 3}
    assert repr(name) == "Text('name', min_length=1, max_length=3)"
    assert name.renamed("n").max_length == 3
    assert Text("t").parse("x" * 100_000) == "x" * 100_000
    with pytest.raises(TypeError, match="min_length <= max_length"):
        Text("t", min_length=5, max_length=1)
    with pytest.raises(ValidationError, match="name: must be at most 3 characters long"):
        _sio(input_required=(name,)).parse_input({"name": "abcd"})


def test_input_schema_of_a_json_body():
    """In a JSON body an optional field may be null (taken as missing) and a text a number or a
    boolean (taken as its text), as the server takes them; required fields are not nullable."""
    sio = _sio(input_required=(Text("text", max_length=5), Int("n", max=9)),
               input_optional=(Int("repeat", default=1), "note", AsIs("data"), Decimal("d")))
    properties = sio.input_schema(json_body=True)["properties"]
    assert properties["text"] == {"type": ["string", "number", "boolean"], "maxLength": 5}
    assert properties["n"]["type"] == "integer"
    assert properties["repeat"]["type"] == ["integer", "null"]
    assert properties["note"] == {"type": ["string", "number", "boolean", "null"]}
    assert properties["data"] == {}
    assert properties["d"]["type"] == ["string", "number", "null"]
    assert sio.parse_input({"text": False, "n": 1, "repeat": None, "note": 5, "d": 1.5}) == {
        "text": "false", "n": 1, "repeat": 1, "note": "5", "data": None, "d": decimal.Decimal("1.5")}
    assert sio.input_schema()["properties"]["repeat"]["type"] == "integer"


def test_int_range_is_a_validation_error_naming_the_field():
    """Through a declaration the bound is a per-field problem; output obeys it too."""
    sio = _sio(input_required=(Int("repeat", max=10),), output_required=(Int("n", min=0),))
    with pytest.raises(ValidationError) as caught:
        sio.parse_input({"repeat": 10 ** 400})
    assert caught.value.errors == [{"field": "repeat", "problem": "must be at most 10"}]
    with pytest.raises(ServiceError):
        sio.render_output({"n": -1})


def test_named_integers_get_the_64_bit_range():
    """Zato's *_id / *_count / ... conventions make 64-bit Ints."""
    with pytest.raises(ValidationError, match="cust_id: must be at most"):
        _sio(input_required=("cust_id",)).parse_input({"cust_id": "9" * 30})


@pytest.mark.parametrize("value", [10 ** 400, "1e999", -(10 ** 400)], ids=["10**400", "1e999", "-10**400"])
def test_float_out_of_range(value):
    """Float refuses numbers past a double's range (a huge int used to raise OverflowError)."""
    with pytest.raises(ValueError, match="out of range for a floating-point number"):
        Float("f").parse(value)


@pytest.mark.parametrize("value", ["1e9999999999999999999", "1e1000000", "1e-1000000"])
def test_decimal_exponent_out_of_range(value):
    """Decimal refuses exponents decimal arithmetic cannot work with (one used to raise
    InvalidOperation); the default context's edges are in."""
    with pytest.raises(ValueError, match="out of range"):
        Decimal("d").parse(value)
    assert Decimal("d").parse("9.9e999999") == decimal.Decimal("9.9e999999")
    assert Decimal("d").parse("1e-999999") == decimal.Decimal("1e-999999")


@pytest.mark.parametrize("value, expected", [(1.5, 1.5), (2, 2.0), ("3.25", 3.25), ("1e3", 1000.0)])
def test_float_accepts_numbers(value, expected):
    """Float takes numbers and numeric strings."""
    assert Float("f").parse(value) == expected


@pytest.mark.parametrize("value", [True, "nan", "inf", float("nan"), "x", {}])
def test_float_refuses_non_finite_and_text(value):
    """Float refuses bools, NaN/infinity and non-numeric text."""
    with pytest.raises(ValueError, match="expected a number"):
        Float("f").parse(value)


@pytest.mark.parametrize("value", ["true", "YES", "On", "y", "T", "1", True, 1])
def test_bool_true_spellings(value):
    """Bool accepts Zato's true spellings in any case, and real bools."""
    assert Bool("is_x").parse(value) is True


@pytest.mark.parametrize("value", ["false", "No", "OFF", "n", "f", "0", False, 0])
def test_bool_false_spellings(value):
    """Bool accepts Zato's false spellings in any case, and real bools."""
    assert Bool("is_x").parse(value) is False


@pytest.mark.parametrize("value", ["maybe", "", 2, 1.0, None, []])
def test_bool_refuses_other_values(value):
    """Bool refuses anything else with a hint of what it wants."""
    with pytest.raises(ValueError, match=r"^expected a boolean \(true/false\)$"):
        Bool("is_x").parse(value)


def test_decimal_parses_exactly_and_renders_as_string():
    """Decimal keeps every digit and renders as a string."""
    elem = Decimal("amount")
    assert elem.parse("357.19") == decimal.Decimal("357.19")
    assert elem.parse(0.1) == decimal.Decimal("0.1")
    assert elem.render(decimal.Decimal("1.10")) == "1.10"


@pytest.mark.parametrize("value", ["abc", True, "NaN", [1]])
def test_decimal_refuses_non_numbers(value):
    """Decimal refuses text, bools, NaN and containers."""
    with pytest.raises(ValueError, match="expected a decimal number"):
        Decimal("amount").parse(value)


def test_date_parses_iso_and_renders_iso():
    """Date takes YYYY-MM-DD (or a date) and renders ISO 8601."""
    elem = Date("as_of")
    assert elem.parse("2024-02-29") == dt.date(2024, 2, 29)
    assert elem.render(dt.date(2024, 1, 2)) == "2024-01-02"
    assert elem.render(dt.datetime(2024, 1, 2, 3, 4)) == "2024-01-02"


@pytest.mark.parametrize("value", ["2023-02-29", "02/01/2024", "20240101", 20240101, ""])
def test_date_refuses_other_forms(value):
    """Date refuses impossible dates and other layouts."""
    with pytest.raises(ValueError, match="^expected a date YYYY-MM-DD$"):
        Date("as_of").parse(value)


def test_datetime_parses_iso_with_zone():
    """DateTime takes ISO 8601 with offset or Z and renders ISO 8601."""
    elem = DateTime("at")
    parsed = elem.parse("2024-05-01T10:00:00Z")
    assert parsed == dt.datetime(2024, 5, 1, 10, tzinfo=dt.timezone.utc)
    assert elem.render(parsed) == "2024-05-01T10:00:00+00:00"
    assert elem.render(dt.datetime(2024, 5, 1, 10, 30)) == "2024-05-01T10:30:00"


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01T00:00:00", 5, ""])
def test_datetime_refuses_garbage(value):
    """DateTime refuses non-ISO text and numbers."""
    with pytest.raises(ValueError, match="expected a date-time"):
        DateTime("at").parse(value)


def test_uuid_parses_and_renders_canonical():
    """UUID takes any standard spelling and renders the canonical string."""
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert UUID("ref").parse("12345678123456781234567812345678") == value
    assert UUID("ref").render(value) == "12345678-1234-5678-1234-567812345678"


def test_uuid_refuses_garbage():
    """UUID refuses text that is not a UUID."""
    with pytest.raises(ValueError, match="^expected a UUID$"):
        UUID("ref").parse("not-a-uuid")


def test_list_accepts_lists_and_single_text_values():
    """List takes a list; a lone form/query value becomes a one-item list."""
    assert List("tags").parse(["a", "b"]) == ["a", "b"]
    assert List("tags").parse(("a",)) == ["a"]
    assert List("tags").parse("a") == ["a"]


@pytest.mark.parametrize("value", [{"a": 1}, 5, True])
def test_list_refuses_other_values(value):
    """List refuses objects and scalars other than text."""
    with pytest.raises(ValueError, match="^expected a list$"):
        List("tags").parse(value)


def test_dict_accepts_mappings_only():
    """Dict takes a mapping and refuses anything else."""
    assert Dict("meta").parse({"a": 1}) == {"a": 1}
    with pytest.raises(ValueError, match="expected an object"):
        Dict("meta").parse(["a"])


def test_asis_passes_values_unchanged():
    """AsIs parses and renders without touching the value."""
    value = {"nested": [1, "2"]}
    assert AsIs("user_id").parse(value) is value
    assert AsIs("user_id").render("7") == "7"


def test_list_and_dict_render_nested_values_jsonable():
    """List/Dict render nested Decimal, dates and UUIDs JSON-able."""
    rendered = Dict("d").render({"amount": decimal.Decimal("1.5"), "on": [dt.date(2024, 1, 1)]})
    assert rendered == {"amount": "1.5", "on": ["2024-01-01"]}
    assert List("l").render((uuid.UUID(int=1),)) == ["00000000-0000-0000-0000-000000000001"]


def test_aliases_are_the_same_types():
    """Integer, Boolean and Opaque are Zato's aliases."""
    assert (Integer, Boolean, Opaque) == (Int, Bool, AsIs)


def test_element_json_schemas():
    """Each element maps to a JSON Schema 2020-12 fragment, with its default."""
    assert Text("a").json_schema() == {"type": "string"}
    assert Int("a", default=1).json_schema() == {"type": "integer", "default": 1,
                                                 "minimum": -2 ** 63, "maximum": 2 ** 63 - 1}
    assert Float("a").json_schema() == {"type": "number"}
    assert Bool("a").json_schema() == {"type": "boolean"}
    assert Decimal("a").json_schema() == {"type": "string", "format": "decimal"}
    assert Date("a").json_schema() == {"type": "string", "format": "date"}
    assert DateTime("a").json_schema() == {"type": "string", "format": "date-time"}
    assert UUID("a").json_schema() == {"type": "string", "format": "uuid"}
    assert List("a").json_schema() == {"type": "array"}
    assert Dict("a").json_schema() == {"type": "object"}
    assert AsIs("a").json_schema() == {}


def test_element_needs_a_name():
    """An element without a string name is a programming error."""
    with pytest.raises(TypeError):
        Int("")


# -- naming conventions ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["by_date", "has_x", "is_active", "may_y", "needs_z", "should_w"])
def test_bool_prefixes(name):
    """Zato's boolean prefixes make a Bool."""
    assert type(elem_from_name(name)) is Bool


@pytest.mark.parametrize("name", ["id", "user_count", "cust_id", "page_size", "page_size_min",
                                  "page_size_max", "conn_timeout"])
def test_int_names(name):
    """``id`` and Zato's integer suffixes make an Int."""
    assert type(elem_from_name(name)) is Int


@pytest.mark.parametrize("name", ["name", "as_of_date", "created_at", "identity", "is"])
def test_other_names_are_text(name):
    """Everything else, dates included, is Text."""
    assert type(elem_from_name(name)) is Text


def test_conventions_apply_in_declarations():
    """A plain string input is converted by its name's convention."""
    sio = _sio(input_required=("cust_id", "is_active", "name"))
    assert sio.parse_input({"cust_id": "12", "is_active": "yes", "name": 5}) == {
        "cust_id": 12, "is_active": True, "name": "5"}


def test_asis_turns_conventions_off():
    """AsIs('user_id') keeps a non-integer value untouched."""
    sio = _sio(input_required=(AsIs("user_id"),))
    assert sio.parse_input({"user_id": "abc-1"}) == {"user_id": "abc-1"}


def test_explicit_type_wins_over_convention():
    """Text('cust_id') stays text though the name says Int."""
    sio = _sio(input_required=(Text("cust_id"),))
    assert sio.parse_input({"cust_id": "007"}) == {"cust_id": "007"}


# -- compile_simpleio -----------------------------------------------------------------


def test_no_simpleio_compiles_to_none():
    """A service without SimpleIO has no declaration."""
    assert compile_simpleio(None, "t.raw") is None


def test_compiled_once_per_class():
    """Compiling the same class twice returns the cached declaration."""
    cls = type("SimpleIO", (), {"input_required": ("a",)})
    first = compile_simpleio(cls, "t.svc")
    assert isinstance(first, SimpleIODeclaration)
    assert compile_simpleio(cls, "t.svc") is first


def test_single_string_declares_one_name():
    """A bare string is one name, not a sequence of letters."""
    sio = _sio(input_required="text", output_optional="last_tx_id")
    assert sio.input_names == ("text",)
    assert sio.output_names == ("last_tx_id",)


def test_has_input_and_output():
    """has_input/has_output say whether anything is declared."""
    sio = _sio(output_required=("a",))
    assert (sio.has_input, sio.has_output) == (False, True)


def test_shorthand_marks_optional_with_dash():
    """Zato 3.2's ``input = ('a', '-b')``: the dash makes an input optional."""
    sio = _sio(input=("text", "-page_size", Int("-limit", default=10)), output=("a", "-b"))
    assert sio.input_names == ("text", "page_size", "limit")
    assert [required for _, required in sio.inputs] == [True, False, False]
    assert sio.parse_input({"text": "x"}) == {"text": "x", "page_size": None, "limit": 10}
    assert [required for _, required in sio.outputs] == [True, False]


def test_duplicate_names_are_refused():
    """A name declared twice is a deploy-time error."""
    with pytest.raises(DeclarationError, match="declared twice"):
        _sio(input_required=("a",), input_optional=("a",))


def test_unknown_attribute_is_refused():
    """A typo such as ``input_requried`` is caught at deploy time."""
    with pytest.raises(DeclarationError, match="input_requried"):
        _sio(input_requried=("a",))


def test_bad_undeclared_policy_is_refused():
    """undeclared_input must be reject or drop."""
    with pytest.raises(DeclarationError, match="undeclared_input"):
        _sio(input_required=("a",), undeclared_input="ignore")


def test_dash_outside_shorthand_is_refused():
    """The '-' prefix only means optional in ``input``/``output``."""
    with pytest.raises(DeclarationError, match="only allowed"):
        _sio(input_required=("-a",))


# -- parse_input ----------------------------------------------------------------------


def test_missing_required_input():
    """A missing required input is reported as required."""
    assert _problems(_sio(input_required=("text",)).parse_input, {}) == {"text": "is required"}


def test_none_data_means_no_input():
    """None is an empty input: required fields are reported."""
    assert _problems(_sio(input_required=("text",)).parse_input, None) == {"text": "is required"}


def test_every_problem_is_collected():
    """Missing, malformed and undeclared inputs are all named in one error."""
    sio = _sio(input_required=("text", "cust_id"), input_optional=(Date("as_of"),))
    problems = _problems(sio.parse_input, {"cust_id": "x", "as_of": "soon", "extra": 1})
    assert problems == {"text": "is required", "cust_id": "expected an integer",
                        "as_of": "expected a date YYYY-MM-DD", "extra": "is not a declared input"}


def test_validation_error_message_names_fields():
    """The ValidationError message lists each field and problem."""
    with pytest.raises(ValidationError, match="Invalid input: cust_id: expected an integer"):
        _sio(input_required=("cust_id",)).parse_input({"cust_id": "x"})


def test_non_object_input_is_refused():
    """A JSON list or string as input is an error on the body."""
    sio = _sio(input_required=("text",))
    assert _problems(sio.parse_input, ["text"]) == {"(body)": "expected an object"}
    assert _problems(sio.parse_input, "text") == {"(body)": "expected an object"}


def test_undeclared_input_dropped_when_asked():
    """With policy drop, undeclared keys silently disappear."""
    sio = _sio(input_required=("text",), undeclared_input="drop")
    assert sio.parse_input({"text": "a", "extra": 1}) == {"text": "a"}


def test_declaration_policy_overrides_default():
    """The SimpleIO class's own undeclared_input wins over the compile argument."""
    cls = type("SimpleIO", (), {"input_required": ("text",), "undeclared_input": "drop"})
    sio = compile_simpleio(cls, "t.svc", undeclared_input="reject")
    assert sio.undeclared_input == "drop"
    assert sio.parse_input({"text": "a", "extra": 1}) == {"text": "a"}


def test_optional_input_defaults():
    """Element default, then default_input_value/default_value, then None."""
    assert _sio(input_optional=(Int("page", default=1), "q")).parse_input({}) == {
        "page": 1, "q": None}
    assert _sio(input_optional=("q",), default_value="").parse_input({}) == {"q": ""}
    assert _sio(input_optional=("q",), default_value="", default_input_value="-").parse_input(
        {}) == {"q": "-"}


def test_null_optional_input_gets_default():
    """An explicit null counts as not given."""
    assert _sio(input_optional=(Int("page", default=1),)).parse_input({"page": None}) == {"page": 1}


def test_mutable_default_is_not_shared():
    """Each request gets its own copy of a list default."""
    sio = _sio(input_optional=(List("tags", default=[]),))
    sio.parse_input({})["tags"].append("x")
    assert sio.parse_input({}) == {"tags": []}


def test_default_not_given_is_falsy_sentinel():
    """NOT_GIVEN marks no default and is distinct from None."""
    assert not NOT_GIVEN and NOT_GIVEN is not None
    assert Int("a").has_default is False and Int("a", default=None).has_default is True


# -- render_output --------------------------------------------------------------------


def test_only_declared_output_leaves():
    """Undeclared output keys are dropped."""
    sio = _sio(output_required=("text",))
    assert sio.render_output({"text": "hi", "secret": "x"}) == {"text": "hi"}


def test_output_from_object_attributes():
    """An object with attributes works as the payload."""
    class Customer:
        name = "Cust-1"
        cust_id = "7"
    assert _sio(output_required=("name", "cust_id")).render_output(Customer()) == {
        "name": "Cust-1", "cust_id": 7}


def test_output_values_are_rendered():
    """Output values go through their element: Decimal → str, dates → ISO."""
    sio = _sio(output_required=(Decimal("balance"), Date("as_of"), Bool("is_ok")))
    out = sio.render_output({"balance": decimal.Decimal("357.19"), "as_of": dt.date(2024, 1, 2),
                             "is_ok": "yes"})
    assert out == {"balance": "357.19", "as_of": "2024-01-02", "is_ok": True}


def test_missing_required_output_is_output_error():
    """A required output key the service did not set breaks the declaration."""
    sio = _sio("demo.echo", output_required=("text",))
    with pytest.raises(OutputError) as caught:
        sio.render_output({})
    assert isinstance(caught.value, ServiceError)
    assert caught.value.message == "service demo.echo broke its output declaration: text is required"


def test_unrenderable_output_is_output_error():
    """A value its element cannot render is an OutputError naming the field."""
    with pytest.raises(OutputError, match="user_count: expected an integer"):
        _sio(output_required=("user_count",)).render_output({"user_count": "many"})


def test_optional_output_default_or_none():
    """A missing optional output takes the output default, else None."""
    assert _sio(output_optional=("a",)).render_output({}) == {"a": None}
    assert _sio(output_optional=("a",), default_output_value="").render_output({}) == {"a": ""}
    assert _sio(output_optional=(Int("n", default=0),)).render_output({}) == {"n": 0}


def test_skip_empty_keys_drops_none():
    """skip_empty_keys drops optional keys whose value is None."""
    sio = _sio(output_optional=("a", "b"), skip_empty_keys=True)
    assert sio.render_output({"a": None, "b": "x"}) == {"b": "x"}


def test_output_repeated_renders_a_list():
    """output_repeated renders each item and requires a list."""
    sio = _sio(output_required=("cust_id",), output_repeated=True)
    assert sio.render_output([{"cust_id": "1", "x": 0}, {"cust_id": 2}]) == [
        {"cust_id": 1}, {"cust_id": 2}]
    assert sio.render_output(None) == []
    with pytest.raises(OutputError, match="expected a list"):
        sio.render_output({"cust_id": 1})


def test_output_repeated_names_the_bad_item():
    """An error in a repeated item names its index."""
    sio = _sio(output_required=("cust_id",), output_repeated=True)
    with pytest.raises(OutputError, match=r"\[1\]\.cust_id is required"):
        sio.render_output([{"cust_id": 1}, {}])


def test_response_elem_wraps_output():
    """response_elem wraps the output in one key."""
    sio = _sio(output_required=("a",), response_elem="response")
    assert sio.render_output({"a": "1"}) == {"response": {"a": "1"}}


def test_no_response_elem_by_default():
    """By default the output is not wrapped."""
    assert _sio(output_required=("a",)).response_elem is None


def test_non_object_output_is_output_error():
    """A string payload cannot satisfy an output declaration."""
    with pytest.raises(OutputError, match="expected an object"):
        _sio(output_required=("a",)).render_output("text")


# -- schemas --------------------------------------------------------------------------


def test_input_schema():
    """input_schema lists properties, required names and refuses extras."""
    schema = _sio(input_required=("cust_id",), input_optional=(Date("as_of"),)).input_schema()
    assert schema == {
        "type": "object",
        "properties": {"cust_id": {"type": "integer", "minimum": -2 ** 63, "maximum": 2 ** 63 - 1},
                       "as_of": {"type": "string", "format": "date"}},
        "required": ["cust_id"],
        "additionalProperties": False,
    }


def test_input_schema_allows_extras_when_dropped():
    """With policy drop, the schema does not forbid extra keys."""
    schema = _sio(input_required=("a",), undeclared_input="drop").input_schema()
    assert "additionalProperties" not in schema


def test_output_schema_marks_optional_nullable():
    """Optional outputs that may be None are nullable; required are not."""
    schema = _sio(output_required=("a",), output_optional=("n_count",)).output_schema()
    assert schema["properties"] == {"a": {"type": "string"}, "n_count": {
        "type": ["integer", "null"], "minimum": -2 ** 63, "maximum": 2 ** 63 - 1}}
    assert schema["required"] == ["a"]
    assert schema["additionalProperties"] is False


def test_output_schema_repeated_and_wrapped():
    """output_repeated makes an array; response_elem wraps it."""
    schema = _sio(output_required=("a",), output_repeated=True,
                  response_elem="response").output_schema()
    assert schema["required"] == ["response"]
    inner = schema["properties"]["response"]
    assert inner["type"] == "array"
    assert inner["items"]["properties"] == {"a": {"type": "string"}}
