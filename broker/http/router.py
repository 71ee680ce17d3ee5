"""The routing table: URL path templates and methods → routes.

Static paths are one dict lookup; templates such as ``/customer/{cust_id}``
compile to a regular expression tried in the order they were added.  One
path may carry several routes that differ by method.  A prefix route
(``prefix=True``, a mounted WSGI app) answers its path and everything below
it, for any method, when no static or template route matches; the longest
prefix wins.
"""

import re

from broker.errors import MethodNotAllowed, NotFound

__all__ = ["Route", "RouteDoc", "Router", "compile_path"]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def compile_path(template):
    """``/a/{x}/b`` → (regex, ("x",)); a template without params → (None, ())."""
    names = tuple(_PARAM.findall(template))
    if not names:
        return None, ()
    pattern, pos = [], 0
    for match in _PARAM.finditer(template):
        pattern.append(re.escape(template[pos:match.start()]))
        pattern.append(f"(?P<{match.group(1)}>[^/]+)")
        pos = match.end()
    pattern.append(re.escape(template[pos:]))
    return re.compile("^" + "".join(pattern) + "$"), names


class RouteDoc:
    """How a built-in route is documented in the OpenAPI document.

    :param summary: one line.
    :param responses: ``{status: (description, {media type: schema})}``, the route's own answers.
    :param errors: statuses the route answers with the JSON error body (the protocol's are added).
    :param parameters: OpenAPI parameter objects; path parameters not among them are strings.
    :param body: ``{media type: schema}`` of the request body, or None for none.
    :param security: the security definitions accepting callers (None among them: anonymous
        callers too); a 401 is documented when any is given.
    :param tag: the group the route is shown in.
    """

    __slots__ = ("summary", "description", "responses", "errors", "parameters", "body", "security",
                 "tag")

    def __init__(self, summary, responses, *, description=None, errors=(), parameters=(), body=None,
                 security=(), tag="broker"):
        self.summary = summary
        self.description = description
        self.responses = responses
        self.errors = tuple(errors)
        self.parameters = tuple(parameters)
        self.body = body
        self.security = tuple(security)
        self.tag = tag


class Route:
    """One path + method set and what answers it.

    :ivar target: a service name (``kind == "service"``) or a callable
        ``(http_request, cid, params) -> HTTPResponse`` (``kind == "builtin"``).
    :ivar channel: the :class:`~broker.services.context.ChannelInfo` for services.
    :ivar doc: a built-in route's :class:`~broker.admin.openapi.RouteDoc`; None leaves it out
        of the OpenAPI document (service routes are described from their service).
    """

    __slots__ = ("name", "path", "methods", "kind", "target", "channel", "regex",
                 "param_names", "cid_header", "prefix", "doc")

    def __init__(self, name, path, methods, target, kind="service", channel=None, cid_header=None,
                 prefix=False, doc=None):
        self.name = name
        self.path = path
        self.methods = frozenset(m.upper() for m in methods)
        self.kind = kind
        self.target = target
        self.channel = channel
        self.prefix = prefix
        if prefix:
            if "{" in path or (path != "/" and path.endswith("/")):
                raise ValueError(f"{path}: a mount path has no {{params}} and no trailing slash")
            self.regex, self.param_names = None, ()
        else:
            self.regex, self.param_names = compile_path(path)
        self.cid_header = cid_header
        self.doc = doc

    def __repr__(self):
        return f"Route({self.name!r}, {self.path!r}, {sorted(self.methods)})"


class Router:
    """Finds the route for a method and a path."""

    def __init__(self):
        self._static = {}      # path -> {method: route}
        self._templates = []   # (regex, {method: route})
        self._prefixes = []    # (path + "/", route), longest first
        self.routes = []

    def add(self, route):
        """Add a route; the same path and method twice is an error."""
        if route.prefix:
            for _, other in self._prefixes:
                if other.path == route.path:
                    raise ValueError(f"{route.path}: already mounted by {other.name}")
            self._prefixes.append((route.path.rstrip("/") + "/", route))
            self._prefixes.sort(key=lambda item: len(item[0]), reverse=True)
            self.routes.append(route)
            return
        if route.regex is None:
            table = self._static.setdefault(route.path, {})
        else:
            for regex, table in self._templates:
                if regex.pattern == route.regex.pattern:
                    break
            else:
                table = {}
                self._templates.append((route.regex, table))
        taken = route.methods & table.keys()
        if taken:
            raise ValueError(f"{route.path}: {', '.join(sorted(taken))} already routed "
                             f"to {table[next(iter(taken))].name}")
        for method in route.methods:
            table[method] = route
        self.routes.append(route)

    def remove(self, route):
        """Stop answering ``route`` (added before with :meth:`add`)."""
        self.routes.remove(route)
        if route.prefix:
            self._prefixes = [(mount, r) for mount, r in self._prefixes if r is not route]
            return
        if route.regex is None:
            tables = [self._static.get(route.path, {})]
        else:
            tables = [table for regex, table in self._templates if regex.pattern == route.regex.pattern]
        for table in tables:
            for method in route.methods:
                if table.get(method) is route:
                    del table[method]
        self._static = {path: table for path, table in self._static.items() if table}
        self._templates = [(regex, table) for regex, table in self._templates if table]

    def match(self, method, path):
        """The route and path params for a request.

        :raise NotFound: no route has this path.
        :raise MethodNotAllowed: the path exists, the method does not (``Allow`` set).
        """
        table = self._static.get(path)
        params = {}
        if table is None:
            for regex, candidate in self._templates:
                found = regex.match(path)
                if found is not None:
                    table, params = candidate, found.groupdict()
                    break
            else:
                for mount, route in self._prefixes:
                    if path.startswith(mount) or path == route.path:
                        return route, {}
                raise NotFound(f"No route for {path}")
        route = table.get(method)
        if route is None:
            if method == "HEAD":
                route = table.get("GET")
            if route is None:
                allowed = set(table)
                if "GET" in allowed:
                    allowed.add("HEAD")
                raise MethodNotAllowed(sorted(allowed), f"Method {method} not allowed on {path}")
        return route, params
