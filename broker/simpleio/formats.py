"""Data formats: transport-neutral codecs between bytes and payloads.

A channel names its data format (``json``, ``xml``, ``soap11``, ``soap12``,
``form`` or ``raw``); :func:`decode` turns a request body into a payload and
:func:`encode` turns a service's payload into ``(bytes, content_type)``.
Nothing here knows about HTTP.  An empty body decodes to None in every
format; malformed input raises :class:`~broker.errors.BadRequest` with a
short reason; a payload that cannot be encoded raises
:class:`~broker.errors.ServiceError`.  XML is parsed only through
:func:`broker.xmlsafe.parse_xml`; lxml is used here only to build.
"""

import datetime as _dt
import decimal
import json

import orjson
import re
import uuid
from collections.abc import Mapping
from urllib.parse import parse_qsl

from lxml import etree

from broker.errors import BadRequest, ResponseTooLarge, ServiceError, UnsupportedMediaType
from broker.jsonfast import JSONInputError, decode_json
from broker.simpleio.payload import Payload
from broker.xmlsafe import parse_xml, serialize_xml

__all__ = ["CONTENT_TYPES", "FORMATS", "MEDIA_TYPES", "PLAIN_MEDIA_TYPES", "SOAP11_NS", "SOAP12_NS",
           "check_content_type", "decode", "encode", "parse_query", "soap_fault"]

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"

#: The data formats a channel may name.
FORMATS = frozenset({"json", "xml", "soap11", "soap12", "form", "raw"})

#: The content type each format answers with (form channels answer JSON).
CONTENT_TYPES = {
    "json": "application/json",
    "xml": "application/xml",
    "soap11": "text/xml; charset=utf-8",
    "soap12": "application/soap+xml; charset=utf-8",
    "form": "application/json",
    "raw": "text/plain; charset=utf-8",
}

#: The media types a format reads besides ``application/*+json`` / ``application/*+xml``;
#: ``raw`` reads any.  SOAP 1.1 refuses SOAP 1.2's ``application/soap+xml``.
MEDIA_TYPES = {
    "json": ("application/json", "text/json"),
    "xml": ("application/xml", "text/xml"),
    "soap11": ("text/xml", "application/xml"),
    "soap12": ("application/soap+xml", "application/xml", "text/xml"),
    "form": ("application/x-www-form-urlencoded",),
}

#: Content-Type values sent on nearly every request, per format: a channel accepts these without
#: calling :func:`check_content_type` (a set lookup instead of a call on the hot path).
PLAIN_MEDIA_TYPES = {
    **{fmt: frozenset(f"{media}{params}" for media in types
                      for params in ("", "; charset=utf-8", ";charset=utf-8", "; charset=UTF-8"))
       for fmt, types in MEDIA_TYPES.items()},
    "raw": frozenset(),
}

_JSON = "application/json"
# What ``curl -d`` declares when told nothing else: taken as no declaration at all.
_UNDECLARED = "application/x-www-form-urlencoded"
_SUFFIXES = {"json": "+json", "xml": "+xml"}
_SOAP = {"11": ("1.1", SOAP11_NS), "12": ("1.2", SOAP12_NS)}
_MAX_FORM_FIELDS = 1000
_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_JSON_CONTAINERS = frozenset((dict, list, Payload))  # what orjson encodes first-hand
_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([A-Za-z0-9._:-]+)", re.IGNORECASE)
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a byte UTF-8 refuses


# -- public API -------------------------------------------------------------------


def decode(data_format, body, content_type=""):
    """Decode a request body.

    :param data_format: one of :data:`FORMATS`.
    :param body: the raw body.
    :param content_type: the sender's content type; only ``raw`` uses it (its charset).
    :return: the payload (dict, list, str, bytes or a JSON scalar), None for an empty body.
    :raise BadRequest: the body is malformed for the format.
    :raise ValueError: ``data_format`` is unknown.
    """
    if data_format == "json" and body.__class__ is bytes and body:
        try:  # the common case first, without copying the body
            return decode_json(body)
        except JSONInputError:
            if body.strip():
                raise
            return None  # only whitespace
    if data_format not in FORMATS:
        raise ValueError(f"Unknown data format {data_format!r}")
    body = bytes(body or b"")
    if not body or (data_format != "raw" and not body.strip()):
        return None
    if data_format == "json":
        return decode_json(body)
    if data_format == "xml":
        return _children(parse_xml(body))
    if data_format in ("soap11", "soap12"):
        return _decode_soap(data_format[-2:], body)
    if data_format == "form":
        return _decode_pairs(body, "form data")
    return _decode_raw(body, content_type)


def check_content_type(data_format, content_type):
    """Refuse a body whose declared media type the format does not read.

    No declaration, and ``application/x-www-form-urlencoded`` (what ``curl -d``
    sends unless told otherwise), are accepted by every format; parameters
    such as ``charset`` are ignored.

    :raise UnsupportedMediaType: naming the types the format reads.
    """
    media = content_type.partition(";")[0].strip().lower()
    if not media or media == _UNDECLARED or data_format == "raw":
        return
    accepted = MEDIA_TYPES[data_format]
    suffix = _SUFFIXES.get(data_format)
    if media in accepted or (suffix and media.startswith("application/") and media.endswith(suffix)):
        return
    names = [*accepted, f"application/*{suffix}"] if suffix else list(accepted)
    expected = " or ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} or {names[-1]}"
    raise UnsupportedMediaType(f"Content-Type {media} is not accepted here: send {accepted[0]}",
                               errors=[{"field": "Content-Type", "problem": f"expected {expected}"}])


def encode(data_format, payload, *, root="response", soap_version=None, max_size=None):
    """Encode a service's payload.

    A str or bytes payload is the service's own document and passes through
    unchanged in every format.

    :param data_format: one of :data:`FORMATS`.
    :param payload: a dict, list, scalar, None, str or bytes.
    :param root: the root element name for ``xml`` (inside Body for SOAP).
    :param soap_version: ``"11"``/``"12"`` to override the version a SOAP
        format implies; None derives it from ``data_format``.
    :param max_size: the largest body allowed, in bytes; None = any.  A text
        longer than that is refused before it is encoded, and an XML
        document as soon as its elements add up to more.
    :return: ``(body, content_type)``.
    :raise ResponseTooLarge: the body would be over ``max_size``.
    :raise ServiceError: the payload cannot be represented in the format.
    :raise ValueError: ``data_format`` is unknown.
    """
    if data_format == "json" and payload.__class__ in _JSON_CONTAINERS:
        try:  # the common case first
            body = orjson.dumps(payload, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
        except (TypeError, orjson.JSONEncodeError):
            pass
        else:
            if max_size is not None and len(body) > max_size:
                raise _too_large(max_size)
            return body, _JSON
    if data_format not in FORMATS:
        raise ValueError(f"Unknown data format {data_format!r}")
    if data_format in ("soap11", "soap12"):
        version = _soap_version(soap_version or data_format)
        content_type = CONTENT_TYPES["soap" + version]
    else:
        content_type = CONTENT_TYPES[data_format]
    if isinstance(payload, (str, bytes, bytearray)):
        if max_size is not None and len(payload) > max_size:  # UTF-8 is never shorter
            raise _too_large(max_size)
        if isinstance(payload, str):
            return _within(payload.encode("utf-8"), max_size), content_type
        return bytes(payload), ("text/plain" if data_format == "raw" else content_type)
    if data_format in ("json", "form", "raw"):
        return _within(_encode_json(payload), max_size), _JSON
    if data_format == "xml":
        return _within(serialize_xml(_build(root, payload, max_size)), max_size), content_type
    _, namespace = _SOAP[version]
    envelope = etree.Element(f"{{{namespace}}}Envelope", nsmap={"soap": namespace})
    body = etree.SubElement(envelope, f"{{{namespace}}}Body")
    body.append(_build(root, payload, max_size))
    return _within(serialize_xml(envelope), max_size), content_type


def _too_large(max_size):
    return ResponseTooLarge(f"The answer is over the limit of {max_size} bytes")


def _within(body, max_size):
    if max_size is not None and len(body) > max_size:
        raise _too_large(max_size)
    return body


def soap_fault(version, code, message, cid=None):
    """A SOAP Fault document.

    :param version: ``"11"``/``"1.1"``/``"soap11"`` or ``"12"``/``"1.2"``/``"soap12"``.
    :param code: ``"client"``/``"sender"`` (the caller's fault) or
        ``"server"``/``"receiver"``, any case.
    :param message: a short text safe to show the caller.
    :param cid: the correlation id, put in the fault's detail; None = none.
    :return: the envelope as UTF-8 bytes.
    """
    version = _soap_version(version)
    namespace = _SOAP[version][1]
    is_client = str(code).lower() in ("client", "sender")
    message = _XML_UNSAFE.sub("?", str(message))
    soap = f"{{{namespace}}}"
    envelope = etree.Element(soap + "Envelope", nsmap={"soap": namespace})
    fault = etree.SubElement(etree.SubElement(envelope, soap + "Body"), soap + "Fault")
    if version == "11":
        etree.SubElement(fault, "faultcode").text = "soap:Client" if is_client else "soap:Server"
        etree.SubElement(fault, "faultstring").text = message
        detail = etree.SubElement(fault, "detail") if cid is not None else None
    else:
        value = etree.SubElement(etree.SubElement(fault, soap + "Code"), soap + "Value")
        value.text = "soap:Sender" if is_client else "soap:Receiver"
        text = etree.SubElement(etree.SubElement(fault, soap + "Reason"), soap + "Text")
        text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        text.text = message
        detail = etree.SubElement(fault, soap + "Detail") if cid is not None else None
    if detail is not None:
        etree.SubElement(detail, "cid").text = _XML_UNSAFE.sub("?", str(cid))
    return serialize_xml(envelope)


def parse_query(query):
    """Parse a URL query string like a form body (repeated keys → list).

    :param query: the query string (str or bytes), with or without a leading ``?``.
    :return: a dict of str → str or list of str.
    :raise BadRequest: it does not decode as UTF-8 or has too many fields.
    """
    if isinstance(query, (bytes, bytearray)):
        query = bytes(query)
        if query.startswith(b"?"):
            query = query[1:]
    elif query.startswith("?"):
        query = query[1:]
    if not query:
        return {}
    return _decode_pairs(query, "query string")


# -- JSON -------------------------------------------------------------------------


def _json_default(value):
    """Render what stdlib json does not know: Decimal, dates, UUID, bytes, sets."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"a {type(value).__name__} is not JSON-serialisable")


# One encoder for every call (json.dumps with keyword arguments builds a new one each time).
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                                 default=_json_default)


def _encode_json(payload):
    try:  # the fast path; anything orjson refuses takes the stdlib path below
        return orjson.dumps(payload, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:
        text = _JSON_ENCODER.encode(payload)
    except (TypeError, ValueError) as exc:
        raise ServiceError(f"Cannot encode output as JSON: {exc}") from exc
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: fall back to \\u escapes
        return json.dumps(payload, separators=(",", ":"), allow_nan=False,
                          default=_json_default).encode("ascii")


# -- form, query, raw -------------------------------------------------------------


def _decode_pairs(data, what):
    """``a=1&a=2&b=`` → ``{"a": ["1", "2"], "b": ""}`` with strict UTF-8, naming a bad field."""
    try:
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        pairs = parse_qsl(data, keep_blank_values=True, encoding="utf-8", errors="surrogateescape",
                          max_num_fields=_MAX_FORM_FIELDS)
    except UnicodeDecodeError:
        raise BadRequest(f"Malformed {what}: not valid UTF-8") from None
    except ValueError:
        raise BadRequest(f"Malformed {what}: more than {_MAX_FORM_FIELDS} fields") from None
    result = {}
    bad = None
    for key, value in pairs:
        if not (key.isascii() and value.isascii()) and _ESCAPED_BYTE.search(key + value):
            bad = bad or []
            bad.append({"field": key.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                        "problem": "is not valid UTF-8 once percent-decoded"})
            continue
        previous = result.get(key)
        if previous is None:
            result[key] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            result[key] = [previous, value]
    if bad:
        names = ", ".join(error["field"] for error in bad)
        raise BadRequest(f"Malformed {what}: not valid UTF-8 once percent-decoded: {names}", errors=bad)
    return result


def _decode_raw(body, content_type):
    match = _CHARSET.search(content_type or "")
    for charset in ((match.group(1), "utf-8") if match else ("utf-8",)):
        try:
            return body.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    return body


# -- XML and SOAP -----------------------------------------------------------------


def _local(tag):
    return tag.rpartition("}")[2]


def _value(element):
    """Leaf → its text (an empty element is an empty string, as in Zato); element with children → dict."""
    for _ in element.iterchildren(tag=etree.Element):
        return _children(element)
    return element.text or ""


def _children(element):
    """An element's child elements as a dict; repeated siblings → list; namespaces dropped."""
    result = {}
    repeated = set()
    for child in element.iterchildren(tag=etree.Element):
        key = _local(child.tag)
        value = _value(child)
        if key in repeated:
            result[key].append(value)
        elif key in result:
            result[key] = [result[key], value]
            repeated.add(key)
        else:
            result[key] = value
    return result


def _soap_version(version):
    text = str(version).lower().removeprefix("soap").replace(".", "")
    if text not in _SOAP:
        raise ValueError(f"Unknown SOAP version {version!r}")
    return text


def _decode_soap(version, body):
    label, namespace = _SOAP[version]
    root = parse_xml(body)
    if _local(root.tag) != "Envelope":
        raise BadRequest(f"Not a SOAP {label} message: the Envelope is missing "
                         f"(root element is {_local(root.tag)!r})")
    if root.tag != f"{{{namespace}}}Envelope":
        raise BadRequest(f"Not a SOAP {label} message: the Envelope is not in namespace {namespace}")
    soap_body = root.find(f"{{{namespace}}}Body")
    if soap_body is None:
        raise BadRequest(f"Not a SOAP {label} message: the Body is missing")
    operations = list(soap_body.iterchildren(tag=etree.Element))
    if len(operations) > 1:
        raise BadRequest(f"The SOAP Body holds {len(operations)} elements: send one, the request")
    return _children(operations[0]) if operations else None


def _build(root, payload, max_size=None):
    """``<root>`` holding ``payload``: keys → elements, lists → repeated elements.

    :raise ResponseTooLarge: the tags and texts add up to more than ``max_size`` bytes.
    """
    budget = _Budget(max_size)
    try:
        element = etree.Element(root)
        _fill(element, payload, budget)
    except (ValueError, TypeError) as exc:
        raise ServiceError(f"Cannot encode output as XML: {exc}") from exc
    return element


class _Budget:
    """Characters an XML document may still take (tags and texts, before escaping)."""

    __slots__ = ("left", "max_size")

    def __init__(self, max_size):
        self.max_size = max_size
        self.left = max_size if max_size is not None else float("inf")

    def spend(self, size):
        self.left -= size
        if self.left < 0:
            raise _too_large(self.max_size)


def _fill(element, value, budget):
    if isinstance(value, Mapping):
        for key, item in value.items():
            _append(element, str(key), item, budget)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _append(element, "item", item, budget)
    elif value is not None:
        text = _text(value)
        budget.spend(len(text))
        element.text = text


def _append(parent, key, value, budget):
    tags = 2 * len(key) + 5  # <key></key>
    if isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            budget.spend(tags)
            _fill(etree.SubElement(parent, key), item, budget)
    else:
        budget.spend(tags)
        _fill(etree.SubElement(parent, key), value, budget)


def _text(value):
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    raise TypeError(f"a {type(value).__name__} cannot be written as XML text")
