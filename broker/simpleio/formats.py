"""Data formats: transport-neutral codecs between bytes and payloads.

A channel names its data format (``json``, ``xml``, ``soap11``, ``soap12``,
``form`` or ``raw``); :func:`decode` turns a request body into a payload and
:func:`encode` turns a service's payload into ``(bytes, content_type)``.
Nothing here knows about HTTP.  An empty body decodes to None in every
format; malformed input raises :class:`~broker.errors.BadRequest` with a
short reason; a payload that cannot be encoded raises
:class:`~broker.errors.ServiceError`.  XML is parsed only through
:func:`broker.security.xml.parse_xml`; lxml is used here only to build.
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

from broker.errors import BadRequest, ServiceError
from broker.jsonfast import orjson_may_read
from broker.simpleio.payload import Payload
from broker.security.xml import parse_xml, serialize_xml

__all__ = ["CONTENT_TYPES", "FORMATS", "SOAP11_NS", "SOAP12_NS", "decode", "encode",
           "parse_query", "soap_fault"]

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

_JSON = "application/json"
_SOAP = {"11": ("1.1", SOAP11_NS), "12": ("1.2", SOAP12_NS)}
_MAX_FORM_FIELDS = 1000
_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_JSON_CONTAINERS = frozenset((dict, list, Payload))  # what orjson encodes first-hand
_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([A-Za-z0-9._:-]+)", re.IGNORECASE)


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
    if data_format == "json" and body.__class__ is bytes and orjson_may_read(body):
        try:  # the common case first; anything orjson refuses takes the full path
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    if data_format not in FORMATS:
        raise ValueError(f"Unknown data format {data_format!r}")
    body = bytes(body or b"")
    if not body or (data_format != "raw" and not body.strip()):
        return None
    if data_format == "json":
        return _decode_json(body)
    if data_format == "xml":
        return _children(parse_xml(body))
    if data_format in ("soap11", "soap12"):
        return _decode_soap(data_format[-2:], body)
    if data_format == "form":
        return _decode_pairs(body, "form data")
    return _decode_raw(body, content_type)


def encode(data_format, payload, *, root="response", soap_version=None):
    """Encode a service's payload.

    A str or bytes payload is the service's own document and passes through
    unchanged in every format.

    :param data_format: one of :data:`FORMATS`.
    :param payload: a dict, list, scalar, None, str or bytes.
    :param root: the root element name for ``xml`` (inside Body for SOAP).
    :param soap_version: ``"11"``/``"12"`` to override the version a SOAP
        format implies; None derives it from ``data_format``.
    :return: ``(body, content_type)``.
    :raise ServiceError: the payload cannot be represented in the format.
    :raise ValueError: ``data_format`` is unknown.
    """
    if data_format == "json" and payload.__class__ in _JSON_CONTAINERS:
        try:  # the common case first
            return orjson.dumps(payload, default=_json_default, option=orjson.OPT_NON_STR_KEYS), _JSON
        except (TypeError, orjson.JSONEncodeError):
            pass
    if data_format not in FORMATS:
        raise ValueError(f"Unknown data format {data_format!r}")
    if data_format in ("soap11", "soap12"):
        version = _soap_version(soap_version or data_format)
        content_type = CONTENT_TYPES["soap" + version]
    else:
        content_type = CONTENT_TYPES[data_format]
    if isinstance(payload, str):
        return payload.encode("utf-8"), content_type
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload), ("text/plain" if data_format == "raw" else content_type)
    if data_format in ("json", "form", "raw"):
        return _encode_json(payload), _JSON
    if data_format == "xml":
        return serialize_xml(_build(root, payload)), content_type
    _, namespace = _SOAP[version]
    envelope = etree.Element(f"{{{namespace}}}Envelope", nsmap={"soap": namespace})
    body = etree.SubElement(envelope, f"{{{namespace}}}Body")
    body.append(_build(root, payload))
    return serialize_xml(envelope), content_type


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


def _no_constants(name):
    raise ValueError(f"{name} is not valid JSON")




# One decoder for every call (json.loads with keyword arguments builds a new one each time).
_JSON_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def _decode_json(body):
    if orjson_may_read(body):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"Malformed JSON: not valid UTF-8 (byte {exc.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return _JSON_DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"Malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BadRequest("Malformed JSON: nested too deeply") from None
    except ValueError as exc:
        reason = "a number is too long" if "digits" in str(exc) else str(exc)
        raise BadRequest(f"Malformed JSON: {reason}") from None


# -- form, query, raw -------------------------------------------------------------


def _decode_pairs(data, what):
    """``a=1&a=2&b=`` → ``{"a": ["1", "2"], "b": ""}`` with strict UTF-8."""
    try:
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        pairs = parse_qsl(data, keep_blank_values=True, encoding="utf-8", errors="strict",
                          max_num_fields=_MAX_FORM_FIELDS)
    except UnicodeDecodeError:
        raise BadRequest(f"Malformed {what}: not valid UTF-8") from None
    except ValueError:
        raise BadRequest(f"Malformed {what}: more than {_MAX_FORM_FIELDS} fields") from None
    result = {}
    for key, value in pairs:
        previous = result.get(key)
        if previous is None:
            result[key] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            result[key] = [previous, value]
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
    """Leaf → its text (None if empty); element with children → dict."""
    for _ in element.iterchildren(tag=etree.Element):
        return _children(element)
    return element.text or None


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
    for operation in soap_body.iterchildren(tag=etree.Element):
        return _children(operation)
    return None


def _build(root, payload):
    """``<root>`` holding ``payload``: keys → elements, lists → repeated elements."""
    try:
        element = etree.Element(root)
        _fill(element, payload)
    except (ValueError, TypeError) as exc:
        raise ServiceError(f"Cannot encode output as XML: {exc}") from exc
    return element


def _fill(element, value):
    if isinstance(value, Mapping):
        for key, item in value.items():
            _append(element, str(key), item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _append(element, "item", item)
    elif value is not None:
        element.text = _text(value)


def _append(parent, key, value):
    if isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _fill(etree.SubElement(parent, key), item)
    else:
        _fill(etree.SubElement(parent, key), value)


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
