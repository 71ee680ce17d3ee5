"""A PEP 3333 gateway on the broker's own HTTP server.

The reactor thread authenticates the request with the mount's security
definition, builds the environ from the parsed request and queues the call
on the mount's bounded :class:`~broker.wsgi.pool.WorkerPool`.  A worker runs
the app and iterates its response:

* an answer up to ``buffer_size`` bytes goes back in one piece (one
  ``callFromThread``, one ``transport.write``): the common case, and the fast one;
* a larger one is streamed (:class:`~broker.http.streaming.HTTPStream`):
  the worker hands parts to the reactor with at most ``window`` parts in
  flight and waits while the client is not reading (back-pressure).

``close()`` of the app's iterable is always called, in the worker.  An app
that fails before its answer started gets a 500 (details in the log, under
the cid); one failing mid-stream gets its connection cut.
"""

import threading
from collections import deque
from io import BytesIO

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from broker.http.protocol import HTTPResponse, HTTPStream
from broker.errors import BrokerError, ServiceUnavailable, Timeout, error_body
from broker.security.credentials import Credentials, authenticate

__all__ = ["WSGIGateway"]

log = Logger()

_JSON = "application/json"
_NAMES = {}          # header name -> environ key (bounded memo)
_MEMO_SIZE = 1024
_SKIPPED = frozenset(("content-type", "content-length"))
# Written by the HTTP server itself (PEP 3333: hop-by-hop headers are the server's).
_FRAMING = frozenset(("content-length", "transfer-encoding", "connection", "keep-alive", "date",
                      "server"))


class _Gone(Exception):
    """The client went away or the call was abandoned: stop iterating."""


class _Errors:
    """``wsgi.errors``: lines an app writes go to the broker's log."""

    def __init__(self, name, cid):
        self._name, self._cid, self._parts = name, cid, []

    def write(self, text):
        self._parts.append(str(text))
        if "\n" in text:
            self.flush()

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        text, self._parts = "".join(self._parts).rstrip(), []
        if text:
            log.error("WSGI {mount} (cid {cid}): {text}", mount=self._name, cid=self._cid, text=text)


class WSGIGateway:
    """Answers the requests under one mount path with one WSGI app.

    :param name: the channel's name (logs, metrics).
    :param mount: the path prefix (``SCRIPT_NAME``); ``/`` mounts at the root.
    :param app: the WSGI callable.
    :param pool: the :class:`~broker.wsgi.pool.WorkerPool`.
    :param security: a security definition (``REMOTE_USER`` = its caller) or None.
    :param request_filter: ``callable(environ)`` → None, or ``(status, headers, body)`` to
        answer instead of the app.
    :param response_filter: ``callable(environ, status, headers)`` → ``(status, headers)``.
    :param timeout: seconds the app may take to start its answer (→ 504, counted, checked
        by :meth:`sweep`); 0: none.
    :param buffer_size: answers up to this many bytes are sent in one piece.
    :param window: streamed parts in flight between a worker and the reactor.
    """

    def __init__(self, name, mount, app, pool, reactor, security=None, request_filter=None,
                 response_filter=None, timeout=60.0, buffer_size=65536, window=8):
        self.name = name
        self.script_name = "" if mount == "/" else mount
        self.app = app
        self.pool = pool
        self.reactor = reactor
        self.security = security
        self.request_filter = request_filter
        self.response_filter = response_filter
        self.timeout = timeout
        self.buffer_size = buffer_size
        self.window = window
        self.counters = {"requests": 0, "rejected": 0, "errors": 0, "timeouts": 0, "streamed": 0,
                         "client_gone": 0}
        # not passed on to the app
        self._credential_headers = security.credential_headers if security is not None else frozenset()
        self._inflight = {}  # call -> start time, oldest first (one timeout for all)
        self._posted = deque()
        self._drain_due = False
        self._base = {
            "SCRIPT_NAME": self.script_name, "SERVER_SOFTWARE": "broker",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.multithread": True,
            "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.input_terminated": True,
        }

    def metrics(self):
        return {**self.counters, "rejected": self.pool.rejected, "busy": self.pool.pending}

    # -- from the workers ----------------------------------------------------------

    def post(self, fn, *args):
        """Run ``fn(*args)`` on the reactor thread, in order (any thread).

        Under load many answers share one wake-up of the reactor: a drain
        already due takes what is posted meanwhile.
        """
        self._posted.append((fn, args))
        if not self._drain_due:
            self._drain_due = True
            self.reactor.callFromThread(self._drain)

    def _drain(self):
        self._drain_due = False  # before popping: what is posted from now on gets a new drain
        posted = self._posted
        while posted:
            fn, args = posted.popleft()
            try:
                fn(*args)
            except Exception:
                log.failure("WSGI {mount}: answering failed", mount=self.name)

    # -- reactor thread ---------------------------------------------------------

    def handle(self, request, cid, params):
        """The route's target: a Deferred of an HTTPResponse or HTTPStream."""
        caller = None
        if self.security is not None:
            credentials = Credentials(request.headers, peer=request.peer, cid=cid)
            caller = authenticate(self.security, credentials).caller
        environ = self._environ(request, caller, cid)
        self.counters["requests"] += 1
        call = _Call(self, environ, cid)
        if not self.pool.submit(call.run):
            raise ServiceUnavailable(f"{self.name}: all WSGI threads busy and the queue is full")
        if self.timeout:
            self._inflight[call] = self.reactor.seconds()
        return call.deferred

    def sweep(self):
        """Answer 504 to calls whose app has not started answering within ``timeout``.

        Called every ``sweep_interval`` seconds (a timer per request would
        cost more than the rest of the gateway's bookkeeping together).
        """
        inflight = self._inflight
        if not inflight:
            return
        limit = self.reactor.seconds() - self.timeout
        expired = []
        for call, started in inflight.items():
            if started > limit:
                break
            expired.append(call)
        for call in expired:
            del inflight[call]
            self._timed_out(call)

    @property
    def sweep_interval(self):
        return max(0.05, min(1.0, self.timeout / 10))

    def _environ(self, request, caller, cid):
        environ = self._base.copy()
        path = request.path
        rest = path[len(self.script_name):]
        if not rest.isascii():  # PEP 3333: the URL's bytes, as latin-1 text
            rest = rest.encode("utf-8").decode("latin-1")
        environ["REQUEST_METHOD"] = request.method
        environ["PATH_INFO"] = rest
        environ["QUERY_STRING"] = request.query
        environ["SERVER_PROTOCOL"] = "HTTP/" + request.version
        environ["REMOTE_ADDR"] = request.peer
        skipped = self._credential_headers
        for name, value in request.headers.items():
            if name in _SKIPPED or name in skipped:
                if name == "content-type":
                    environ["CONTENT_TYPE"] = value
                continue
            key = _NAMES.get(name)
            if key is None:
                if "_" in name:  # X-User_Id would pass for X-User-Id: drop it
                    continue
                key = "HTTP_" + name.upper().replace("-", "_")
                if len(_NAMES) < _MEMO_SIZE:
                    _NAMES[name] = key
            environ[key] = value
        host = request.headers.get("host", "")
        server, _, port = host.rpartition(":") if host[-1:].isdigit() and ":" in host else (host, "", "")
        environ["SERVER_NAME"] = server or "localhost"
        environ["SERVER_PORT"] = port or "80"
        body = request.body
        environ["CONTENT_LENGTH"] = str(len(body)) if body else ""
        environ["wsgi.input"] = BytesIO(body)
        environ["wsgi.errors"] = _Errors(self.name, cid)
        environ["broker.cid"] = cid
        if caller is not None:
            environ["REMOTE_USER"] = caller
        return environ

    def _answer(self, call, response):
        """The whole answer is ready (from a worker)."""
        self.pool.release()
        self._inflight.pop(call, None)
        if response is not None and not call.deferred.called:
            call.deferred.callback(response)

    def _failed(self, call, status=500, message=None):
        self.counters["errors"] += 1
        error = BrokerError(message)
        error.status = status
        body = error_body(error, call.cid)
        self._answer(call, HTTPResponse(status, [("Content-Type", _JSON), ("X-Broker-CID", call.cid)],
                                        body))

    def _start_stream(self, call, status, headers, length):
        """The answer is larger than the buffer: stream it."""
        self._inflight.pop(call, None)
        if call.deferred.called:  # timed out or cancelled meanwhile
            call.gone()
            return
        self.counters["streamed"] += 1
        call.deferred.callback(HTTPStream(status, headers, call.started, length))

    def _write_part(self, call, data):
        writer = call.writer
        if writer is None or writer.lost or writer.done:
            call.gone()
            return
        waiting = writer.write(data)
        if waiting is None:
            call.credits.release()
        else:
            waiting.addCallbacks(lambda _: call.credits.release(), lambda _: call.gone())

    def _end_stream(self, call, ok):
        self.pool.release()
        writer = call.writer
        if writer is None:
            return
        if writer.lost:
            self.counters["client_gone"] += 1
        elif ok:
            writer.finish()
        else:
            self.counters["errors"] += 1
            writer.abort()

    def _timed_out(self, call):
        if call.deferred.called:
            return
        self.counters["timeouts"] += 1
        call.gone()
        error = Timeout(f"{self.name}: the app did not answer within {self.timeout:g}s")
        call.deferred.callback(HTTPResponse(
            504, [("Content-Type", _JSON), ("X-Broker-CID", call.cid)], error_body(error, call.cid)))


class _Call:
    """One request's run of the app, in a worker thread."""

    __slots__ = ("gateway", "environ", "cid", "deferred", "status", "headers",
                 "headers_sent", "parts", "buffered", "streaming", "credits", "writer", "lost")

    def __init__(self, gateway, environ, cid):
        self.gateway = gateway
        self.environ = environ
        self.cid = cid
        self.deferred = Deferred(self._cancel)
        self.status = self.headers = self.credits = self.writer = None
        self.headers_sent = self.streaming = self.lost = False
        self.parts = []
        self.buffered = 0

    # -- reactor thread ---------------------------------------------------------

    def _cancel(self, deferred):
        """The connection closed before the answer started."""
        self.gone()

    def started(self, writer):
        self.writer = writer

    def gone(self):
        self.lost = True
        if self.credits is not None:
            self.credits.release()  # wake a worker waiting to send

    # -- worker thread ------------------------------------------------------------

    def run(self):
        gateway = self.gateway
        call_from_thread = gateway.post
        environ = self.environ
        try:
            answer = None
            if gateway.request_filter is not None:
                answer = gateway.request_filter(environ)
            if answer is not None:
                status, headers, body = answer
                self.start_response(status, headers)
                self._emit(body)
            else:
                iterable = gateway.app(environ, self.start_response)
                try:
                    for part in iterable:
                        if part:
                            self._emit(part)
                        if self.lost:
                            break
                finally:
                    close = getattr(iterable, "close", None)
                    if close is not None:
                        close()
            if self.status is None:
                raise RuntimeError("the app returned without calling start_response")
        except _Gone:
            call_from_thread(gateway._end_stream if self.streaming else gateway._answer, self,
                             True if self.streaming else None)
        except BaseException:
            log.failure("WSGI app {mount} failed (cid {cid})", mount=gateway.name, cid=self.cid)
            if self.streaming:
                call_from_thread(gateway._end_stream, self, False)
            else:
                call_from_thread(gateway._failed, self)
        else:
            if self.streaming:
                call_from_thread(gateway._end_stream, self, True)
            else:
                call_from_thread(gateway._answer, self, self._whole())

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        code = int(status[:3])
        if not 100 <= code <= 999:
            raise ValueError(f"bad WSGI status {status!r}")
        headers = list(headers)
        if self.gateway.response_filter is not None:
            status, headers = self.gateway.response_filter(self.environ, status, headers)
            code, headers = int(status[:3]), list(headers)
        self.status, self.headers = code, headers
        return self._emit

    def _emit(self, data):
        """A part of the body (from the iterable or the legacy ``write``)."""
        if self.status is None:
            raise AssertionError("body before start_response")
        if self.lost:
            raise _Gone()
        if not data:
            return
        if self.streaming:
            self._send(data)
            return
        self.parts.append(data)
        self.buffered += len(data)
        if self.buffered > self.gateway.buffer_size:
            self._stream()

    def _whole(self):
        parts = self.parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        if body.__class__ is not bytes:
            body = bytes(body)
        headers = [h for h in self.headers if h[0].lower() not in _FRAMING]
        headers.append(("X-Broker-CID", self.cid))
        return HTTPResponse(self.status, headers, body)

    def _stream(self):
        """Switch to streaming: send the head, then what was buffered."""
        self.streaming = self.headers_sent = True
        self.credits = threading.Semaphore(self.gateway.window)
        length = None
        for name, value in self.headers:
            if name.lower() == "content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
        headers = [h for h in self.headers if h[0].lower() not in _FRAMING]
        headers.append(("X-Broker-CID", self.cid))
        self.gateway.post(self.gateway._start_stream, self, self.status, headers,
                                            length)
        parts, self.parts = self.parts, None
        for part in parts:
            self._send(part)

    def _send(self, data):
        self.credits.acquire()
        if self.lost:
            raise _Gone()
        self.gateway.post(self.gateway._write_part, self, bytes(data))

