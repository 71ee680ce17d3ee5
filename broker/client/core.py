"""``Client``: invoke any service by name and publish to topics, in plain dicts."""

import json
import time
from urllib.parse import quote

from .errors import Timeout, error_for
from .response import Inner, Response
from .transport import Transport

__all__ = ["Client", "parse_json_response", "task_error"]


class Client:
    """A client of one broker; thread-safe, keep one per process.

    ::

        client = Client("http://127.0.0.1:17010", auth=("admin", password))
        rates = client.invoke("rates.get", {"currencies": "USD,GBP"}).data

    :param address: the broker's ``http://host:port``.
    :param auth: ``(username, password)`` of a Basic Auth security definition.
    :param invoke_path: the dispatcher channel (``broker.service.invoke``).
    :param publish_path: the HTTP publisher, ``{topic}`` is replaced.
    :param tasks_path: a task's status, ``{task_id}`` is replaced.
    :param raise_errors: raise a typed :mod:`~broker.client.errors` exception on an
        error answer (default); when False the Response comes back with ``ok=False``.
    :param options: passed to :class:`~broker.client.transport.Transport`
        (``timeout``, ``connect_timeout``, ``retries``, ``backoff``, ``pool_size``,
        ``max_response_size``, ``tls_verify``, ``headers``).
    """

    def __init__(self, address, auth=None, *, invoke_path="/broker/invoke",
                 publish_path="/broker/publish/{topic}", tasks_path="/broker/tasks/{task_id}",
                 raise_errors=True, **options):
        self.transport = Transport(address, auth, **options)
        self.address = self.transport.address
        self.invoke_path = invoke_path
        self.publish_path = publish_path
        self.tasks_path = tasks_path
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

    def invoke_async(self, service, data=None, *, callback=None, expiration=None, headers=None,
                     timeout=None):
        """Start ``service`` with ``data`` as a task on the broker; return its task id at once.

        Wait for its output with :meth:`result`, look at it with :meth:`status`, or have
        it pushed: subscribe to ``broker.tasks.<task id>`` (or ``broker.tasks.*``) over
        the broker's WebSocket with the same credentials.

        :param callback: a service the broker gives the finished task to.
        :param expiration: seconds the task may take on the broker.
        """
        if not service or not isinstance(service, str):
            raise ValueError("service: expected a service name")
        body = {"service": service, "data": data, "async": True}
        if callback is not None:
            body["callback"] = callback
        if expiration is not None:
            body["expiration"] = expiration
        response = self._call(self.invoke_path, body, headers, timeout)
        if not response.ok:
            return None
        return response.data["task_id"]

    def status(self, task_id, *, headers=None, timeout=None):
        """The task's status: ``{"task_id", "status", "service", ...}`` with ``data`` once
        ``done`` or the typed ``error`` once ``failed``; None when not raising errors."""
        path = self.tasks_path.format(task_id=quote(str(task_id), safe=""))
        status, answer_headers, content = self.transport.get(path, headers, timeout)
        response = parse_json_response(status, answer_headers, content)
        if not response.ok:
            if self.raise_errors:
                raise error_for(response)
            return None
        return response.data

    def result(self, task_id, timeout=60.0, *, interval=0.05, max_interval=1.0, headers=None):
        """Wait for the task to finish (polling its status, ever less often up to
        ``max_interval``) and return the service's output.

        :raise Timeout: not finished within ``timeout`` seconds (the task goes on).
        :raise BrokerHTTPError: the task failed: the typed error it failed with
            (``GatewayTimeout`` for a timeout, ``ServiceError``...), or the status
            could not be read (``NotFound`` for an unknown or expired task).
        """
        deadline = time.monotonic() + timeout
        while True:
            view = self.status(task_id, headers=headers)
            if view is None:
                return None
            if view["status"] == "done":
                return view.get("data")
            if view["status"] == "failed":
                raise task_error(view)
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"task {task_id} did not finish within {timeout}s")
            time.sleep(min(interval, left))
            interval = min(interval * 2, max_interval)

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


def task_error(view):
    """The typed exception a failed task's ``error`` stands for (by its status and code)."""
    error = view.get("error") or {}
    status = error.get("status") or 500
    body = {"result": "Error", "code": error.get("code"), "details": error.get("details"),
            "task_id": view.get("task_id")}
    content = json.dumps(body).encode()
    response = Response(False, body, error.get("details") or f"task {view.get('task_id')} failed",
                        None, status, {}, Inner(status, {}, content))
    return error_for(response)
