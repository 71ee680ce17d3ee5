"""The one place the broker parses XML.

Every XML document the broker reads (the ``xml``, ``soap11`` and ``soap12``
data formats, services that parse XML themselves) goes through
:func:`parse_xml`, which uses a single hardened parser passed explicitly on
every call, never lxml's default one:

* no entity resolution, no DTD loading or validation, no network access:
  XXE (external entities reading local files or URLs) cannot happen;
* a document carrying a DOCTYPE is refused outright, so internal-subset
  entity bombs ("billion laughs") are never expanded;
* ``huge_tree`` stays off (libxml2's own size and depth limits apply) and
  the nesting depth is bounded by ``max_depth`` on top of that;
* comments and processing instructions are dropped.

Any problem leaves as :class:`broker.errors.BadRequest`, whose message is
short and safe to show the caller.
"""

from lxml import etree
from lxml.builder import ElementMaker

from broker.errors import BadRequest

__all__ = ["DEFAULT_MAX_DEPTH", "PARSER", "parse_xml", "serialize_xml", "xml_element_maker"]

#: How deeply elements may nest (the root is at depth 1).
DEFAULT_MAX_DEPTH = 100

#: The hardened parser; lxml locks a parser per parse, so sharing it is safe.
PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    huge_tree=False,
    load_dtd=False,
    dtd_validation=False,
    attribute_defaults=False,
    remove_pis=True,
    remove_comments=True,
    collect_ids=False,
    recover=False,
)

_MAX_REASON = 160


def parse_xml(data, max_depth=DEFAULT_MAX_DEPTH):
    """Parse an untrusted XML document.

    :param data: the document as bytes (its encoding declaration is honoured).
    :param max_depth: how deeply elements may nest; the root is at depth 1.
    :return: the root element.
    :raise BadRequest: the document is malformed, empty, has a DOCTYPE or
        nests deeper than ``max_depth``.
    :raise TypeError: ``data`` is not bytes-like.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"parse_xml takes bytes, not {type(data).__name__}")
    data = bytes(data)
    if not data.strip():
        raise BadRequest("Malformed XML: the document is empty")
    # Cheap early refusal; the docinfo check below catches other encodings.
    if b"<!DOCTYPE" in data:
        raise BadRequest("DOCTYPE is not allowed")
    try:
        root = etree.fromstring(data, parser=PARSER)
    except etree.XMLSyntaxError as exc:
        raise BadRequest(f"Malformed XML: {_reason(exc)}") from None
    except ValueError as exc:  # e.g. an unknown or unsupported encoding
        raise BadRequest(f"Malformed XML: {_shorten(str(exc))}") from None
    if root is None:
        raise BadRequest("Malformed XML: no root element")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise BadRequest("DOCTYPE is not allowed")
    if max_depth is not None and _deeper_than(root, max_depth):
        raise BadRequest(f"Malformed XML: elements nest deeper than {max_depth} levels")
    return root


def xml_element_maker(namespace=None, nsmap=None):
    """An :class:`lxml.builder.ElementMaker` for building reply documents.

    ``E = xml_element_maker(); E.response(E.text("hi"))`` builds
    ``<response><text>hi</text></response>``.

    :param namespace: the default namespace URI of the elements made, or None.
    :param nsmap: prefix → URI mapping declared on the elements made.
    :return: the element maker.
    """
    return ElementMaker(namespace=namespace, nsmap=nsmap)


def serialize_xml(element, xml_declaration=True):
    """Serialise an element built for a reply.

    :param element: the root element.
    :param xml_declaration: whether to start with ``<?xml ... encoding='UTF-8'?>``.
    :return: the document as UTF-8 bytes.
    """
    return etree.tostring(element, encoding="UTF-8", xml_declaration=xml_declaration)


def _deeper_than(root, max_depth):
    """True if some element sits below depth ``max_depth`` (root = depth 1)."""
    if max_depth < 1:
        return True
    # ElementPath runs in C: "*/*/..." with max_depth steps reaches depth max_depth + 1.
    return root.find("/".join(["*"] * max_depth)) is not None


def _reason(exc):
    """A short, caller-safe text for a syntax error (lxml's message, trimmed)."""
    return _shorten(exc.msg or str(exc) or "syntax error")


def _shorten(text):
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[:_MAX_REASON - 3] + "..."
