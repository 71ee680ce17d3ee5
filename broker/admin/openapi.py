"""The OpenAPI 3.1 document: every route, what it takes and everything it may answer.

Service routes are described from their channel (path, methods, data format,
security) and the service's SimpleIO; a built-in route carries a
:class:`~broker.http.router.RouteDoc`.  Every operation lists each status the server may answer
it with, and that answer's body: the JSON error body (:data:`ERROR_SCHEMA`),
or a SOAP fault where a SOAP channel answers one.  What the HTTP protocol
refuses before any route is involved (a malformed request, a timeout, a size
over a limit, a transfer coding, too many connections) is a JSON error on
every path, SOAP ones included.
"""

import inspect
import re

from broker.simpleio import SOAP11_NS, SOAP12_NS

__all__ = ["ERROR_SCHEMA", "PROTOCOL_ERRORS", "SERVICE_ERRORS", "build_openapi",
           "markdown"]

# Docstrings are reStructuredText; Swagger UI renders Markdown: ``x`` and :role:`~a.b.x` → `x`.
_RST_LITERAL = re.compile(r"``(.+?)``")
_RST_ROLE = re.compile(r":[a-z:]+:`(~?)([^`]+)`")

_JSON = "application/json"
_REQUEST_MEDIA = {
    "json": _JSON,
    "xml": "application/xml",
    "soap11": "text/xml",
    "soap12": "application/soap+xml",
    "form": "application/x-www-form-urlencoded",
    "raw": "text/plain",
}
_ANSWER_MEDIA = {**_REQUEST_MEDIA, "form": _JSON}
_SOAP = {"soap11": ("11", SOAP11_NS), "soap12": ("12", SOAP12_NS)}
_BODYLESS = {"GET", "HEAD", "DELETE", "OPTIONS"}
_UNDOCUMENTED_METHODS = {"HEAD", "TRACE", "CONNECT"}  # HEAD is answered wherever GET is

#: What the HTTP protocol may answer any request with, before a route is involved (JSON).
PROTOCOL_ERRORS = (400, 408, 413, 431, 501, 503)
#: What a service route may answer besides: the channel's, the invoker's and the service's errors.
SERVICE_ERRORS = (400, 404, 415, 500, 503, 504)

_STATUSES = {
    400: ("BadRequest", "Bad request: a malformed request (request line, headers, chunked framing, "
                        "`Host` missing or repeated, a path or query that is not UTF-8 once "
                        "percent-decoded), a body the data format cannot read, or input that is "
                        "refused; `errors` names every bad field"),
    401: ("Unauthorized", "Credentials missing or wrong; `WWW-Authenticate` says which kind"),
    403: ("Forbidden", "The credentials are good, but not allowed this"),
    404: ("NotFound", "Nothing found: the service found nothing for this input, or no service "
                      "or resource has this name"),
    405: ("MethodNotAllowed", "The path exists, the method does not; `Allow` lists those that do"),
    408: ("RequestTimeout", "The request's head or body did not arrive in time "
                            "(`limits.header_timeout`, `limits.body_timeout`)"),
    413: ("PayloadTooLarge", "The request body is over `limits.max_body_size`"),
    415: ("UnsupportedMediaType", "The body's declared `Content-Type` is not one the route reads "
                                 "(none declared is accepted)"),
    431: ("HeadersTooLarge", "The request head is over `limits.max_header_size` or has more than "
                            "`limits.max_header_count` headers"),
    500: ("InternalError", "The service failed (the broker's log has the details, found by "
                           "`cid`), or its answer is over `limits.max_response_size` (`code` "
                           "`response_too_large`)"),
    501: ("NotImplemented", "A `Transfer-Encoding` other than `chunked`"),
    503: ("Unavailable", "Unavailable for now: over `limits.max_connections`, the thread pool's "
                        "queue is full, or something the service needs is down"),
    504: ("GatewayTimeout", "The service did not finish within `limits.service_timeout`"),
}

ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error's body: Zato's shape, a code naming the problem and the bad fields.",
    "required": ["result", "cid", "code", "details"],
    "properties": {
        "result": {"const": "Error"},
        "cid": {"type": "string", "description": "Correlation id, also in X-Broker-CID"},
        "code": {"type": "string", "description": "The problem, e.g. invalid_input, not_found"},
        "details": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "problem"],
            "properties": {"field": {"type": "string"}, "problem": {"type": "string"}}}},
    },
    "additionalProperties": False,
}


def _soap_fault_schema(version, namespace):
    """The SOAP fault a SOAP channel answers its errors with (``soap_fault``)."""
    soap = {"prefix": "soap"}
    text = {"type": "string"}
    detail = {"type": "object", "properties": {"cid": {**text, "description": "Correlation id"}}}
    if version == "11":
        fault = {"faultcode": {"enum": ["soap:Client", "soap:Server"]}, "faultstring": text,
                 "detail": detail}
    else:
        fault = {"Code": {"type": "object", "xml": soap, "properties": {"Value": {
                     "enum": ["soap:Sender", "soap:Receiver"], "xml": soap}}},
                 "Reason": {"type": "object", "xml": soap, "properties": {"Text": {**text, "xml": soap}}},
                 "Detail": {**detail, "xml": soap}}
    return _envelope(namespace, "Fault", {"type": "object", "xml": soap, "properties": fault}, True)


def _envelope(namespace, name, content, required):
    """A SOAP Envelope whose Body holds one element, ``name``."""
    body = {"type": "object", "xml": {"prefix": "soap"}, "properties": {name: content},
            "additionalProperties": False}
    if required:
        body["required"] = [name]
    return {"type": "object", "xml": {"name": "Envelope", "prefix": "soap", "namespace": namespace},
            "required": ["Body"], "properties": {"Body": body},
            "description": "A Header, and anything else beside the Body, is ignored"}


_CID_HEADER = {"X-Broker-CID": {"description": "Correlation id", "required": True,
                                "schema": {"type": "string"}}}
_EXTRA_HEADERS = {
    401: {"WWW-Authenticate": {"description": "The credentials expected", "schema": {"type": "string"}}},
    405: {"Allow": {"description": "The methods the path has", "required": True,
                    "schema": {"type": "string"}}},
}

_INTRO = """Every answer carries its correlation id in `X-Broker-CID`.

Every error has a JSON body, `{"result": "Error", "cid", "code", "details", "errors": [{"field",
"problem"}]}`, except on SOAP channels, which answer a SOAP fault in their own version. Errors the
HTTP protocol raises before a route is involved are JSON everywhere: a malformed request, a `Host`
missing or repeated, or a path that is not UTF-8 (400), a head or body that does not arrive in
time (408), a body over the limit (413), a head over the limit (431), a `Transfer-Encoding` other
than `chunked` (501), too many connections (503). An unknown path is a 404, a method the path does
not have a 405 with `Allow`."""


def markdown(doc):
    """A docstring's reStructuredText literals and roles as Markdown code spans."""
    return _RST_LITERAL.sub(r"`\1`", _RST_ROLE.sub(_role, doc))


def _role(match):
    """``:class:`~a.b.C``` → `C`, ``:ref:`title <target>``` → `title`, else the target."""
    short, target = match.groups()
    title, bracket, _ = target.partition(" <")
    if bracket:
        return f"`{title}`"
    return f"`{target.rpartition('.')[2] if short else target}`"


class _Document:
    """The document being built: its paths and the components they refer to."""

    def __init__(self):
        self.paths = {}
        self.responses = {}
        self.schemes = {}
        self.error(405)  # documented once: no operation of a path answers it

    def error(self, status, fmt="json"):
        """A reference to the error answer ``status`` on a channel of data format ``fmt``."""
        name, description = _STATUSES[status]
        soap = fmt in _SOAP and (status in SERVICE_ERRORS or status == 401)
        key = f"{name}.{fmt}" if soap else name
        if key not in self.responses:
            content = {}
            if soap:
                fault = f"#/components/schemas/SoapFault{_SOAP[fmt][0]}"
                content[_REQUEST_MEDIA[fmt]] = {"schema": {"$ref": fault}}
                description += " (a SOAP fault"
                description += "; the protocol's own refusals are JSON)" if status in PROTOCOL_ERRORS else ")"
            if not soap or status in PROTOCOL_ERRORS:
                content[_JSON] = {"schema": {"$ref": "#/components/schemas/Error"}}
            self.responses[key] = {"description": description,
                                   "headers": {**_CID_HEADER, **_EXTRA_HEADERS.get(status, {})},
                                   "content": content}
        return {"$ref": f"#/components/responses/{key}"}

    def secure(self, op, definitions):
        """Document who may call ``op``; None among ``definitions`` is an anonymous caller."""
        op["security"] = [{} if d is None else {d.name: []} for d in definitions]
        for definition in definitions:
            if definition is not None:
                self.schemes[definition.name] = definition.scheme

    def add(self, path, method, op):
        self.paths.setdefault(path, {})[method.lower()] = op


def _path_params(route, schemas=None, given=()):
    """The route's path parameters: from ``given``, else ``schemas``, else non-empty strings."""
    named = {p["name"]: p for p in given}
    return [named.get(name) or {"name": name, "in": "path", "required": True,
                                "schema": (schemas or {}).get(name, {"type": "string", "minLength": 1})}
            for name in route.param_names]


def _xml_document(schema, name):
    """``schema`` as the XML element ``name``; a list is its ``item`` children."""
    if schema.get("type") == "array":
        schema = {"type": "object", "properties": {"item": schema}}
    return {**schema, "xml": {"name": name}}


def _request_body(fmt, schema, required):
    """The request body a channel of data format ``fmt`` reads, for input ``schema``."""
    media = _REQUEST_MEDIA[fmt]
    if fmt == "raw":
        schema = {"type": "string"}
    elif fmt == "xml":
        schema = _xml_document(schema, "request")
    elif fmt in _SOAP:
        schema = _envelope(_SOAP[fmt][1], "request", schema, required)
        required = True
    return {"required": required, "content": {media: {"schema": schema}}}


def _answer(fmt, schema, route):
    """The 200 answer of a service route."""
    if fmt in ("xml", "soap11", "soap12"):
        schema = _xml_document(schema, "response")
        if fmt in _SOAP:
            schema = _envelope(_SOAP[fmt][1], "response", schema, True)
    elif fmt == "raw":
        schema = {"type": "string"}
    headers = dict(_CID_HEADER)
    if route.cid_header:
        headers[route.cid_header] = {"description": "Correlation id", "schema": {"type": "string"}}
    return {"description": "The service's output", "headers": headers,
            "content": {_ANSWER_MEDIA[fmt]: {"schema": schema}}}


def _service_operation(document, route, method, entry):
    sio = entry.sio
    fmt = route.channel.data_format
    text = markdown(inspect.getdoc(entry.cls) or "")
    op = {
        "operationId": f"{route.name}.{method.lower()}",
        "summary": text.split("\n", 1)[0] if text else entry.name,
        "description": f"{text}\n\nService `{entry.name}`, data format `{fmt}`.".strip(),
        "tags": [entry.name.split(".", 1)[0]],
    }
    declared = sio is not None and sio.has_input
    input_schema = sio.input_schema() if declared else {}
    properties = input_schema.get("properties", {})
    required = [name for name in input_schema.get("required", ()) if name not in route.param_names]
    params = _path_params(route, properties)
    if method in _BODYLESS:
        params += [{"name": name, "in": "query", "required": name in required, "schema": schema}
                   for name, schema in properties.items() if name not in route.param_names]
    else:
        body_schema = sio.input_schema(json_body=True) if declared and fmt == "json" else input_schema
        if body_schema and route.param_names:
            body_schema = {**body_schema, "required": required, "properties": {
                k: v for k, v in body_schema["properties"].items() if k not in route.param_names}}
        op["requestBody"] = _request_body(fmt, body_schema, bool(required))
    if params:
        op["parameters"] = params
    output_schema = sio.output_schema() if sio is not None and sio.has_output else {}
    statuses = {*PROTOCOL_ERRORS, *SERVICE_ERRORS}
    security = getattr(route.channel.security, "definition", route.channel.security)
    if security is not None:
        document.secure(op, (security,))
        statuses.add(401)
    op["responses"] = {"200": _answer(fmt, output_schema, route),
                       **{str(status): document.error(status, fmt) for status in sorted(statuses)}}
    return op


def _builtin_operation(document, route, method, doc):
    op = {"operationId": f"{route.name}.{method.lower()}", "summary": doc.summary, "tags": [doc.tag]}
    if doc.description:
        op["description"] = doc.description
    params = _path_params(route, given=doc.parameters) + [p for p in doc.parameters if p["in"] != "path"]
    if params:
        op["parameters"] = params
    if doc.body is not None:
        op["requestBody"] = {"content": {media: {"schema": schema} for media, schema in doc.body.items()}}
    responses = {}
    for status, (description, content) in doc.responses.items():
        content = {media: {"schema": schema} for media, schema in content.items()}
        if status in PROTOCOL_ERRORS:  # the protocol may answer the same status: its JSON error
            error = {"$ref": "#/components/schemas/Error"}
            own = content.get(_JSON)
            content[_JSON] = {"schema": {"anyOf": [own["schema"], error]} if own else error}
            description += f"; or the protocol's own {status}, a JSON error"
        responses[str(status)] = {"description": description, "headers": dict(_CID_HEADER),
                                  "content": content}
    statuses = {*PROTOCOL_ERRORS, *doc.errors}
    if doc.security:
        document.secure(op, doc.security)
        if any(d is not None for d in doc.security):
            statuses.add(401)
    for status in sorted(statuses):
        responses.setdefault(str(status), document.error(status))
    op["responses"] = dict(sorted(responses.items()))
    return op


def build_openapi(routes, store, title="broker", version="0"):
    """The OpenAPI 3.1 document for every service route and documented built-in route.

    :param routes: the router's routes (mounted WSGI apps and undocumented built-ins are skipped).
    :param store: the service store the routes point into.
    """
    document = _Document()
    for route in routes:
        if route.kind == "service" and route.target in store:
            entry = store.get(route.target)
            for method in sorted(route.methods - _UNDOCUMENTED_METHODS):
                document.add(route.path, method, _service_operation(document, route, method, entry))
        elif route.kind == "builtin" and route.doc is not None:
            for method in sorted(route.methods - _UNDOCUMENTED_METHODS):
                document.add(route.path, method, _builtin_operation(document, route, method, route.doc))
    components = {
        "schemas": {"Error": ERROR_SCHEMA, "SoapFault11": _soap_fault_schema("11", SOAP11_NS),
                    "SoapFault12": _soap_fault_schema("12", SOAP12_NS)},
        "responses": dict(sorted(document.responses.items())),
    }
    if document.schemes:
        components["securitySchemes"] = document.schemes
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": _INTRO},
        "paths": document.paths,
        "components": components,
    }
