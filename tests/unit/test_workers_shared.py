"""What workers share through the main process, over a real link pair in memory.

The main process's :class:`Central` and a worker's :class:`NodeCache` /
:class:`NodeStore` talk over two :class:`Link` ends joined by iosim's pump.
"""

import textwrap

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import connect, makeFakeClient, makeFakeServer

from broker.node.model import load_config
from broker.pubsub.hub import Hub
from broker.runtime import summed
from broker.workers.central import Central
from broker.workers.link import Link, LinkError
from broker.workers.shared import NodeCache, NodeStore


class Pair:
    def __init__(self, tmp_path, text="{}"):
        path = tmp_path / "broker.yaml"
        path.write_text(textwrap.dedent(text))
        self.clock = MemoryReactorClock()
        self.central = Central(load_config(str(path)), self.clock)
        self.main = Link(self.central.handlers, {}, self.clock)
        self.worker = Link({}, {}, self.clock)
        self.pump = connect(self.main, makeFakeServer(self.main), self.worker,
                            makeFakeClient(self.worker), greet=False)
        self.central.add(self.main)

    def result(self, d):
        self.pump.flush()
        results = []
        d.addBoth(results.append)
        self.pump.flush()
        assert results, "no answer"
        if hasattr(results[0], "raiseException"):
            results[0].raiseException()
        return results[0]


@pytest.fixture
def pair(tmp_path):
    return Pair(tmp_path)


def test_a_cache_value_set_by_one_worker_is_read_by_another(pair, tmp_path):
    other = Pair.__new__(Pair)
    other.clock, other.central = pair.clock, pair.central
    other.main = Link(pair.central.handlers, {}, pair.clock)
    other.worker = Link({}, {}, pair.clock)
    other.pump = connect(other.main, makeFakeServer(other.main), other.worker,
                         makeFakeClient(other.worker), greet=False)
    one, two = NodeCache(pair.worker), NodeCache(other.worker)
    assert pair.result(one.set("k", {"a": [1, 2**70]})) is True
    assert other.result(two.get("k")) == {"a": [1, 2**70]}
    assert other.result(two.get_many(["k", "missing"])) == {"k": {"a": [1, 2**70]}}
    assert other.result(two.incr("n", 5)) == 5
    assert pair.result(one.incr("n")) == 6
    assert pair.result(one.delete("k")) is True
    assert other.result(two.get("k")) is None
    assert two.counters["hits"] == 2 and two.counters["misses"] == 2


def test_cache_mistakes_are_the_same_errors_as_a_local_cache(pair):
    cache = NodeCache(pair.worker, max_value_size=10)
    with pytest.raises(ValueError, match="max_value_size"):
        pair.result(cache.set("k", "x" * 50))
    with pytest.raises(TypeError):
        pair.result(cache.set("k", object()))
    pair.result(cache.set("s", "text"))
    with pytest.raises(ValueError, match="does not hold an integer"):
        pair.result(cache.incr("s"))


def test_ttl_is_kept_by_the_main_process_clock(pair):
    cache = NodeCache(pair.worker)
    pair.result(cache.set("k", 1, ttl=5))
    pair.clock.advance(4)
    assert pair.result(cache.get("k")) == 1
    pair.clock.advance(2)
    assert pair.result(cache.get("k")) is None


def test_a_publish_is_numbered_once_and_reaches_every_worker_in_order(pair):
    store = NodeStore(pair.worker)
    got = []
    hub = Hub(store, reactor=pair.clock)

    class Session:
        def deliver(self, message):
            got.append((message.topic, message.msg_id, message.data_json))
    hub.add(Session(), "t.#")
    ids = [pair.result(hub.publish("t.a", {"n": n})) for n in range(3)]
    assert [g[1] for g in got] == ids and len(set(ids)) == 3
    assert [g[2] for g in got] == ['{"n":0}', '{"n":1}', '{"n":2}']
    replay = pair.result(store.replay("t.#", tuple(map(int, ids[0].split("-"))), 100))
    assert [m.msg_id for m in replay.messages] == ids[1:] and not replay.gap


def test_a_call_on_a_lost_link_fails_as_unavailable(pair):
    d = pair.worker.call("cache", "default", "get", "k")
    pair.worker.connectionLost(None)
    with pytest.raises(LinkError):
        pair.result(d)
    with pytest.raises(LinkError):
        pair.result(pair.worker.call("cache", "default", "get", "k"))


def test_a_call_that_gets_no_answer_times_out_and_is_counted(pair):
    pair.main.handlers = {}  # a main process that never answers...
    pair.main.stringReceived = lambda data: None
    d = pair.worker.call("cache", "default", "get", "k")
    pair.pump.flush()
    pair.clock.advance(pair.worker.timeout + 1)
    with pytest.raises(LinkError, match="within"):
        pair.result(d)
    assert pair.worker.counters["timeouts"] == 1


def test_pending_calls_are_bounded(pair):
    pair.worker.max_pending = 2
    pair.worker.call("cache", "default", "get", "a")
    pair.worker.call("cache", "default", "get", "b")
    with pytest.raises(LinkError, match="Too many"):
        pair.result(pair.worker.call("cache", "default", "get", "c"))
    assert pair.worker.counters["pending_refused"] == 1


def test_a_frame_over_the_limit_closes_the_link_and_is_counted(pair):
    pair.main.MAX_LENGTH = 100
    pair.worker.notify("message", "x" * 500)
    pair.pump.flush()
    assert pair.main.counters["frames_too_large"] == 1
    assert not pair.worker.connected


def test_summed_adds_numbers_and_merges_mappings():
    total = summed([{"http": {"requests": 2, "mode": "a"}, "n": 1, "ok": True},
                    {"http": {"requests": 3, "mode": "b"}, "n": 4, "ok": False}])
    assert total == {"http": {"requests": 5, "mode": "a"}, "n": 5, "ok": True}


def test_the_task_store_and_live_state_are_the_main_process_s(pair):
    from broker.workers.shared import WorkerRole
    role = WorkerRole(1, pair.worker, False)
    store = role.task_store()
    assert pair.result(store.put({"id": "t1", "status": "pending"}, 60)) is None
    assert pair.result(store.get("t1")) == {"id": "t1", "status": "pending"}
    assert pair.result(pair.central.objects["tasks"][0].get("t1")) == {"id": "t1", "status": "pending"}
    live = role.live_state(1.0)
    assert live.shared
    before = pair.result(live.version())
    pair.result(live.save("channel:x", {"name": "x"}, "admin:ops"))
    assert pair.result(live.version()) != before
    assert pair.result(live.load())["channel:x"]["raw"] == {"name": "x"}


def test_a_revocation_in_one_worker_reaches_every_worker_and_later_ones(pair, tmp_path):
    from broker.workers.shared import WorkerRole
    one = WorkerRole(0, pair.worker, True).revocations(100)
    pair.main.notices.update(pair.central.notices)
    one.revoke("jti-1", 10**10)
    pair.pump.flush()
    assert one.is_revoked("jti-1")
    later = Pair.__new__(Pair)  # a worker that starts after the revocation
    later.main = Link(pair.central.handlers, pair.central.notices, pair.clock)
    later.worker = Link({}, {}, pair.clock)
    two = WorkerRole(1, later.worker, False).revocations(100)
    later.pump = connect(later.main, makeFakeServer(later.main), later.worker,
                         makeFakeClient(later.worker), greet=False)
    pair.central.add(later.main)
    later.pump.flush()
    assert two.is_revoked("jti-1")
    assert not two.is_revoked("jti-2")


def test_a_report_with_number_keys_crosses_the_link(pair):
    pair.main.handlers["report"] = lambda: {"statuses": {200: 3}, "kinds": {"a"}}
    assert pair.result(pair.worker.call("report")) == {"statuses": {"200": 3}, "kinds": "{'a'}"}
