"""Handing a connection over: ``Upgrade`` requests (WebSocket) leave the HTTP protocol.

A mixin for :class:`~broker.http.protocol.HTTPProtocol`: when the
parser stops after an upgrade request's head, the request waits for its turn
(earlier pipelined requests are answered first), then ``handler.upgrade`` may
take the transport for good; if it declines, the request is answered as HTTP.
"""

from httptools import HttpRequestParser
from twisted.logger import Logger

from broker.http.wire import Refusal

__all__ = ["UpgradeHandOver"]

log = Logger()


class UpgradeHandOver:
    """The upgrade half of the HTTP protocol; the mixer-in provides its state
    (``_upgrade_wait``, ``_queue``, ``_discard``...), ``_refuse`` and ``_pump``."""

    def _upgrade_received(self, data, offset):
        """The parser stopped after an upgrade request's head: wait for our turn."""
        request, self._upgrade_candidate = self._upgrade_candidate, None
        if request is None:
            self._refuse(400, "Malformed request", "malformed")
            return
        more = self._head_more
        raw = data[:offset] if more is None else b"".join([*more[:-1], data[:offset]])
        if not self._begin_clean:  # it began after another request in the same read
            start = raw.rfind(request.method.encode("latin-1") + b" " + self._url + b" ")
            raw = raw[max(start, 0):]
        request.raw_head = raw.lstrip(b"\r\n")
        self._discard = True
        self._upgrade_wait = (request, [data[offset:]])

    def _upgrade_now(self):
        """Offer the connection to ``handler.upgrade``; answer normally if refused."""
        request, tail = self._upgrade_wait
        self._upgrade_wait = None
        data = b"".join(tail)
        protocol = None
        if self._upgrade is not None and request.version == "1.1" and "upgrade" in request.headers:
            try:
                protocol = self._upgrade(request)
            except Exception:
                log.failure("HTTP upgrade handler failed on {path} from {peer}",
                            path=request.path, peer=request.peer)
                self._queue.append(Refusal(500, "Internal error"))
                self._pump()
                return
        if protocol is not None:
            self._counters["upgrades"] += 1
            self._hand_over(protocol, request.raw_head + data)
            return
        self._parser = HttpRequestParser(self)
        if request.method == "CONNECT":  # what follows is a tunnel: answer, then close
            request.keep_alive = False
            self._queue.append(request)
            self._pump()
            return
        # llhttp skipped the body of the upgrade request.  A synthetic head
        # with the same framing lets it read the body and what follows;
        # on_headers_complete puts the real request back in its place.
        headers = request.headers
        if "chunked" in headers.get("transfer-encoding", "").lower():
            framing = "Transfer-Encoding: chunked"
        else:
            framing = f"Content-Length: {headers.get('content-length', '0')}"
        connection = "keep-alive" if request.keep_alive else "close"
        self._resumed = request
        self._discard = False
        self.dataReceived(f"POST / HTTP/{request.version}\r\nConnection: {connection}\r\n"
                          f"{framing}\r\n\r\n".encode("latin-1") + data)

    def _hand_over(self, protocol, data):
        """Give the transport to ``protocol`` for good; forward to it from now on."""
        self._upgraded = protocol
        self._cancel_timer()
        if self._registered:
            self._registered = False
            self.transport.unregisterProducer()
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resumeProducing()
        protocol.makeConnection(self.transport)
        protocol.dataReceived(data)
