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

from twisted.logger import Logger

from broker.errors import BadRequest, BrokerError, ServiceUnavailable, ValidationError
from broker.jsonfast import JSONInputError, decode_json
from broker.services.base import Service
from broker.simpleio import AsIs, Bool, Text

__all__ = ["DISPATCHERS", "InvokeService", "ZatoInvokeService"]

log = Logger()


class InvokeService(Service):
    """Invoke any service by name with the given data; answer with its output."""

    name = "broker.service.invoke"

    class SimpleIO:
        input_required = (Text("service"),)
        input_optional = (AsIs("data"),)

    async def handle(self):
        self.response.payload = await self.invoke(self.request.input.service, self.request.input.data)


class ZatoInvokeService(Service):
    """Zato's ``zato.service.invoke``, wire-compatible with ``AnyServiceInvoker``.

    ``payload`` is the input of service ``name``, base64-encoded (JSON unless ``data_format``
    says otherwise); the answer is ``{"response": base64 output, "zato_env": {...}}``.  The
    other keys Zato's clients send (``channel``, ``transport``, ``expiration``...) are ignored.
    """

    name = "zato.service.invoke"
    cid_header = "X-Zato-CID"
    max_async = 1000
    _async_running = 0

    class SimpleIO:
        input_required = (Text("name", min_length=1),)
        input_optional = (Text("payload", default=""), Text("data_format", default="json"),
                          Bool("is_async", default=False), Bool("skip_response_elem", default=True))
        undeclared_input = "drop"

    async def handle(self):
        body = self.request.input
        name = body.name
        self._invoker.store.get(name)  # an unknown service is a 404 whatever the payload
        data = _decode_payload(body.payload, body.data_format or "json")
        if body.is_async:
            result = self._start_async(name, data)
        else:
            result = await self.invoke(name, data)
            if body.skip_response_elem:
                result = _skip_response_elem(result)
        self.response.payload = _envelope(result, self.cid)

    def _start_async(self, name, data):
        """Run the service in the background and answer with the CID at once."""
        cls = type(self)
        if cls._async_running >= self.max_async:
            raise ServiceUnavailable("Too many asynchronous invocations in progress")
        cls._async_running += 1
        d = self.invoke(name, data)

        def done(result):
            cls._async_running -= 1
            return result

        def failed(failure):
            if not failure.check(BrokerError):
                log.failure("async invocation of {service} failed (cid {cid})", failure,
                            service=name, cid=self.cid)
                return
            error = failure.value  # a service's own failure is logged in full by the invoker
            log.info("async invocation of {service} failed: {status} {code}: {details} (cid {cid})",
                     service=name, status=error.status, code=error.code, details=error.message,
                     cid=self.cid)

        d.addBoth(done).addErrback(failed)
        return self.cid


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
