"""Services the broker ships: the dispatchers that invoke any service by name.

``broker.service.invoke`` takes ``{"service": NAME, "data": {...}}`` and
answers with that service's output.  ``zato.service.invoke`` speaks exactly
the wire format of Zato's ``zato.service.invoke`` so existing Zato
``AnyServiceInvoker`` clients keep working (base64 payload in,
``{"response": base64, "zato_env": {...}}`` out, ``X-Zato-CID``).
"""

import binascii
import json
from base64 import b64decode, b64encode

from broker.errors import BadRequest, ValidationError
from broker.jsonfast import JSONInputError, decode_json
from broker.services.base import Service
from broker.services.context import owner_of
from broker.simpleio import AsIs, Bool, Float, Text

__all__ = ["DISPATCHERS", "InvokeService", "ZatoInvokeService"]

class InvokeService(Service):
    """Invoke any service by name with the given data; answer with its output.

    ``"async": true`` starts it as a task instead: ``202`` with ``{"task_id", "status"}``
    and a ``Location`` of its status (``callback`` names a service given the result,
    ``expiration`` the seconds it may take).  ``timeout`` bounds a synchronous call.
    """

    name = "broker.service.invoke"

    class SimpleIO:
        input_required = (Text("service"),)
        input_optional = (AsIs("data"), Bool("async", default=False), Text("callback", default=None),
                          Float("expiration", default=None), Float("timeout", default=None))

    async def handle(self):
        body = self.request.input
        if body["async"]:
            task_id = await start_task(self, body.service, body.data, body.callback,
                                       body.expiration)
            self.response.payload = {"task_id": task_id, "status": "pending"}
        else:
            self.response.payload = await self.invoke(body.service, body.data,
                                                      timeout=_timeout(body.timeout))


def start_task(service, name, data, callback=None, expiration=None):
    """Start ``name`` as a task of ``service``'s caller; a Deferred of its id once stored.
    The answer becomes ``202`` with a ``Location`` of the task's status."""
    tasks = service._tasks()
    task_id, stored = tasks.submit(name, data, owner=owner_of(service.request),
                                   parent=service.request, callback=callback,
                                   expiration=expiration)
    service.response.status = 202
    service.response.headers["Location"] = f"/broker/tasks/{task_id}"
    return stored


def _timeout(value):
    if value is None:
        return None
    if not 0 < value <= 86400:
        raise ValidationError.of([{"field": "timeout", "problem": "must be seconds above 0, "
                                                                  "at most 86400"}])
    return value


class ZatoInvokeService(Service):
    """Zato's ``zato.service.invoke``, wire-compatible with ``AnyServiceInvoker``.

    ``payload`` is the input of service ``name``, base64-encoded (JSON unless ``data_format``
    says otherwise); the answer is ``{"response": base64 output, "zato_env": {...}}``.
    ``is_async`` starts a task: ``202``, the task id as the response (Zato's clients read it
    as ``.data``) and under ``task_id``, a ``Location`` of its status; ``expiration`` is the
    seconds it may take.  ``timeout`` bounds a synchronous call.  The other keys Zato's
    clients send (``channel``, ``transport``, ``pid``...) are ignored.
    """

    name = "zato.service.invoke"
    cid_header = "X-Zato-CID"

    class SimpleIO:
        input_required = (Text("name", min_length=1),)
        input_optional = (Text("payload", default=""), Text("data_format", default="json"),
                          Bool("is_async", default=False), Bool("skip_response_elem", default=True),
                          Float("expiration", default=None), Float("timeout", default=None))
        undeclared_input = "drop"

    async def handle(self):
        body = self.request.input
        name = body.name
        self._invoker.store.get(name)  # an unknown service is a 404 whatever the payload
        data = _decode_payload(body.payload, body.data_format or "json")
        if body.is_async:
            task_id = await start_task(self, name, data, expiration=body.expiration)
            self.response.payload = {**_envelope(task_id, self.cid), "task_id": task_id}
            return
        result = await self.invoke(name, data, timeout=_timeout(body.timeout))
        if body.skip_response_elem:
            result = _skip_response_elem(result)
        self.response.payload = _envelope(result, self.cid)


def _decode_payload(payload, data_format):
    if not payload:
        return None
    try:
        data = b64decode(payload, validate=True)
        text = data.decode("utf-8")
    except (binascii.Error, ValueError):
        raise ValidationError.of([{"field": "payload", "problem": "is not valid base64 UTF-8"}]) from None
    if data_format != "json":
        return text
    try:
        return decode_json(data) if text else None
    except JSONInputError as error:
        raise BadRequest(f"Malformed JSON in payload: {error.reason}", errors=error.errors) from None


def _skip_response_elem(result):
    """Strip a lone ``response``/``zato*`` wrapper, as Zato does for its clients."""
    if isinstance(result, dict) and len(result) == 1:
        (key, value), = result.items()
        if key == "response" or key.startswith("zato"):
            return value
    return result


def _envelope(result, cid):
    env = {"result": "ZATO_OK", "cid": cid, "details": ""}
    if result is None or result == "":
        return {"zato_env": env}
    text = result if isinstance(result, str) else json.dumps(result, default=str)
    return {"response": b64encode(text.encode()).decode("ascii"), "zato_env": env}


#: The dispatchers: invoke any service by name (the node adds the transports' own built-ins).
DISPATCHERS = (InvokeService, ZatoInvokeService)
