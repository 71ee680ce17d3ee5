"""``Client``: invoke any service by name and publish to topics, in plain dicts."""

import json
from urllib.parse import quote

from .errors import error_for
from .response import Inner, Response
from .transport import Transport

__all__ = ["Client", "parse_json_response"]


class Client:
    """A client of one broker; thread-safe, keep one per process.

    ::

        client = Client("http://127.0.0.1:17010", auth=("admin", password))
        rates = client.invoke("rates.get", {"currencies": "USD,GBP"}).data

    :param address: the broker's ``http://host:port``.
    :param auth: ``(username, password)`` of a Basic Auth security definition.
    :param invoke_path: the dispatcher channel (``broker.service.invoke``).
    :param publish_path: the HTTP publisher, ``{topic}`` is replaced.
    :param raise_errors: raise a typed :mod:`~broker.client.errors` exception on an
        error answer (default); when False the Response comes back with ``ok=False``.
    :param options: passed to :class:`~broker.client.transport.Transport`
        (``timeout``, ``connect_timeout``, ``retries``, ``backoff``, ``pool_size``,
        ``max_response_size``, ``tls_verify``, ``headers``).
    """

    def __init__(self, address, auth=None, *, invoke_path="/broker/invoke",
                 publish_path="/broker/publish/{topic}", raise_errors=True, **options):
        self.transport = Transport(address, auth, **options)
        self.address = self.transport.address
        self.invoke_path = invoke_path
        self.publish_path = publish_path
        self.raise_errors = raise_errors

    def invoke(self, service, data=None, *, headers=None, timeout=None):
        """Run ``service`` with ``data`` (a dict) and return its :class:`Response`.

        ``response.data`` is the service's output.  An error answer raises
        (see ``raise_errors``); connection trouble raises ``ConnectionFailed``
        or ``Timeout`` whatever ``raise_errors`` says.
        """
        if not service or not isinstance(service, str):
            raise ValueError("service: expected a service name")
        return self._call(self.invoke_path, {"service": service, "data": data}, headers, timeout)

    def invoke_async(self, service, data=None, **kwargs):
        """Not available yet: the broker has no asynchronous dispatcher with task ids.

        Zato-style fire-and-forget works today through
        :meth:`AnyServiceInvoker.invoke_async <broker.client.zato.AnyServiceInvoker.invoke_async>`
        (answers the CID, no result can be fetched).
        """
        raise NotImplementedError(
            "invoke_async: the broker does not offer asynchronous invocation with task ids yet; "
            "use invoke(), or AnyServiceInvoker.invoke_async() for fire-and-forget")

    def publish(self, topic, data, *, headers=None, timeout=None):
        """Publish ``data`` to ``topic``; ``response.data`` holds the message id."""
        if not topic or not isinstance(topic, str):
            raise ValueError("topic: expected a topic name")
        path = self.publish_path.format(topic=quote(topic, safe=""))
        return self._call(path, data, headers, timeout)

    def _call(self, path, body, headers, timeout):
        status, answer_headers, content = self.transport.post(path, body, headers, timeout)
        response = parse_json_response(status, answer_headers, content)
        if not response.ok and self.raise_errors:
            raise error_for(response)
        return response

    @property
    def counters(self):
        """Requests, retries, connection errors and timeouts so far."""
        return dict(self.transport.counters)

    def close(self):
        """Close pooled connections (the client stays usable: it reconnects)."""
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Client({self.address!r})"


def parse_json_response(status, headers, content):
    """A :class:`Response` for the broker's JSON answer (or error body)."""
    cid = headers.get("x-broker-cid") or headers.get("x-zato-cid")
    inner = Inner(status, headers, content)
    try:
        data = json.loads(content) if content.strip() else None
    except ValueError:
        data = None
        details = content.decode("utf-8", "replace")[:2000] or f"HTTP {status}"
        return Response(False, None, details, cid, status, headers, inner)
    if 200 <= status < 300:
        return Response(True, data, "", cid, status, headers, inner)
    details = data.get("details") if isinstance(data, dict) else None
    return Response(False, data, details or f"HTTP {status}", cid, status, headers, inner)
