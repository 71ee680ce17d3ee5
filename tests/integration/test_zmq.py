"""ZeroMQ channels and outgoing sockets end to end: ``twistd -n broker`` in a
subprocess, real pyzmq peers in this process (and threads)."""

import json
import re
import threading
from pathlib import Path

import pytest
import zmq
from lxml import etree

from tests.integration.broker_process import BrokerProcess, free_port, wait_for

CONFIG = Path(__file__).with_name("zmq_broker.yaml")
_BOUND = re.compile(r"zmq (?:channel|outgoing) (\S+) \(\w+\) bound to (tcp://\S+)")
WAIT = 20.0  # seconds before a test gives up waiting (a failure, never a pass)





class Env:
    """The broker, its ZeroMQ endpoints by name, and the peers it connects to."""

    def __init__(self):
        self.ctx = zmq.Context()
        self.ctx.setsockopt(zmq.LINGER, 0)  # every socket: closing never waits for a peer
        self.broker = None
        try:
            self.pub = self.ctx.socket(zmq.XPUB)  # XPUB: we see the broker's subscriptions
            self.pub.bind("tcp://127.0.0.1:*")
            self.pull = self.ctx.socket(zmq.PULL)
            self.pull.bind("tcp://127.0.0.1:*")
            self.late = {name: f"tcp://127.0.0.1:{free_port()}" for name in ("full", "queued")}
            env = {"ZMQ_TEST_PUB": self._last(self.pub), "ZMQ_TEST_PULL": self._last(self.pull),
                   "ZMQ_TEST_PULL_LATE": self.late["full"],
                   "ZMQ_TEST_PULL_QUEUED": self.late["queued"]}
            self.broker = BrokerProcess(config=CONFIG, env=env).start()
        except BaseException:
            self.close()  # a context left open with its sockets blocks exit in Context.term
            raise
        self.endpoints = dict(_BOUND.findall(self.broker.output))

    @staticmethod
    def _last(sock):
        return sock.getsockopt(zmq.LAST_ENDPOINT).decode()

    def socket(self, kind, name=None, **options):
        sock = self.ctx.socket(kind)
        for option, value in options.items():
            sock.setsockopt(getattr(zmq, option), value)
        if name is not None:
            sock.connect(self.endpoints[name])
        return sock

    def metrics(self, name):
        status, _, body = self.broker.request("GET", "/broker/metrics")
        assert status == 200
        return json.loads(body)["counters"][name]

    def seen(self, key):
        return json.loads(self.broker.request("GET", "/test/seen")[2])["seen"].get(key, [])

    def emit(self, name, count, **extra):
        status, _, body = self.broker.request("POST", "/test/emit",
                                              json.dumps({"name": name, "count": count, **extra}))
        assert status == 200, body
        return json.loads(body)

    def close(self):
        try:
            if self.broker is not None:
                self.broker.stop()
        finally:
            self.ctx.destroy(linger=0)


@pytest.fixture(scope="module")
def env():
    environment = Env()
    yield environment
    environment.close()


def until(check, what):
    """Poll ``check()`` until truthy; fail (never pass) after WAIT seconds."""
    return wait_for(check, what, WAIT)


def recv(sock):
    if not sock.poll(WAIT * 1000):
        pytest.fail("no reply")
    return sock.recv_multipart()


# -- request/reply ---------------------------------------------------------------


def test_bound_endpoints_are_logged(env):
    assert {"rr", "rr.slow", "rr.xml", "rr.raw", "pull", "pub", "pub.tiny"} <= set(env.endpoints)


def test_req_client_gets_the_service_answer(env):
    req = env.socket(zmq.REQ, "rr")
    req.send(b'{"text": "hi", "repeat": 3}')
    assert json.loads(recv(req)[0]) == {"text": "hihihi"}
    req.close()


def test_dealer_with_and_without_delimiter_gets_replies_in_its_framing(env):
    dealer = env.socket(zmq.DEALER, "rr")
    dealer.send_multipart([b"", b'{"text": "a"}'])
    assert recv(dealer) == [b"", b'{"text":"a"}']
    dealer.send_multipart([b'{"text": "b"}'])
    assert recv(dealer) == [b'{"text":"b"}']
    dealer.close()


def test_many_concurrent_req_clients_each_get_their_own_answer(env):
    clients, rounds, wrong = 16, 40, []

    def client(i):
        req = env.socket(zmq.REQ, "rr")
        for r in range(rounds):
            text = f"c{i}r{r}-"
            req.send(json.dumps({"text": text, "repeat": 2}).encode())
            if not req.poll(WAIT * 1000):
                wrong.append((i, r, "no reply"))
                break
            answer = json.loads(req.recv())
            if answer != {"text": text * 2}:
                wrong.append((i, r, answer))
        req.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_async_replies_finishing_out_of_order_reach_their_own_requests(env):
    dealer = env.socket(zmq.DEALER, "rr.slow")
    count = 50
    for i in range(count):  # the first request waits longest
        dealer.send_multipart([b"", json.dumps({"text": f"id{i}", "delay_ms": 2 * (count - i)}).encode()])
    replies = [json.loads(recv(dealer)[1])["text"] for _ in range(count)]
    assert sorted(replies) == sorted(f"id{i}" for i in range(count))
    dealer.close()


def test_xml_request_reply(env):
    req = env.socket(zmq.REQ, "rr.xml")
    req.send(b"<request><text>hi</text><repeat>2</repeat></request>")
    assert etree.fromstring(recv(req)[0]).findtext("text") == "hihi"
    req.send(b"<request><oops")
    error = etree.fromstring(recv(req)[0])
    assert error.tag == "error" and error.findtext("code") == "bad_request"
    req.close()


def test_raw_request_reply_passes_bytes_through(env):
    req = env.socket(zmq.REQ, "rr.raw")
    req.send("grüße, not json".encode())
    assert recv(req)[0].decode() == "GRÜSSE, NOT JSON"
    req.close()


def test_malformed_requests_are_answered_with_errors_and_counted(env):
    before = env.metrics("zmq.channel.rr")
    req = env.socket(zmq.REQ, "rr")
    req.send(b"{not json")
    bad_json = json.loads(recv(req)[0])
    req.send(b'{"repeat": "many"}')
    invalid = json.loads(recv(req)[0])
    req.close()
    dealer = env.socket(zmq.DEALER, "rr")
    dealer.send_multipart([b"", b"one", b"two"])
    frames = json.loads(recv(dealer)[1])
    dealer.send_multipart([b"", b'{"text": "still serving"}'])
    assert json.loads(recv(dealer)[1]) == {"text": "still serving"}
    dealer.close()

    assert bad_json["result"] == "Error" and bad_json["code"] == "bad_request" and bad_json["cid"]
    assert invalid["code"] == "invalid_input"
    assert {e["field"] for e in invalid["errors"]} == {"text", "repeat"}
    assert frames["code"] == "bad_request" and "expected 1 body frame, got 2" in frames["details"]
    after = env.metrics("zmq.channel.rr")
    assert after["client_errors"] - before["client_errors"] == 3
    assert after["error_replies"] - before["error_replies"] == 3
    assert "zmq:rr: bad message" in env.broker.output


def test_json_the_guarded_decoder_refuses_is_answered_with_an_error(env):
    """Repeated keys, lone surrogates and deep nesting: a 400-class reply naming the problem."""
    req = env.socket(zmq.REQ, "rr")
    replies = []
    for body in (b'{"text": "a", "text": "b"}', b'{"text": "\\ud800"}', b"[" * 5000 + b"]" * 5000):
        req.send(body)
        replies.append(json.loads(recv(req)[0]))
    req.send(b'{"text": "still serving"}')
    assert json.loads(recv(req)[0]) == {"text": "still serving"}
    req.close()
    assert [r["code"] for r in replies] == ["bad_request"] * 3
    assert replies[0]["errors"] == [{"field": "text", "problem": "is given twice"}]
    assert "lone surrogate" in replies[1]["details"]
    assert "nested more than 64 levels deep" in replies[2]["details"]


# -- PULL ------------------------------------------------------------------------


def test_pull_invokes_the_service_for_every_message_none_lost(env):
    peers, per_peer = 3, 2000

    def push(p):
        sock = env.socket(zmq.PUSH, "pull")
        for n in range(p * per_peer, (p + 1) * per_peer):
            sock.send(json.dumps({"key": "pull", "n": n}).encode())
        sock.setsockopt(zmq.LINGER, -1)  # deliver everything before close returns
        sock.close()

    threads = [threading.Thread(target=push, args=(p,)) for p in range(peers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = peers * per_peer
    seen = until(lambda: (s := env.seen("pull")) and len(s) >= total and s, f"{total} messages")
    assert sorted(n for n, _ in seen) == list(range(total))
    counters = env.metrics("zmq.channel.pull")
    assert counters["succeeded"] == total and counters["received"] == total


def test_pull_counts_malformed_messages_and_keeps_going(env):
    push = env.socket(zmq.PUSH, "pull")
    before = env.metrics("zmq.channel.pull")
    push.send(b"{broken")
    push.send_multipart([b"a", b"b", b"c"])
    push.send(b'{"key": "pull.after", "n": "NaN"}')
    push.send_multipart([b"topic.x", b'{"key": "pull.after", "n": 1}'])
    assert until(lambda: env.seen("pull.after"), "the good message") == [[1, "topic.x"]]
    after = env.metrics("zmq.channel.pull")
    assert after["client_errors"] - before["client_errors"] == 3
    push.close()


# -- SUB -------------------------------------------------------------------------


def test_sub_takes_only_subscribed_prefixes(env):
    subscribed = set()
    while len(subscribed) < 2:  # the broker's SUB told our XPUB what it wants
        if not env.pub.poll(WAIT * 1000):
            pytest.fail("the broker never subscribed")
        subscribed.add(env.pub.recv())
    assert subscribed == {b"\x01keep.", b"\x01also."}
    topics = ["keep.a", "drop.b", "also.c", "keepx", "keep.b"]
    for n in range(50):
        for topic in topics:
            env.pub.send_multipart([topic.encode(), json.dumps({"key": "sub", "n": n}).encode()])
    env.pub.send_multipart([b"keep.end", json.dumps({"key": "sub.end", "n": 0}).encode()])
    until(lambda: env.seen("sub.end"), "the last message")
    seen = env.seen("sub")
    by_topic = {}
    for n, topic in seen:
        by_topic.setdefault(topic, []).append(n)
    assert sorted(by_topic) == ["also.c", "keep.a", "keep.b"]
    assert all(ns == list(range(50)) for ns in by_topic.values())


# -- outgoing --------------------------------------------------------------------


def test_outgoing_push_reaches_a_real_pull_peer(env):
    assert env.emit("push", 200) == {"accepted": 200, "waiting_or_dropped": 0, "full": 0}
    got = [json.loads(recv(env.pull)[0])["n"] for _ in range(200)]
    assert got == list(range(200))


def test_outgoing_push_full_raises_a_typed_error_then_delivers_what_it_took(env):
    # No peer yet: ZeroMQ queues sndhwm (5) messages for the address, then it is full.
    assert env.emit("push.full", 8) == {"accepted": 5, "waiting_or_dropped": 0, "full": 3}
    assert env.metrics("zmq.outgoing.push.full")["full_errors"] == 3
    # Not caught by the service, ZmqFull reaches the caller as a 503 with its code.
    status, _, body = env.broker.request("POST", "/test/emit", json.dumps(
        {"name": "push.full", "count": 1, "raise_full": True}))
    assert status == 503 and json.loads(body)["code"] == "zmq_full"
    peer = env.socket(zmq.PULL)
    peer.bind(env.late["full"])
    assert [json.loads(recv(peer)[0])["n"] for _ in range(5)] == [0, 1, 2, 3, 4]
    peer.close()


def test_outgoing_push_queue_waits_bounded_and_delivers_in_order(env):
    result = env.emit("push.queue", 20)
    assert result == {"accepted": 5, "waiting_or_dropped": 10, "full": 5}
    assert env.metrics("zmq.outgoing.push.queue")["waiting"] == 10
    peer = env.socket(zmq.PULL)
    peer.bind(env.late["queued"])
    assert [json.loads(recv(peer)[0])["n"] for _ in range(15)] == list(range(15))
    until(lambda: env.metrics("zmq.outgoing.push.queue")["waiting"] == 0, "the queue to empty")
    counters = env.metrics("zmq.outgoing.push.queue")
    assert counters["sent"] == 15 and counters["full_errors"] == 5
    peer.close()


def test_outgoing_pub_reaches_subscribers_by_topic(env):
    sub = env.socket(zmq.SUB, "pub", SUBSCRIBE=b"events.")
    until(lambda: env.metrics("zmq.outgoing.pub")["subscriptions"] >= 1, "the subscription")
    env.emit("pub", 3, topic="events.demo")
    env.emit("pub", 2, topic="other")
    env.emit("pub", 1)  # the configured topic "events" does not match "events."
    frames = [recv(sub) for _ in range(3)]
    assert [f[0] for f in frames] == [b"events.demo"] * 3
    assert [json.loads(f[1])["n"] for f in frames] == [0, 1, 2]
    env.emit("pub", 1, topic="events.end")
    assert recv(sub)[0] == b"events.end"  # nothing else came in between
    counters = env.metrics("zmq.outgoing.pub")
    assert counters["sent"] == 4 and counters["no_subscriber"] == 3
    sub.close()


def test_outgoing_pub_drops_are_counted_and_the_rest_delivered(env):
    sub = env.socket(zmq.SUB, "pub.tiny", SUBSCRIBE=b"", RCVHWM=1)
    until(lambda: env.metrics("zmq.outgoing.pub.tiny")["subscriptions"] >= 1, "the subscription")
    total = 300
    result = env.emit("pub.tiny", total, topic="t", pad=100_000)  # ~30 MB: more than buffers hold
    counters = env.metrics("zmq.outgoing.pub.tiny")
    assert counters["dropped"] == result["waiting_or_dropped"] > 0
    assert counters["sent"] == result["accepted"] and counters["sent"] + counters["dropped"] == total
    received = [json.loads(recv(sub)[1])["n"] for _ in range(counters["sent"])]
    assert received == sorted(received) and len(set(received)) == counters["sent"]
    env.emit("pub.tiny", 1, topic="end")
    assert recv(sub)[0] == b"end"  # exactly the ones counted as sent came before it
    sub.close()
