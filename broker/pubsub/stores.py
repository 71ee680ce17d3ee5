"""Where messages go when published: memory (one node) or Redis (a cluster).

Both give each message a cluster-wide ordered id, keep a bounded history per
topic for resume, and call ``hub.dispatch`` for every message in id order.

Redis keys (``<ns>`` is ``pubsub.namespace``): ``<ns>:seq`` (the id
counter), ``<ns>:epoch``, ``<ns>:topics`` (a set of topic names),
``<ns>:t:<topic>`` (a stream per topic, exact ``MAXLEN``), ``<ns>:trimmed``
(topic → the newest id trimmed from its stream, to tell gaps) and the
``<ns>:bus`` channel.  One Lua script adds to the stream and publishes to the
bus atomically, so bus order is id order on every node.
"""

import time

from twisted.internet import defer
from twisted.logger import Logger

from broker.pubsub.history import MemoryHistory, Replay
from broker.pubsub.message import Message, utc_now
from broker.pubsub.topics import check_topic, matches

__all__ = ["MemoryStore", "RedisStore"]

log = Logger()


class MemoryStore:
    """Ids from an in-process counter; history in memory; dispatch at once."""

    def __init__(self, reactor, max_topics=10_000):
        self.reactor = reactor
        self.epoch = int(reactor.seconds() * 1000) or 1
        self.seq = 0
        self.max_topics = max_topics
        self.hub = None
        self.history = None
        self.counters = {}

    def attach(self, hub):
        self.hub = hub
        self.history = MemoryHistory(hub.history_size, self.max_topics)
        self.counters = self.history.counters

    def publish(self, topic, data_json, publisher):
        self.seq += 1
        message = Message(topic, f"{self.epoch}-{self.seq}", utc_now(self.reactor.seconds()),
                          data_json, publisher, (self.epoch, self.seq))
        self.history.append(message)
        self.hub.dispatch(message)
        return message.msg_id

    def replay(self, pattern, key, limit):
        return defer.succeed(self.history.since(pattern, key, self.epoch, limit))


_PUBLISH = b"""
redis.call('SET', KEYS[3], ARGV[6], 'NX')
local epoch = redis.call('GET', KEYS[3])
local n = redis.call('INCR', KEYS[2])
local max = tonumber(ARGV[1])
if max > 0 then
  local len = redis.call('XLEN', KEYS[1])
  if len >= max then
    local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', len - max + 1)
    redis.call('HSET', KEYS[5], ARGV[2], gone[#gone][1])
  end
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], n .. '-0', 'p', ARGV[3], 'u', ARGV[4], 'd', ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
  redis.call('SADD', KEYS[4], ARGV[2])
  redis.call('PEXPIRE', KEYS[4], ARGV[8])
  redis.call('PEXPIRE', KEYS[5], ARGV[8])
end
local id = epoch .. '-' .. n
redis.call('PUBLISH', ARGV[7], id .. '\\0' .. ARGV[2] .. '\\0' .. ARGV[3] .. '\\0' .. ARGV[4] .. '\\0' .. ARGV[5])
return id
"""


class RedisStore:
    """Ids from a Redis counter; per-topic Redis Streams; the bus as the backplane.

    :param connection: a :class:`~broker.redis.connection.RedisConnection`.
    :param namespace: the key prefix shared by the nodes of one cluster.
    :param history_ttl: seconds a topic's stream lives after its last message.
    :param retry_delay: seconds before SUBSCRIBE is tried again after Redis refused it;
        doubled after each refusal, up to ``retry_max_delay``.
    """

    def __init__(self, connection, namespace, reactor, history_ttl=86400.0, retry_delay=1.0,
                 retry_max_delay=30.0):
        self.connection = connection
        self.reactor = reactor
        self.ns = namespace
        self.bus = f"{namespace}:bus".encode()
        self.history_ttl_ms = int(history_ttl * 1000)
        self.retry_delay = retry_delay
        self.retry_max_delay = retry_max_delay
        self.hub = None
        self.subscriber = None
        self.bus_up = False
        self.bus_error = None
        self._ever_up = False
        self._refusals = 0      # SUBSCRIBE refusals in a row
        self._retry = None
        self.counters = {"bus_messages": 0, "bus_malformed": 0, "bus_reconnects": 0,
                         "bus_subscribe_failures": 0, "redis_errors": 0}

    def attach(self, hub):
        self.hub = hub

    def _key(self, name):
        return f"{self.ns}:{name}".encode()

    def stream_key(self, topic):
        return f"{self.ns}:t:{topic}".encode()

    # -- lifecycle ------------------------------------------------------------

    def start(self):
        """Connect the bus subscriber (it subscribes again after each reconnect)."""
        import txredisapi
        store = self

        class BusSubscriber(txredisapi.SubscriberProtocol):
            def connectionMade(self):
                ready = txredisapi.SubscriberProtocol.connectionMade(self)  # AUTH, SELECT
                ready.addCallback(lambda _: store._subscribe(self) if self.connected else None)

            def connectionLost(self, reason):
                store._bus_lost()
                return txredisapi.SubscriberProtocol.connectionLost(self, reason)

            def messageReceived(self, pattern, channel, message):
                store._received(message)

        self.subscriber = self.connection.subscriber(BusSubscriber)

    def stop(self):
        """Close the bus subscriber; a Deferred firing once it is closed."""
        self._cancel_retry()
        subscriber, self.subscriber = self.subscriber, None
        if subscriber is None:
            return defer.succeed(None)
        return self.connection.close_subscriber(subscriber)

    def health(self):
        report = {"ok": self.bus_up, "backplane": "redis"}
        if self.bus_error is not None:
            report["error"] = self.bus_error
        return report

    def _subscribe(self, protocol):
        self._retry = None
        protocol.subscribe([self.bus]).addCallbacks(
            lambda _: self._bus_connected(), self._subscribe_failed, errbackArgs=(protocol,))

    def _subscribe_failed(self, failure, protocol):
        """Redis refused SUBSCRIBE: logged once, counted, tried again later on this connection."""
        if not protocol.connected:
            return  # the connection went; its reconnect subscribes again
        self.counters["bus_subscribe_failures"] += 1
        self.bus_error = f"SUBSCRIBE failed: {failure.getErrorMessage()}"
        delay = min(self.retry_delay * 2 ** min(self._refusals, 32), self.retry_max_delay)
        if not self._refusals:
            log.warn("pub/sub backplane: redis {host}:{port} refused SUBSCRIBE {bus}: {error}; "
                     "trying again in {delay}s, then less often (at most {max_delay}s apart); "
                     "/broker/health is not ok until it works", host=self.connection.host,
                     port=self.connection.port,
                     bus=self.bus.decode(), error=failure.getErrorMessage(), delay=delay,
                     max_delay=self.retry_max_delay)
        self._refusals += 1
        self._retry = self.reactor.callLater(delay, self._subscribe, protocol)

    def _bus_lost(self):
        self.bus_up = False
        self._cancel_retry()

    def _cancel_retry(self):
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def _bus_connected(self):
        self.bus_up = True
        self.bus_error = None
        self._refusals = 0
        if self._ever_up:
            self.counters["bus_reconnects"] += 1
            log.warn("pub/sub backplane reconnected: sessions resume from their last message")
            self.hub.resync()
        else:
            log.info("pub/sub backplane connected to redis {host}:{port}",
                     host=self.connection.host, port=self.connection.port)
        self._ever_up = True

    def _received(self, payload):
        try:
            msg_id, topic, published_at, publisher, data = payload.split(b"\0", 4)
            topic = topic.decode()
            if topic not in self.hub._good_topics:
                check_topic(topic)  # it is put into frames unescaped
            message = Message(topic, msg_id.decode(), published_at.decode(),
                              data.decode(), publisher.decode())
        except (ValueError, UnicodeDecodeError):
            self.counters["bus_malformed"] += 1
            log.warn("malformed message on the pub/sub bus ignored")
            return
        self.counters["bus_messages"] += 1
        self.hub.dispatch(message)

    # -- publishing and history ----------------------------------------------

    def publish(self, topic, data_json, publisher):
        args = [str(self.hub.history_size(topic)), topic, utc_now(self.reactor.seconds()),
                publisher, data_json, str(int(time.time() * 1000)), self.bus,
                str(self.history_ttl_ms)]
        keys = [self.stream_key(topic), self._key("seq"), self._key("epoch"), self._key("topics"),
                self._key("trimmed")]
        d = self.connection.eval(_PUBLISH, keys, [a if isinstance(a, bytes) else a.encode()
                                                  for a in args])
        return d.addCallbacks(_text, self._failed)

    def _failed(self, failure):
        self.counters["redis_errors"] += 1
        return failure

    @defer.inlineCallbacks
    def replay(self, pattern, key, limit):
        """Messages after ``key`` on topics matching ``pattern``, from the streams."""
        call = self.connection.call
        epoch = yield call("GET", self._key("epoch"))
        epoch = int(epoch) if epoch else 0
        gap = key[0] != epoch
        after = 0 if gap else key[1]
        if "*" in pattern or "#" in pattern:
            names = yield call("SMEMBERS", self._key("topics"))
            topics = sorted(t.decode() for t in names if matches(pattern, t.decode()))
        else:
            topics = [pattern]
        found = []
        for topic in topics:
            stream = self.stream_key(topic)
            entries = yield call("XRANGE", stream, f"({after}-0", "+", "COUNT", str(limit))
            for entry_id, fields in entries or ():
                found.append(_message(topic, epoch, entry_id, fields))
        if topics and not gap:
            trimmed = yield call("HMGET", self._key("trimmed"), *topics)
            gap = any(t and int(t.split(b"-")[0]) > after for t in trimmed)
        found.sort(key=lambda m: m.key)
        if len(found) > limit:
            found, gap = found[-limit:], True
        return Replay(found, gap)


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _message(topic, epoch, entry_id, fields):
    values = dict(zip(fields[::2], fields[1::2]))
    seq = entry_id.split(b"-")[0].decode()
    return Message(topic, f"{epoch}-{seq}", values[b"p"].decode(), values[b"d"].decode(),
                   values.get(b"u", b"").decode())
