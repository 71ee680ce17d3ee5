"""The broker's WebSocket protocol: a small JSON protocol over autobahn.

Client → server: ``subscribe`` (``topic`` pattern, optional ``since``),
``unsubscribe``, ``publish``, ``invoke``, ``ping``.  Server → client:
``message``, ``gap``, ``ok`` and ``error`` (see ``docs/websocket.md``).  A
mistake in a client's message is answered with an ``error`` frame naming
it; only protocol-level faults (bad UTF-8, oversized frames) close the
socket, as RFC 6455 says.

The protocol is the transport's push producer: when the client reads too
slowly the transport pauses it and messages wait in the session's bounded
queue instead of the transport's unbounded buffer.  A client that stays
paused for ``write_timeout`` (it stopped reading) is dropped.
"""

import fnmatch
import json
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from broker.fastwrite import write_now
from broker.errors import BrokerError, Forbidden, TooManyRequests, Unauthorized
from broker.jsonfast import JSONInputError, decode_json
from broker.pubsub.hub import PublishError
from broker.pubsub.message import parse_msg_id
from broker.pubsub.session import Session
from broker.pubsub.topics import OWNED_PREFIX, TopicError, check_pattern, check_topic
from broker.security.ratelimit import Buckets, Limit
from broker.websocket.tasks import owned_subscribe

__all__ = ["PubSubFactory", "PubSubProtocol"]

log = Logger()
_OPEN = WebSocketServerProtocol.STATE_OPEN


class _Mistake(Exception):
    """A client's message is wrong: answered with an error frame, the socket stays open."""

    def __init__(self, code, message, field=None):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


def _dumps(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


@implementer(IPushProducer)
class PubSubProtocol(WebSocketServerProtocol):
    """One client connection: its session, its permissions, its pending invocations."""

    grant = caller = None
    session = None
    _sent_in_turn = -1      # the factory's turn of this connection's last direct write
    _write_deadline = None  # a DelayedCall while the transport holds us paused

    # -- handshake -------------------------------------------------------------

    def onConnect(self, request):
        factory = self.factory
        headers = request.headers
        if not factory.origin_allowed(headers.get("origin"), headers.get("host")):
            factory.counters["origin_refused"] += 1
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")
        query = {k: v[0] for k, v in request.params.items() if v}
        try:
            self.grant, self.caller = factory.access.caller(headers, query, peer=request.peer)
        except Unauthorized:
            factory.counters["auth_refused"] += 1
            raise ConnectionDeny(401, "unauthorized") from None
        except Forbidden as error:      # good credentials of a definition without permissions
            factory.counters["auth_refused"] += 1
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, error.message) from None
        except TooManyRequests:         # a guarded definition's rate limit
            factory.counters["rate_limited"] += 1
            raise ConnectionDeny(429, "too many requests") from None
        self.traceparent = headers.get("traceparent")  # the trace invocations continue
        return (None, factory.handshake_headers) if factory.handshake_headers else None

    def onOpen(self):
        factory = self.factory
        factory.counters["opened"] += 1
        factory.open.add(self)
        self._pending = 0
        self.session = Session(factory.hub, self, factory.queue_size, factory.max_subscriptions)
        self.session.owner = f"{self.grant.name}:{self.caller or ''}"
        self.transport.registerProducer(self, True)

    def onClose(self, wasClean, code, reason):
        self._cancel_write_deadline()
        self.factory.open.discard(self)
        if not self.factory.open and self.factory.all_closed is not None:
            all_closed, self.factory.all_closed = self.factory.all_closed, None
            all_closed.callback(None)
        if self.session is not None:
            self.factory.counters["closed"] += 1
            self.session.stop()
            self.session = None
            try:
                self.transport.unregisterProducer()
            except Exception:
                pass

    # -- producer: the transport says when to stop and go on -------------------

    def pauseProducing(self):
        if self.session is not None:
            self.factory.counters["paused"] += 1
            self.session.pause()
            if self._write_deadline is None:
                self._write_deadline = self.factory.reactor.callLater(
                    self.factory.write_timeout, self._write_timed_out)

    def resumeProducing(self):
        self._cancel_write_deadline()
        if self.session is not None:
            self.session.resume()

    def stopProducing(self):
        self._cancel_write_deadline()
        if self.session is not None:
            self.session.stop()

    # -- closing -----------------------------------------------------------------

    _in_close_frame = False

    def onCloseFrame(self, code, reasonRaw):
        self._in_close_frame = True
        try:
            return super().onCloseFrame(code, reasonRaw)
        finally:
            self._in_close_frame = False

    def dropConnection(self, abort=False):
        """After a Close is received, close the TCP connection once our own Close is out.

        A Close that breaks the protocol (a reserved code, a reason that is not UTF-8, a
        one-byte body) is answered with ours (1002, 1007), then taken by autobahn as the reply
        to it: its abort would throw ours away, leaving the client a reset and no reason.
        """
        super().dropConnection(abort and not self._in_close_frame)

    def _cancel_write_deadline(self):
        deadline, self._write_deadline = self._write_deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _write_timed_out(self):
        """Paused for ``write_timeout``: the client stopped reading; drop it (logged by autobahn)."""
        self._write_deadline = None
        self.factory.counters["write_timeouts"] += 1
        self.wasClean = False
        self.wasNotCleanReason = f"our frames not taken within {self.factory.write_timeout}s"
        self.dropConnection(abort=True)

    # -- the session's sink ------------------------------------------------------

    def send_message(self, message):
        prepared = message.prepared
        if prepared is None:
            prepared = message.prepared = self.factory.prepareMessage(message.frame)
        if self.state == _OPEN and self._perMessageCompress is None:
            factory = self.factory
            if self._sent_in_turn == factory.turn:
                # a burst to this connection (tasks' results): Twisted sends the rest of this
                # reactor turn's frames together, in one write
                self.transport.write(prepared.payloadHybi)
            else:
                write_now(self.transport, prepared.payloadHybi)   # the frame made once for everyone
                self._sent_in_turn = factory.this_turn()
        else:
            self.sendPreparedMessage(prepared)

    def send_notice(self, notice):
        self.sendMessage(_dumps(notice))

    def close(self, code, reason):
        self.sendClose(code, reason[:120])

    # -- client messages ---------------------------------------------------------

    def onMessage(self, payload, isBinary):
        factory = self.factory
        factory.counters["received"] += 1
        request_id = None
        if factory.frame_limit is not None and not factory.frame_allowed(self):
            return
        try:
            if isBinary:
                raise _Mistake("bad_frame", "binary messages are not supported: send JSON text")
            try:
                frame = decode_json(payload)
            except JSONInputError as error:
                field = error.errors[0]["field"] if error.errors else None
                raise _Mistake("bad_json", f"not JSON: {error.reason}", field) from None
            if not isinstance(frame, dict):
                raise _Mistake("bad_frame", "a message must be a JSON object")
            request_id = frame.get("id")
            if request_id is not None and not isinstance(request_id, (int, str)) \
                    or isinstance(request_id, bool):
                request_id = None
                raise _Mistake("bad_frame", "id must be a number or a string", "id")
            op = frame.get("op")
            handler = _OPS.get(op) if isinstance(op, str) else None
            if handler is None:
                raise _Mistake("unknown_op", f"op must be one of {', '.join(_OPS)}", "op")
            result = handler(self, frame)
        except _Mistake as mistake:
            self._error(request_id, mistake.code, mistake.message, mistake.field)
            return
        if isinstance(result, defer.Deferred):
            result.addCallbacks(self._ok, self._failed, (request_id,), None, (request_id,))
        elif result is not None:
            self._ok(result, request_id)

    def _ok(self, result, request_id):
        if self.session is not None:
            self.sendMessage(_dumps({"op": "ok", "id": request_id, **result}))

    def _failed(self, failure, request_id):
        if failure.check(_Mistake):
            m = failure.value
            self._error(request_id, m.code, m.message, m.field)
        elif failure.check(PublishError):
            self._error(request_id, "invalid_publish", str(failure.value), failure.value.field)
        elif failure.check(BrokerError):
            self._broker_error(request_id, failure.value)
        else:
            log.failure("websocket request {id} failed", failure, id=request_id)
            self._error(request_id, "internal_error", "Internal error")

    def _broker_error(self, request_id, error):
        extra = {"errors": error.errors} if error.errors else {}
        self._error(request_id, error.code, error.message, None, **extra)

    def _error(self, request_id, code, message, field=None, **extra):
        self.factory.counters["errors_sent"] += 1
        if self.session is None:
            return
        frame = {"op": "error", "id": request_id, "code": code, "message": message}
        if field:
            frame["field"] = field
        frame.update(extra)
        self.sendMessage(_dumps(frame))

    # -- operations --------------------------------------------------------------

    def op_subscribe(self, frame):
        pattern = _pattern(frame)
        if pattern.startswith(OWNED_PREFIX):
            return owned_subscribe(self, pattern)
        if not self.grant.may_subscribe(pattern):
            self.factory.access.counters["denied"] += 1
            raise _Mistake("forbidden", f'not allowed to subscribe to "{pattern}"', "topic")
        since = frame.get("since")
        key = None
        if since is not None:
            try:
                key = parse_msg_id(since)
            except ValueError as error:
                raise _Mistake("bad_frame", f"since {error}", "since") from None
        try:
            d = self.session.subscribe(pattern, key)
        except ValueError as error:
            raise _Mistake("too_many_subscriptions", str(error), "topic") from None
        return d.addCallback(lambda r: {"topic": pattern, **r})

    def op_unsubscribe(self, frame):
        pattern = _pattern(frame)
        if not self.session.unsubscribe(pattern):
            raise _Mistake("not_subscribed", f'no subscription to "{pattern}"', "topic")
        return {"topic": pattern}

    def op_publish(self, frame):
        topic = frame.get("topic")
        try:
            check_topic(topic)
        except TopicError as error:
            raise _Mistake("bad_topic", str(error), "topic") from None
        if "data" not in frame:
            raise _Mistake("bad_frame", "data is required", "data")
        if not self.grant.may_publish(topic) or topic.startswith(OWNED_PREFIX):
            self.factory.access.counters["denied"] += 1
            raise _Mistake("forbidden", f'not allowed to publish to "{topic}"', "topic")
        d = self.factory.hub.publish(topic, frame["data"], publisher=self.grant.name)
        return d.addCallback(lambda msg_id: {"topic": topic, "msg_id": msg_id})

    def op_invoke(self, frame):
        service = frame.get("service")
        if not isinstance(service, str) or not service:
            raise _Mistake("bad_frame", "service must be a service name", "service")
        if not self.grant.may_invoke(service):
            self.factory.access.counters["denied"] += 1
            raise _Mistake("forbidden", f'not allowed to invoke "{service}"', "service")
        if self._pending >= self.factory.max_pending:
            raise _Mistake("too_many_requests",
                           f"at most {self.factory.max_pending} invocations at a time", "id")
        self._pending += 1
        traceparent = frame.get("traceparent") or getattr(self, "traceparent", None)
        self.factory.invocations.invoke(self, frame.get("id"), service, frame.get("data"),
                                        traceparent if isinstance(traceparent, str) else None)

    def invoked(self, request_id, service, cid, response):
        """An invocation answered (:class:`~broker.websocket.invoke.InvokeChannel`): the
        ``ok`` frame, with the answer the invoker encoded as its ``data``."""
        self._pending -= 1
        if self.session is not None:
            head = _dumps({"op": "ok", "id": request_id, "service": service, "cid": cid})
            self.sendMessage(head[:-1] + b',"data":' + _data_json(response) + b"}")

    def invoke_failed(self, request_id, error):
        """An invocation failed with ``error`` (a BrokerError): its ``error`` frame."""
        self._pending -= 1
        self._broker_error(request_id, error)

    def op_ping(self, frame):
        return {"pong": True}


_OPS = {"subscribe": PubSubProtocol.op_subscribe, "unsubscribe": PubSubProtocol.op_unsubscribe,
        "publish": PubSubProtocol.op_publish, "invoke": PubSubProtocol.op_invoke,
        "ping": PubSubProtocol.op_ping}


def _pattern(frame):
    pattern = frame.get("topic")
    try:
        return check_pattern(pattern)
    except TopicError as error:
        raise _Mistake("bad_topic", str(error), "topic") from None


def _data_json(response):
    """An answer's JSON: the body the invoker encoded (and measured against
    ``limits.max_response_size``), but a service's own text as its JSON value if it is
    JSON (else as a string) and an empty answer as ``{}`` or ``null``."""
    payload = response.payload
    if isinstance(payload, (str, bytes)):
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8", "replace")
        try:
            payload = json.loads(payload)
        except ValueError:
            pass
    elif response.body:
        return response.body
    return _dumps(payload)


class PubSubFactory(WebSocketServerFactory):
    """Settings shared by every connection of the ``/ws`` endpoint.

    :param invocations: the :class:`~broker.websocket.invoke.InvokeChannel` running
        ``invoke`` frames.
    :param options: the checked ``pubsub.websocket`` section.
    :param write_timeout: seconds a connection may stay paused (its client
        not reading) before it is dropped: ``limits.write_timeout``.
    """

    protocol = PubSubProtocol

    def __init__(self, hub, access, invocations, options, reactor, write_timeout):
        super().__init__(reactor=reactor)
        self.write_timeout = write_timeout
        self.hub = hub
        self.access = access
        self.invocations = invocations
        self.queue_size = options.queue_size
        self.max_subscriptions = options.max_subscriptions
        self.max_pending = options.max_pending_invokes
        limit = options.rate_limit
        self.frame_limit = None if limit is None else Limit(limit.rate, limit.per, limit.burst,
                                                            "connection")
        self.close_after = limit.close_after if limit is not None else 0
        self.frame_buckets = Buckets(reactor, max(options.max_connections, 1))
        self.allowed_origins = tuple(options.allowed_origins)
        self.handshake_headers = {}  # sent with every accepted handshake
        self.open = set()          # protocols whose handshake is done
        self.all_closed = None     # fired once going_away finds every one closed
        self.close_timeout = options.close_handshake_timeout
        self.counters = {"opened": 0, "closed": 0, "auth_refused": 0, "origin_refused": 0,
                         "received": 0, "errors_sent": 0, "paused": 0, "write_timeouts": 0,
                         "rate_limited": 0, "closed_for_abuse": 0}
        self.setProtocolOptions(
            maxFramePayloadSize=options.max_frame_size,
            maxMessagePayloadSize=options.max_message_size,
            autoFragmentSize=0,
            failByDrop=False,         # a close frame says why (1009 too big, 1007 bad UTF-8)
            openHandshakeTimeout=options.open_handshake_timeout,
            closeHandshakeTimeout=options.close_handshake_timeout,
            autoPingInterval=options.auto_ping_interval,
            autoPingTimeout=options.auto_ping_timeout,
            allowedOrigins=["*"],        # checked in onConnect: same origin unless listed
            maxConnections=options.max_connections,
            trustXForwardedFor=options.trust_x_forwarded_for,
            tcpNoDelay=True,
        )

    def frame_allowed(self, protocol):
        """Whether ``protocol``'s connection may send one more frame; if not, it gets an
        error frame, and after ``close_after`` refusals in a row it is closed (4029)."""
        retry_after = self.frame_buckets.take(id(protocol), self.frame_limit)
        if not retry_after:
            protocol.refused_in_a_row = 0
            return True
        self.counters["rate_limited"] += 1
        protocol.refused_in_a_row = getattr(protocol, "refused_in_a_row", 0) + 1
        if protocol.refused_in_a_row >= self.close_after:
            self.counters["closed_for_abuse"] += 1
            protocol.sendClose(4029, "rate limit exceeded again and again")
            return False
        protocol._error(None, "too_many_requests", "Too many frames: slow down",
                        retry_after=round(retry_after, 3))
        return False

    turn = 0
    _turn_call = None

    def this_turn(self):
        """The reactor turn now (counted up once the turn is over: one timer per turn)."""
        if self._turn_call is None:
            self._turn_call = self.reactor.callLater(0, self._next_turn)
        return self.turn

    def _next_turn(self):
        self._turn_call = None
        self.turn += 1

    def origin_allowed(self, origin, host):
        """No Origin (not a browser) or the same origin are allowed; others if listed."""
        if not origin:
            return True
        if origin != "null" and host and urlsplit(origin).netloc.lower() == host.lower():
            return True
        return any(fnmatch.fnmatchcase(origin.lower(), p.lower()) for p in self.allowed_origins)

    def metrics(self):
        return {**self.counters, "connections": self.countConnections}

    def going_away(self):
        """The node is stopping: close every connection with 1001; a Deferred firing once all
        are closed (at most the close handshake timeout later: then they are dropped)."""
        if not self.open:
            return defer.succeed(None)
        self.all_closed = defer.Deferred()
        for protocol in list(self.open):
            # sendClose admits only 1000 and 3000-4999; 1001 is a protocol-level close
            protocol._fail_connection(1001, "the broker is stopping")

        def drop():
            for protocol in list(self.open):
                protocol.dropConnection(abort=True)
        timer = self.reactor.callLater(self.close_timeout + 0.5, drop)
        return self.all_closed.addBoth(lambda _: timer.active() and timer.cancel())

    def upgrade(self, http_request):
        """``HTTPApp.upgrade_handlers`` hook: the protocol for a WebSocket upgrade, or None."""
        if "websocket" not in http_request.headers.get("upgrade", "").lower():
            return None
        return self.buildProtocol(None)
