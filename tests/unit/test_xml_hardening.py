"""The one XML parser refuses XXE, entity bombs, DOCTYPEs and deep nesting."""

import pytest
from lxml import etree

from broker.errors import BadRequest
from broker import xmlsafe as secure_xml
from broker.xmlsafe import parse_xml, serialize_xml, xml_element_maker

_BOMB_ENTITIES = '<!ENTITY lol0 "lol">' + "".join(
    f'<!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * 10}">' for i in range(1, 10))


def test_comments_and_processing_instructions_are_dropped():
    """The shared parser strips comments and PIs, leaving only elements."""
    assert isinstance(secure_xml.PARSER, etree.XMLParser)
    root = parse_xml(b"<a><!-- c --><?pi x?><b>1</b></a>")
    assert [child.tag for child in root] == ["b"]


def test_well_formed_document_returns_root():
    """A normal document parses to its root element."""
    root = parse_xml(b"<?xml version='1.0' encoding='UTF-8'?><req><text>hi</text></req>")
    assert root.tag == "req"
    assert root.findtext("text") == "hi"


def test_syntax_error_is_bad_request():
    """Malformed XML is a BadRequest with a short reason."""
    with pytest.raises(BadRequest) as caught:
        parse_xml(b"<a><b>1</a>")
    assert caught.value.message.startswith("Malformed XML: ")
    assert "mismatch" in caught.value.message
    assert len(caught.value.message) < 200


def test_empty_document_is_bad_request():
    """An empty or blank document is refused."""
    with pytest.raises(BadRequest, match="Malformed XML"):
        parse_xml(b"   ")


def test_xxe_never_reveals_a_local_file(tmp_path):
    """An external entity pointing at a local file is refused; its contents never appear."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    payload = (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>'
               f"<r>&xxe;</r>").encode()
    with pytest.raises(BadRequest) as caught:
        parse_xml(payload)
    assert caught.value.message == "DOCTYPE is not allowed"
    assert "TOP-SECRET-VALUE" not in str(caught.value)


def test_xxe_in_utf16_is_refused_after_parsing(tmp_path):
    """A DOCTYPE hidden from the byte scan (UTF-16) is still refused, file unread."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    payload = (f'<!DOCTYPE r [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]><r>&xxe;</r>'
               ).encode("utf-16")
    with pytest.raises(BadRequest) as caught:
        parse_xml(payload)
    assert "TOP-SECRET-VALUE" not in caught.value.message


def test_undeclared_entity_reference_is_bad_request():
    """An entity reference with no DTD is a syntax error, not a lookup."""
    with pytest.raises(BadRequest, match="Malformed XML"):
        parse_xml(b"<r>&xxe;</r>")


def test_billion_laughs_is_refused():
    """The classic entity bomb is refused without expanding it."""
    payload = f'<?xml version="1.0"?><!DOCTYPE r [{_BOMB_ENTITIES}]><r>&lol9;</r>'.encode()
    with pytest.raises(BadRequest, match="DOCTYPE is not allowed"):
        parse_xml(payload)


def test_billion_laughs_in_utf16_attribute_is_refused():
    """An entity bomb in an attribute, hidden from the byte scan, still fails."""
    payload = f'<!DOCTYPE r [{_BOMB_ENTITIES}]><r a="&lol9;">&lol9;</r>'.encode("utf-16")
    with pytest.raises(BadRequest):
        parse_xml(payload)


def test_plain_doctype_is_refused():
    """Even a harmless DOCTYPE is refused with a clear message."""
    with pytest.raises(BadRequest, match="^DOCTYPE is not allowed$"):
        parse_xml(b"<!DOCTYPE html><html/>")


def test_depth_is_bounded():
    """Nesting beyond max_depth is refused; up to it is fine."""
    assert parse_xml(b"<a><b><c/></b></a>", max_depth=3).tag == "a"
    with pytest.raises(BadRequest, match="deeper than 2"):
        parse_xml(b"<a><b><c/></b></a>", max_depth=2)


def test_default_depth_limit_applies():
    """A deeply nested document is refused with the default limit."""
    depth = secure_xml.DEFAULT_MAX_DEPTH + 1
    payload = b"<a>" * depth + b"</a>" * depth
    with pytest.raises(BadRequest):
        parse_xml(payload)


def test_unknown_encoding_is_bad_request():
    """An unsupported declared encoding is a BadRequest, not a crash."""
    with pytest.raises(BadRequest, match="Malformed XML"):
        parse_xml(b'<?xml version="1.0" encoding="bogus"?><a/>')


def test_str_input_is_a_type_error():
    """parse_xml takes bytes only, so encoding declarations stay meaningful."""
    with pytest.raises(TypeError):
        parse_xml("<a/>")


def test_element_maker_builds_reply():
    """xml_element_maker and serialize_xml build a UTF-8 reply document."""
    E = xml_element_maker()
    body = serialize_xml(E.response(E.text("héllo")))
    assert body.startswith(b"<?xml")
    assert "<response><text>héllo</text></response>".encode() in body
    assert parse_xml(body).findtext("text") == "héllo"
