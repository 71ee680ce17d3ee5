"""The transport-neutral request and response a service sees.

A channel turns its transport message into a :class:`Request`; the invoker
fills ``input`` from the SimpleIO declaration and hands the service a fresh
:class:`Response` to fill.  Neither knows about sockets.
"""

from broker.simpleio.payload import Payload

__all__ = ["ChannelInfo", "Payload", "Request", "Response", "owner_of"]


class ChannelInfo:
    """Which channel a request came through.

    :ivar name: the channel's configured name (``demo.echo.xml``).
    :ivar type: the channel type (``http``, ``invoke``, ``amqp``, ...).
    :ivar data_format: ``json``, ``xml``, ``soap11``, ``soap12``, ``form`` or ``raw``.
    :ivar security: the security definition guarding it, or None.
    """

    __slots__ = ("name", "type", "data_format", "security", "extra")

    def __init__(self, name, type, data_format="json", security=None, extra=None):
        self.name = name
        self.type = type
        self.data_format = data_format
        self.security = security
        self.extra = extra or {}

    def __repr__(self):
        return f"ChannelInfo({self.name!r}, {self.type!r}, {self.data_format!r})"


INTERNAL = ChannelInfo("invoke", "invoke", "json")


class Request:
    """One invocation's input, whatever transport carried it.

    :ivar input: validated SimpleIO input (a :class:`Payload`), or the raw
        payload for services without SimpleIO.
    :ivar payload: the decoded body (dict, list, str or None).
    :ivar raw_request: the body bytes as received.
    :ivar headers: transport headers, lower-cased names (HTTP headers, AMQP headers).
    :ivar path_params: parameters taken from the URL path.
    :ivar query: parameters taken from the query string.
    :ivar method: the HTTP method, or None for other transports.
    :ivar cid: the correlation id.
    :ivar caller: the authenticated identity, or None.
    :ivar trace: its :class:`~broker.services.tracing.Trace`, set when first needed
        (``tracing.trace_of``).
    """

    __slots__ = ("input", "payload", "raw_request", "headers", "path_params", "query",
                 "method", "path", "channel", "cid", "caller", "peer", "content_type", "depth",
                 "trace")

    def __init__(self, *, payload=None, raw_request=b"", headers=None, path_params=None,
                 query=None, method=None, path=None, channel=INTERNAL, cid=None,
                 caller=None, peer=None, content_type="", depth=0, trace=None):
        self.input = None
        self.payload = payload
        self.raw_request = raw_request
        self.headers = headers if headers is not None else {}
        self.path_params = path_params if path_params is not None else {}
        self.query = query if query is not None else {}
        self.method = method
        self.path = path
        self.channel = channel
        self.cid = cid
        self.caller = caller
        self.peer = peer
        self.content_type = content_type
        self.depth = depth
        self.trace = trace

    @classmethod
    def from_channel(cls, raw_request, headers, path_params, query, method, path, channel, cid,
                     peer, content_type):
        """A request as an edge builds it, per message: positional and without
        ``__init__``'s keyword handling (about three times cheaper)."""
        request = cls.__new__(cls)
        request.input = request.payload = request.caller = request.trace = None
        request.raw_request = raw_request
        request.headers = headers
        request.path_params = path_params
        request.query = query
        request.method = method
        request.path = path
        request.channel = channel
        request.cid = cid
        request.peer = peer
        request.content_type = content_type
        request.depth = 0
        return request

    @property
    def params(self):
        """Query and path parameters together (path wins)."""
        if not self.query:
            return self.path_params
        return {**self.query, **self.path_params}


class Response:
    """What a service answers.

    :ivar payload: a dict/:class:`Payload`, a list, a str or bytes.
    :ivar status: the status code a channel that has one should use.
    :ivar headers: extra headers for transports that carry them.
    :ivar content_type: overrides the channel format's content type.
    :ivar body: the encoded payload, set by the invoker.
    """

    __slots__ = ("payload", "status", "headers", "content_type", "body")

    def __init__(self):
        self.payload = Payload()
        self.status = 200
        self.headers = {}
        self.content_type = None
        self.body = b""


def owner_of(request):
    """Who a task a request makes belongs to: ``<security definition>:<caller>`` of the
    channel it came through (``anonymous:`` for open channels); a task's status and
    topic answer that owner only."""
    channel = request.channel
    security = channel.security
    if security is not None:
        return f"{security.name}:{request.caller or ''}"
    return f"{channel.extra.get('owner_security', 'anonymous')}:{request.caller or ''}"
