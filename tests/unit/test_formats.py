"""Data formats: decode and encode for json, xml, soap11, soap12, form and raw."""

import datetime as dt
import decimal
import json
import uuid

import pytest
from lxml import etree

from broker.errors import BadRequest, ResponseTooLarge, ServiceError, UnsupportedMediaType
from broker.simpleio import (FORMATS, SOAP11_NS, SOAP12_NS, check_content_type, decode, encode,
                             parse_query, soap_fault)

_SOAP11_REQUEST = (
    f'<soapenv:Envelope xmlns:soapenv="{SOAP11_NS}" xmlns:z="urn:x">'
    "<soapenv:Header/><soapenv:Body><z:request><z:text>hi</z:text><z:repeat>2</z:repeat>"
    "</z:request></soapenv:Body></soapenv:Envelope>").encode()


def _tree(body):
    """Parse an encoded document in the test (trusted output)."""
    return etree.fromstring(body)


def test_formats_lists_every_format():
    """FORMATS names the six data formats for config validation."""
    assert FORMATS == {"json", "xml", "soap11", "soap12", "form", "raw"}


def test_unknown_format_is_value_error():
    """An unknown format name is a configuration error."""
    with pytest.raises(ValueError):
        decode("yaml", b"a: 1")
    with pytest.raises(ValueError):
        encode("yaml", {})


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_empty_body_decodes_to_none(fmt):
    """An empty body is no payload in every format."""
    assert decode(fmt, b"") is None


# -- JSON -------------------------------------------------------------------------------


def test_json_decodes_utf8():
    """JSON bodies decode to Python values, non-ASCII included."""
    assert decode("json", '{"name":"Zażółć","n":[1,2]}'.encode()) == {"name": "Zażółć", "n": [1, 2]}


def test_json_malformed_names_line_and_column():
    """Malformed JSON is a BadRequest with line and column."""
    with pytest.raises(BadRequest, match=r"^Malformed JSON: .* at line 2 column 5$"):
        decode("json", b'{"a":\n  1,,}')


def test_json_not_utf8_is_bad_request():
    """A body that is not UTF-8 is refused."""
    with pytest.raises(BadRequest, match="not valid UTF-8"):
        decode("json", '{"a":"é"}'.encode("latin-1"))


def test_json_nan_is_refused():
    """NaN and Infinity are not JSON."""
    with pytest.raises(BadRequest, match="NaN is not valid JSON"):
        decode("json", b'{"a": NaN}')


def test_json_deep_nesting_is_bad_request():
    """Pathological nesting is a BadRequest, not a crash."""
    with pytest.raises(BadRequest, match="Malformed JSON"):
        decode("json", b"[" * 100000 + b"]" * 100000)


def test_json_encode_is_compact_utf8():
    """JSON output is compact, UTF-8 and not ASCII-escaped."""
    body, content_type = encode("json", {"a": "é", "b": [1, None, True]})
    assert body == '{"a":"é","b":[1,null,true]}'.encode()
    assert content_type == "application/json"


def test_json_encode_renders_special_types():
    """Decimal, dates and UUIDs are rendered as strings."""
    body, _ = encode("json", {"d": decimal.Decimal("1.10"), "on": dt.date(2024, 1, 2),
                              "at": dt.datetime(2024, 1, 2, 3, 4, 5), "id": uuid.UUID(int=0)})
    assert json.loads(body) == {"d": "1.10", "on": "2024-01-02", "at": "2024-01-02T03:04:05",
                                "id": "00000000-0000-0000-0000-000000000000"}


def test_json_encode_unknown_type_is_service_error():
    """An object JSON cannot represent is the service's fault."""
    with pytest.raises(ServiceError, match="Cannot encode output as JSON"):
        encode("json", {"x": object()})


def test_str_payload_passes_through():
    """A service's own document (str) is sent as is."""
    assert encode("json", '{"own":1}') == (b'{"own":1}', "application/json")


# -- XML --------------------------------------------------------------------------------


def test_xml_decodes_children_to_dict():
    """Root children become keys; leaves text, nesting dicts, repeats lists."""
    body = (b"<request><text>hi</text><empty/><tag>a</tag><tag>b</tag>"
            b"<addr><city>Oslo</city></addr></request>")
    assert decode("xml", body) == {"text": "hi", "empty": "", "tag": ["a", "b"],
                                   "addr": {"city": "Oslo"}}


@pytest.mark.parametrize("fmt", ["xml", "soap11"])
def test_an_empty_xml_element_is_an_empty_string_not_a_missing_field(fmt):
    """As in Zato: <text/> and <text></text> give "", which a required Text accepts."""
    inner = b"<request><text/><note></note><repeat> </repeat></request>"
    body = inner if fmt == "xml" else (f'<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body>'.encode() + inner
                                       + b"</s:Body></s:Envelope>")
    assert decode(fmt, body) == {"text": "", "note": "", "repeat": " "}


def test_xml_strips_namespaces():
    """Namespaced tags become their local names."""
    body = b'<r xmlns="urn:a" xmlns:b="urn:b"><b:cust_id>1</b:cust_id><name>x</name></r>'
    assert decode("xml", body) == {"cust_id": "1", "name": "x"}


def test_xml_malformed_is_bad_request():
    """Malformed XML is a BadRequest."""
    with pytest.raises(BadRequest, match="^Malformed XML: "):
        decode("xml", b"<a><b></a>")


def test_xml_doctype_is_refused():
    """The XML format goes through the hardened parser."""
    with pytest.raises(BadRequest, match="DOCTYPE is not allowed"):
        decode("xml", b'<!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>')


def test_xml_encode_dict():
    """A dict becomes <response><k>v</k>...</response>, bools true/false, None empty."""
    body, content_type = encode("xml", {"text": "hi", "ok": True, "n": 3, "none": None,
                                        "tags": ["a", "b"], "addr": {"city": "Oslo"}})
    assert content_type == "application/xml"
    assert body.startswith(b"<?xml")
    assert body.endswith(b"<response><text>hi</text><ok>true</ok><n>3</n><none/>"
                         b"<tags>a</tags><tags>b</tags><addr><city>Oslo</city></addr></response>")


def test_xml_encode_top_level_list_uses_item():
    """A top-level list becomes <item> children of the root."""
    body, _ = encode("xml", [{"a": 1}, {"a": 2}], root="customers")
    root = _tree(body)
    assert root.tag == "customers"
    assert [item.findtext("a") for item in root.findall("item")] == ["1", "2"]


def test_xml_round_trip():
    """What encode writes, decode reads back (as text)."""
    payload = {"text": "héllo <&>", "tags": ["a", "b"], "addr": {"city": "Oslo"}}
    body, _ = encode("xml", payload)
    assert decode("xml", body) == payload


def test_xml_encode_bad_tag_is_service_error():
    """A key that cannot be an element name is the service's fault."""
    with pytest.raises(ServiceError, match="Cannot encode output as XML"):
        encode("xml", {"not a tag": 1})


# -- SOAP -------------------------------------------------------------------------------


def test_soap11_decodes_first_body_child():
    """SOAP 1.1: the first child of Body maps like XML."""
    assert decode("soap11", _SOAP11_REQUEST) == {"text": "hi", "repeat": "2"}


def test_soap12_decodes_first_body_child():
    """SOAP 1.2 uses its own envelope namespace."""
    body = (f'<env:Envelope xmlns:env="{SOAP12_NS}"><env:Body><req><a>1</a></req>'
            "</env:Body></env:Envelope>").encode()
    assert decode("soap12", body) == {"a": "1"}


def test_soap_missing_envelope_is_bad_request():
    """A document that is not an Envelope is refused, naming it."""
    with pytest.raises(BadRequest, match="Envelope is missing"):
        decode("soap11", b"<request><a>1</a></request>")


def test_soap_missing_body_is_bad_request():
    """An Envelope without a Body is refused, naming it."""
    body = f'<s:Envelope xmlns:s="{SOAP11_NS}"><s:Header/></s:Envelope>'.encode()
    with pytest.raises(BadRequest, match="Body is missing"):
        decode("soap11", body)


def test_soap_version_mismatch_is_bad_request():
    """A SOAP 1.1 envelope sent to a SOAP 1.2 channel is refused."""
    with pytest.raises(BadRequest, match="SOAP 1.2"):
        decode("soap12", _SOAP11_REQUEST)


def test_soap_empty_body_element_is_none():
    """An empty Body carries no payload."""
    body = f'<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body/></s:Envelope>'.encode()
    assert decode("soap11", body) is None


def test_soap_body_holding_more_than_one_element_is_bad_request():
    """The Body holds the request, one element: a second one is refused, not ignored."""
    body = (f'<s:Envelope xmlns:s="{SOAP11_NS}"><s:Body><request><text>a</text></request>'
            f'<extra><text>b</text></extra></s:Body></s:Envelope>').encode()
    with pytest.raises(BadRequest, match="Body holds 2 elements"):
        decode("soap11", body)


def test_soap_malformed_is_bad_request():
    """Malformed SOAP XML is a BadRequest."""
    with pytest.raises(BadRequest, match="Malformed XML"):
        decode("soap11", b"<s:Envelope>")


@pytest.mark.parametrize("fmt, namespace, content_type", [
    ("soap11", SOAP11_NS, "text/xml; charset=utf-8"),
    ("soap12", SOAP12_NS, "application/soap+xml; charset=utf-8"),
])
def test_soap_encode_wraps_in_envelope(fmt, namespace, content_type):
    """SOAP output is the XML response inside Envelope/Body."""
    body, actual_type = encode(fmt, {"text": "hi"})
    assert actual_type == content_type
    root = _tree(body)
    assert root.tag == f"{{{namespace}}}Envelope"
    assert root.find(f"{{{namespace}}}Body/response/text").text == "hi"


def test_soap_round_trip():
    """SOAP output decodes back to the payload."""
    body, _ = encode("soap12", {"a": "1", "b": {"c": "2"}})
    assert decode("soap12", body) == {"a": "1", "b": {"c": "2"}}


def test_soap11_fault():
    """A SOAP 1.1 fault has faultcode soap:Client and faultstring."""
    root = _tree(soap_fault("11", "client", "Invalid input", "cid-1"))
    fault = root.find(f"{{{SOAP11_NS}}}Body/{{{SOAP11_NS}}}Fault")
    assert fault.findtext("faultcode") == "soap:Client"
    assert fault.findtext("faultstring") == "Invalid input"
    assert fault.findtext("detail/cid") == "cid-1"


def test_soap11_server_fault():
    """A server-side problem is soap:Server."""
    root = _tree(soap_fault("1.1", "server", "Internal error", "c"))
    assert root.findtext(f".//{{{SOAP11_NS}}}Fault/faultcode") == "soap:Server"


def test_soap12_fault():
    """A SOAP 1.2 fault has Code/Value soap:Sender/Receiver and Reason/Text."""
    ns = f"{{{SOAP12_NS}}}"
    sender = _tree(soap_fault("12", "client", "Bad", "c1")).find(f"{ns}Body/{ns}Fault")
    assert sender.findtext(f"{ns}Code/{ns}Value") == "soap:Sender"
    assert sender.findtext(f"{ns}Reason/{ns}Text") == "Bad"
    receiver = _tree(soap_fault("soap12", "server", "Oops", "c2")).find(f"{ns}Body/{ns}Fault")
    assert receiver.findtext(f"{ns}Code/{ns}Value") == "soap:Receiver"


def test_soap_fault_survives_control_characters():
    """A message with characters XML cannot hold still yields a fault."""
    root = _tree(soap_fault("11", "client", "bad\x00byte", "c"))
    assert root.findtext(f".//{{{SOAP11_NS}}}Fault/faultstring") == "bad?byte"


# -- form and query ---------------------------------------------------------------------


def test_form_decodes_pairs():
    """Form bodies decode; repeated keys become lists; blanks are kept."""
    assert decode("form", b"text=hi+there&tag=a&tag=b&empty=&e=%C3%A9") == {
        "text": "hi there", "tag": ["a", "b"], "empty": "", "e": "é"}


def test_form_not_utf8_is_bad_request():
    """Percent-encoded bytes that are not UTF-8 are refused."""
    with pytest.raises(BadRequest, match="Malformed form data: not valid UTF-8"):
        decode("form", b"a=%E9")


def test_form_too_many_fields_is_bad_request():
    """A form with an absurd number of fields is refused."""
    with pytest.raises(BadRequest, match="Malformed form data"):
        decode("form", b"&".join(b"a=1" for _ in range(2000)))


def test_form_encodes_json():
    """Form channels answer JSON."""
    assert encode("form", {"a": 1}) == (b'{"a":1}', "application/json")


def test_parse_query():
    """Query strings follow the form rules, leading '?' or not."""
    assert parse_query("?a=1&a=2&b=") == {"a": ["1", "2"], "b": ""}
    assert parse_query("repeat=3") == {"repeat": "3"}
    assert parse_query("") == {}


def test_parse_query_not_utf8_is_bad_request():
    """A query string with non-UTF-8 escapes is refused."""
    with pytest.raises(BadRequest, match="Malformed query string"):
        parse_query("a=%FF")


# -- raw --------------------------------------------------------------------------------


def test_raw_decodes_text_and_bytes():
    """Raw bodies are str when UTF-8, bytes otherwise."""
    assert decode("raw", "héllo".encode()) == "héllo"
    assert decode("raw", b"\xff\xfe\x00") == b"\xff\xfe\x00"


def test_raw_honours_declared_charset():
    """A charset in the content type is used to decode raw text."""
    assert decode("raw", "é".encode("latin-1"), "text/plain; charset=ISO-8859-1") == "é"


def test_raw_encode_text_passes_through():
    """Raw str/bytes go out unchanged as text/plain."""
    assert encode("raw", "hi") == (b"hi", "text/plain; charset=utf-8")
    assert encode("raw", b"\x00\x01") == (b"\x00\x01", "text/plain")


def test_raw_encode_structures_as_json():
    """Raw dicts and lists go out as JSON."""
    assert encode("raw", [1, {"a": 2}]) == (b'[1,{"a":2}]', "application/json")


def test_json_integers_beyond_64_bits_stay_exact():
    """orjson would read these as floats: such bodies take the stdlib path."""
    big = 2 ** 70
    assert decode("json", b'{"n": %d, "m": -%d}' % (big, big)) == {"n": big, "m": -big}
    body, _ = encode("json", {"n": big})
    assert body == b'{"n":%d}' % big


# -- hostile input and oversized output (issue 11) ---------------------------------------


@pytest.mark.parametrize("query, fields", [
    ("text=%ff", ["text"]),
    ("a=1&b=%e9%80&c=%ed%a0%80", ["b", "c"]),   # a truncated sequence, an encoded surrogate
    ("te%ffxt=a", ["te\ufffdxt"]),              # a bad name is shown as best it can be
])
def test_parse_query_names_each_parameter_that_is_not_utf8(query, fields):
    with pytest.raises(BadRequest) as caught:
        parse_query(query)
    assert [e["field"] for e in caught.value.errors] == fields
    assert all(e["problem"] == "is not valid UTF-8 once percent-decoded" for e in caught.value.errors)
    assert caught.value.message.endswith(", ".join(fields))


def test_form_body_names_the_parameter_that_is_not_utf8():
    with pytest.raises(BadRequest) as caught:
        decode("form", "a=é&b=%ff".encode())
    assert caught.value.errors == [{"field": "b", "problem": "is not valid UTF-8 once percent-decoded"}]
    assert decode("form", b"a=%C3%A9&b=x+y") == {"a": "é", "b": "x y"}


def test_json_format_uses_the_guarded_decoder():
    """Repeated keys and lone surrogates: orjson would keep the last / the stdlib accept both."""
    with pytest.raises(BadRequest, match='the key "text" is given twice'):
        decode("json", b'{"text": "a", "text": "b"}')
    with pytest.raises(BadRequest, match="lone surrogate"):
        decode("json", b'{"text": "\\ud800"}')
    with pytest.raises(BadRequest, match="nested more than 64 levels deep"):
        decode("json", b"[" * 100000 + b"]" * 100000)
    assert decode("json", b"  \n ") is None


@pytest.mark.parametrize("fmt, content_type", [
    ("json", "application/json"), ("json", "application/json; charset=utf-8"),
    ("json", "Application/JSON ;charset=UTF-8"), ("json", "text/json"),
    ("json", "application/vnd.api+json"), ("json", "application/problem+json"),
    ("xml", "application/xml"), ("xml", "text/xml; charset=utf-8"), ("xml", "application/atom+xml"),
    ("soap11", "text/xml; charset=utf-8"), ("soap11", "application/xml"),
    ("soap12", "application/soap+xml; charset=utf-8; action=\"urn:echo\""), ("soap12", "text/xml"),
    ("form", "application/x-www-form-urlencoded; charset=utf-8"),
    ("raw", "text/plain"), ("raw", "application/octet-stream"), ("raw", "image/png"),
    # what curl -d sends unless told otherwise, on every format
    ("json", "application/x-www-form-urlencoded"), ("xml", "application/x-www-form-urlencoded"),
    ("json", ""), ("json", " ; charset=utf-8"),
])
def test_content_types_a_format_reads(fmt, content_type):
    check_content_type(fmt, content_type)


@pytest.mark.parametrize("fmt, content_type, expected", [
    ("json", "application/xml", "application/json, text/json or application/*+json"),
    ("json", "text/plain; charset=utf-8", "application/json, text/json or application/*+json"),
    ("json", "multipart/form-data; boundary=x", "application/json, text/json or application/*+json"),
    ("xml", "application/json", "application/xml, text/xml or application/*+xml"),
    ("soap11", "application/soap+xml", "text/xml or application/xml"),
    ("soap12", "application/json", "application/soap+xml, application/xml or text/xml"),
    ("form", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"),
])
def test_content_types_a_format_refuses(fmt, content_type, expected):
    with pytest.raises(UnsupportedMediaType) as caught:
        check_content_type(fmt, content_type)
    assert caught.value.status == 415
    assert caught.value.errors == [{"field": "Content-Type", "problem": f"expected {expected}"}]
    assert content_type.partition(";")[0] in caught.value.message


@pytest.mark.parametrize("fmt", ["json", "form", "raw", "xml", "soap11"])
def test_encode_refuses_an_answer_over_max_size(fmt):
    payload = {"text": "x" * 2000}
    assert encode(fmt, payload, max_size=4000)[0]
    with pytest.raises(ResponseTooLarge, match="over the limit of 1000 bytes"):
        encode(fmt, payload, max_size=1000)


def test_encode_refuses_a_long_text_before_encoding_it():
    class Huge(str):
        def encode(self, *args):
            raise AssertionError("encoded")

    with pytest.raises(ResponseTooLarge):
        encode("json", Huge("é" * 1001), max_size=1000)
    assert encode("json", "é" * 400, max_size=1000)[0] == "é".encode() * 400
    with pytest.raises(ResponseTooLarge):  # 600 characters, 1200 bytes
        encode("json", "é" * 600, max_size=1000)


def test_xml_encode_stops_building_once_over_max_size():
    """The XML builder stops at the limit instead of building the whole document first."""
    from collections.abc import Mapping

    class Rows(Mapping):
        taken = 0

        def __iter__(self):
            for n in range(100000):
                Rows.taken += 1
                yield f"row{n}"

        def __getitem__(self, key):
            return "x" * 100

        def __len__(self):
            return 100000

    with pytest.raises(ResponseTooLarge):
        encode("xml", Rows(), max_size=10000)
    assert Rows.taken < 100
