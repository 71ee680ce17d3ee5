"""The OpenAPI 3.1 document, generated from HTTP channels and SimpleIO."""

import inspect
import re

__all__ = ["build_openapi"]

# Docstrings are reStructuredText; Swagger UI renders Markdown: ``x`` and :role:`~a.b.x` → `x`.
_RST_LITERAL = re.compile(r"``(.+?)``")
_RST_ROLE = re.compile(r":[a-z:]+:`(~?)([^`]+)`")

_MEDIA = {
    "json": "application/json",
    "xml": "application/xml",
    "soap11": "text/xml",
    "soap12": "application/soap+xml",
    "form": "application/x-www-form-urlencoded",
    "raw": "text/plain",
}
_BODYLESS = {"GET", "HEAD", "DELETE", "OPTIONS"}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["result", "cid", "details"],
    "properties": {
        "result": {"const": "Error"},
        "cid": {"type": "string", "description": "Correlation id, also in X-Broker-CID"},
        "code": {"type": "string"},
        "details": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "problem"],
            "properties": {"field": {"type": "string"}, "problem": {"type": "string"}}}},
    },
}

_CID_HEADER = {"X-Broker-CID": {"description": "Correlation id", "schema": {"type": "string"}}}


def _error(description):
    return {"description": description, "headers": _CID_HEADER,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


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


def _operation(route, method, entry):
    sio = entry.sio
    fmt = route.channel.data_format
    doc = markdown(inspect.getdoc(entry.cls) or "")
    summary = doc.split("\n", 1)[0] if doc else entry.name
    op = {
        "operationId": f"{route.name}.{method.lower()}",
        "summary": summary,
        "description": f"{doc}\n\nService `{entry.name}`, data format `{fmt}`.".strip(),
        "tags": [entry.name.split(".", 1)[0]],
    }
    input_schema = sio.input_schema() if sio is not None and sio.has_input else None
    properties = (input_schema or {}).get("properties", {})
    required = set((input_schema or {}).get("required", ()))
    params = [{"name": name, "in": "path", "required": True,
               "schema": properties.get(name, {"type": "string"})} for name in route.param_names]
    if method in _BODYLESS:
        params += [{"name": name, "in": "query", "required": name in required, "schema": schema}
                   for name, schema in properties.items() if name not in route.param_names]
    elif input_schema is not None:
        body_schema = dict(input_schema)
        if route.param_names:
            body_schema["properties"] = {k: v for k, v in properties.items() if k not in route.param_names}
            body_schema["required"] = [k for k in input_schema.get("required", ()) if k not in route.param_names]
        op["requestBody"] = {"required": bool(body_schema.get("required")),
                             "content": {_MEDIA[fmt]: {"schema": body_schema}}}
    else:
        op["requestBody"] = {"content": {_MEDIA[fmt]: {"schema": {}}}}
    if params:
        op["parameters"] = params
    out_media = "application/json" if fmt in ("form", "json") else _MEDIA[fmt]
    output_schema = sio.output_schema() if sio is not None and sio.has_output else {}
    op["responses"] = {
        "200": {"description": "The service's output", "headers": _CID_HEADER,
                "content": {out_media: {"schema": output_schema}}},
        "400": _error("Malformed or invalid input; every bad field is named"),
        "413": _error("Request body over the configured limit"),
        "500": _error("The service failed; details are in the broker's log"),
    }
    security = route.channel.security
    if security is not None:
        op["security"] = [{security.name: []}]
        op["responses"]["401"] = _error("Missing or wrong credentials")
    return op


def build_openapi(routes, store, title="broker", version="0"):
    """The OpenAPI 3.1 document for every service route.

    :param routes: the router's routes (builtin ones are skipped).
    :param store: the service store the routes point into.
    """
    paths, schemes = {}, {}
    for route in routes:
        if route.kind != "service" or route.target not in store:
            continue
        entry = store.get(route.target)
        item = paths.setdefault(route.path, {})
        for method in sorted(route.methods):
            if method in ("HEAD", "OPTIONS", "TRACE", "CONNECT"):
                continue
            item[method.lower()] = _operation(route, method, entry)
        security = route.channel.security
        if security is not None:
            schemes[security.name] = security.scheme
    doc = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": {"Error": ERROR_SCHEMA}},
    }
    if schemes:
        doc["components"]["securitySchemes"] = schemes
    return doc
