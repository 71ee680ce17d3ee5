"""Zato's client classes, same names and call shapes: change the import, keep the code.

``AnyServiceInvoker`` speaks the wire format of Zato's ``zato.service.invoke``
(served by the broker at ``POST /zato/admin/invoke``); ``JSONClient`` posts
plain JSON to one service's own channel.  Both answer a
:class:`~broker.client.response.Response` and, like Zato's, do not raise on
an error answer: check ``response.ok``.  Trouble reaching the broker raises
:class:`~broker.client.errors.ConnectionFailed` or ``Timeout``.

Differences from ``zato-client`` 3.2: no ``requests``/``bunch``/``zato-common``
dependencies (``to_bunch=True`` gives attribute-access dicts); a non-JSON
answer or one without ``zato_env`` is ``ok=False`` with ``details`` saying so,
where Zato's raised ``ValueError``/``TypeError``; ``session`` is accepted and
ignored (connections are pooled by the client itself).
"""

import json
from base64 import b64decode, b64encode

from .core import parse_json_response
from .response import Inner, Response
from .transport import Transport

__all__ = ["AnyServiceInvoker", "Bunch", "JSONClient", "ZATO_NOT_GIVEN", "ZATO_OK"]

ZATO_NOT_GIVEN = b"ZATO_NOT_GIVEN"
ZATO_OK = "ZATO_OK"


class Bunch(dict):
    """A dict whose keys are attributes too (what ``to_bunch=True`` gives)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value


def bunchify(value):
    if isinstance(value, dict):
        return Bunch((k, bunchify(v)) for k, v in value.items())
    if isinstance(value, list):
        return [bunchify(v) for v in value]
    return value


class _ZatoClient:
    """What Zato's ``_Client`` took: ``(address, path, auth=None, session=None, ...)``.

    Extra keywords (``timeout``, ``retries``, ``pool_size``...) go to the
    :class:`~broker.client.transport.Transport`.
    """

    def __init__(self, address, path, auth=None, session=None, to_bunch=False,
                 max_response_repr=2500, max_cid_repr=5, logger=None, tls_verify=True, **options):
        self.address = address
        self.path = path
        self.to_bunch = to_bunch
        self.transport = Transport(address, auth, tls_verify=tls_verify, **options)

    def _post(self, body, headers):
        return self.transport.post(self.path, body, headers)

    def close(self):
        self.transport.close()


class AnyServiceInvoker(_ZatoClient):
    """Invoke any service by name through ``zato.service.invoke``.

    ::

        client = AnyServiceInvoker("http://127.0.0.1:17010", "/zato/admin/invoke", ("admin", pw))
        response = client.invoke("customer.get1", {"cust_id": "123"})
        response.ok, response.data, response.cid
    """

    def invoke(self, name=None, payload="", headers=None, channel="invoke", data_format="json",
               transport=None, id=None, to_json=True, output_repeated=ZATO_NOT_GIVEN, pid=None,
               all_pids=False, timeout=None, skip_response_elem=True, **kwargs):
        """Invoke ``name`` with ``payload``; ``response.data`` is its output."""
        return self._invoke(name, payload, headers, channel, data_format, transport, id, to_json,
                            output_repeated, pid, all_pids, timeout, skip_response_elem,
                            kwargs.get("is_async", False), kwargs.get("expiration", 15))

    def invoke_async(self, name=None, payload="", headers=None, channel="invoke",
                     data_format="json", transport=None, id=None, to_json=True, expiration=15,
                     **kwargs):
        """Start ``name`` in the background; ``response.data`` is the invocation's CID."""
        return self._invoke(name, payload, headers, channel, data_format, transport, id, to_json,
                            ZATO_NOT_GIVEN, None, False, None, True, True, expiration)

    def _invoke(self, name, payload, headers, channel, data_format, transport, id, to_json,
                output_repeated, pid, all_pids, timeout, skip_response_elem, is_async, expiration):
        if not name and not id:
            raise ValueError("Either name or id must be provided")
        if name and output_repeated == ZATO_NOT_GIVEN:
            output_repeated = name.lower().endswith("list")
        if to_json:
            payload = json.dumps(payload, default=_jsonable)
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        request = {
            "name": name, "payload": b64encode(payload).decode("ascii"), "channel": channel,
            "data_format": data_format, "transport": transport, "is_async": is_async,
            "expiration": expiration, "pid": pid, "all_pids": all_pids, "timeout": timeout,
            "skip_response_elem": skip_response_elem,
        }
        if id:
            request["id"] = id
        status, answer_headers, content = self._post(request, headers)
        response = _parse_service_invoke(status, answer_headers, content, output_repeated is True,
                                         is_async)
        if self.to_bunch and response.ok:
            response.data = bunchify(response.data)
        return response


class JSONClient(_ZatoClient):
    """Post JSON straight to one service's own channel (no dispatcher).

    ``response.data`` is the decoded answer whatever the status; ``ok`` is
    ``status < 400``.
    """

    def invoke(self, payload="", headers=None, to_json=True):
        body = json.dumps(payload, default=_jsonable) if to_json else payload
        if isinstance(body, str):
            body = body.encode("utf-8")
        status, answer_headers, content = self._post(body, headers)
        cid = answer_headers.get("x-zato-cid") or answer_headers.get("x-broker-cid")
        inner = Inner(status, answer_headers, content)
        try:
            data = json.loads(content) if content.strip() else None
        except ValueError as error:
            return Response(False, None, f"answer is not JSON: {error}", cid, status,
                            answer_headers, inner)
        if self.to_bunch:
            data = bunchify(data)
        return Response(status < 400, data, None, cid, status, answer_headers, inner)


def _parse_service_invoke(status, headers, content, repeated, is_async):
    """Zato's ``ServiceInvokeResponse`` rules (see docs/client.md)."""
    cid = headers.get("x-zato-cid") or headers.get("x-broker-cid")
    inner = Inner(status, headers, content)
    if not 200 <= status < 300:
        generic = parse_json_response(status, headers, content)
        text = content.decode("utf-8", "replace")
        return Response(False, None, text or generic.details, generic.cid or cid, status, headers,
                        inner)
    try:
        body = json.loads(content)
    except ValueError:
        return Response(False, None, f"answer is not JSON (HTTP {status})", cid, status, headers,
                        inner)
    env = body.get("zato_env") if isinstance(body, dict) else None
    if not isinstance(env, dict):
        return Response(False, None, "answer has no zato_env: is the path a zato.service.invoke "
                        "channel?", cid, status, headers, inner)
    cid = env.get("cid") or cid
    if env.get("result") != ZATO_OK:
        return Response(False, None, env.get("details", ""), cid, status, headers, inner)
    encoded = body.get("response")
    if not encoded:
        return Response(True, [] if repeated else None, "", cid, status, headers, inner)
    text = b64decode(encoded).decode("utf-8")
    if is_async:
        return Response(True, text, "", cid, status, headers, inner)
    try:
        data = json.loads(text)
    except ValueError:
        return Response(True, text, "", cid, status, headers, inner)
    meta = None
    if isinstance(data, dict):
        meta = data.pop("_meta", None)
        zato_keys = [k for k in data if k.startswith("zato")]
        if len(data) == 1 and len(zato_keys) == 1:
            data = data[zato_keys[0]]
    return Response(True, data, env.get("details", ""), cid, status, headers, inner, meta)


def _jsonable(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8")
    return str(value)
