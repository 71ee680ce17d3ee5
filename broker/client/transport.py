"""HTTP for the client: pooled keep-alive connections, timeouts, connection retries.

urllib3 gives thread-safe pooling (one client is shared by every request
thread of a Django or Flask process).  Only failures to *connect* are
retried, with a bounded count and backoff: once a request may have reached
the broker it is never sent twice.
"""

import json

import urllib3
from urllib3.exceptions import (ConnectTimeoutError, HTTPError, MaxRetryError, NewConnectionError,
                                ProtocolError, ReadTimeoutError)

from .errors import ConnectionFailed, ResponseTooLarge, Timeout

__all__ = ["Transport"]

USER_AGENT = "broker-client/0.1"


class Transport:
    """POSTs to one broker.

    :param address: ``http://host:port`` (or https).
    :param auth: ``(username, password)`` for HTTP Basic, or None.
    :param timeout: seconds to wait for the answer.
    :param connect_timeout: seconds to wait for a connection (default: ``timeout``).
    :param retries: how often a failed *connection* is retried (0: never).
    :param backoff: the retry backoff factor in seconds (0.1 → 0.1, 0.2, 0.4...).
    :param pool_size: keep-alive connections kept per host.
    :param max_response_size: the largest answer read, in bytes.
    :param tls_verify: verify the broker's certificate (https), or a CA bundle path.
    :param headers: headers sent with every call (e.g. an API key).
    """

    def __init__(self, address, auth=None, *, timeout=30.0, connect_timeout=None, retries=3,
                 backoff=0.1, pool_size=10, max_response_size=64 * 1024 * 1024, tls_verify=True,
                 headers=None):
        if not isinstance(address, str) or not address.startswith(("http://", "https://")):
            raise ValueError(f"address: expected http://host:port or https://host:port, got {address!r}")
        if retries < 0 or retries > 100:
            raise ValueError(f"retries: expected 0..100, got {retries!r}")
        self.address = address.rstrip("/")
        self.timeout = timeout
        self.connect_timeout = connect_timeout if connect_timeout is not None else timeout
        self.max_response_size = max_response_size
        self.retry = urllib3.Retry(total=retries, connect=retries, read=0, redirect=0, status=0,
                                   other=0, backoff_factor=backoff, raise_on_redirect=False,
                                   raise_on_status=False)
        base = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if auth is not None:
            if isinstance(auth, (tuple, list)) and len(auth) == 2:
                base.update(urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}"))
            else:
                raise ValueError("auth: expected (username, password)")
        base.update(headers or {})
        self.headers = base
        kwargs = {}
        if address.startswith("https://"):
            if tls_verify is False:
                kwargs["cert_reqs"] = "CERT_NONE"
            elif isinstance(tls_verify, str):
                kwargs["ca_certs"] = tls_verify
        self.pool = urllib3.PoolManager(num_pools=4, maxsize=pool_size, block=False, **kwargs)
        self.counters = {"requests": 0, "connection_errors": 0, "timeouts": 0, "retries": 0}

    def post(self, path, body, headers=None, timeout=None):
        """POST ``body`` (bytes, or an object sent as JSON) → ``(status, headers, content)``.

        :raise ConnectionFailed: the broker could not be reached after the retries.
        :raise Timeout: no answer in time.
        """
        return self.request("POST", path, body, headers, timeout)

    def request(self, method, path, body=None, headers=None, timeout=None):
        """Any method; ``body`` None sends none (see :meth:`post`)."""
        if body is None:
            sent = self.headers if not headers else {**self.headers, **headers}
            return self._send(method, path, None, sent, timeout)
        if not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body, default=_jsonable, separators=(",", ":")).encode("utf-8")
        sent = self.headers if not headers else {**self.headers, **headers}
        if "Content-Type" not in sent:
            sent = {**sent, "Content-Type": "application/json"}
        return self._send(method, path, body, sent, timeout)

    def get(self, path, headers=None, timeout=None):
        """GET ``path`` → ``(status, headers, content)``; raises as :meth:`post` does."""
        return self.request("GET", path, None, headers, timeout)

    def _send(self, method, path, body, sent, timeout):
        read = self.timeout if timeout is None else timeout
        self.counters["requests"] += 1
        url = self.address + path
        try:
            answer = self.pool.request(
                method, url, body=body, headers=sent, retries=self.retry, redirect=False,
                preload_content=False, timeout=urllib3.Timeout(connect=self.connect_timeout, read=read))
        except MaxRetryError as error:
            return self._failed(error.reason or error, url)
        except (HTTPError, OSError) as error:
            return self._failed(error, url)
        try:
            history = answer.retries.history if answer.retries is not None else ()
            self.counters["retries"] += len(history)
            content = answer.read(self.max_response_size + 1)
            if len(content) > self.max_response_size:
                raise ResponseTooLarge(f"answer from {url} is over {self.max_response_size} bytes")
            headers = {k.lower(): v for k, v in answer.headers.items()}
            return answer.status, headers, content
        except ReadTimeoutError:
            self.counters["timeouts"] += 1
            raise Timeout(f"no answer from {url} within {read}s") from None
        except (ProtocolError, OSError) as error:
            self.counters["connection_errors"] += 1
            raise ConnectionFailed(f"connection to {url} lost: {error}") from None
        finally:
            answer.release_conn()

    def _failed(self, error, url):
        if isinstance(error, (ReadTimeoutError,)) or (isinstance(error, TimeoutError)
                                                      and not isinstance(error, ConnectTimeoutError)):
            self.counters["timeouts"] += 1
            raise Timeout(f"no answer from {url} within {self.timeout}s") from None
        self.counters["connection_errors"] += 1
        if isinstance(error, (NewConnectionError, ConnectTimeoutError)):
            raise ConnectionFailed(f"cannot connect to {self.address}: {_reason(error)}") from None
        raise ConnectionFailed(f"request to {url} failed: {_reason(error)}") from None

    def close(self):
        """Close the pooled connections."""
        self.pool.clear()


def _reason(error):
    text = str(error)
    return text.split(": ", 1)[-1] if "Failed to establish" in text else text


def _jsonable(value):
    """datetimes → ISO 8601, bytes → UTF-8 text, sets → lists, Decimals → str (as Zato's client)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8")
    if isinstance(value, (set, frozenset)):
        return list(value)
    return str(value)
