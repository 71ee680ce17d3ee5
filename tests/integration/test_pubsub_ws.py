"""Pub/sub over real WebSocket clients against a real broker process (memory store)."""

import base64
import json
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.integration.broker_process import BrokerProcess
from tests.integration.ws_client import WSClient

CONFIG = Path(__file__).parent / "configs" / "pubsub.yaml"


@pytest.fixture(scope="module")
def broker():
    process = BrokerProcess(config=CONFIG).start()
    yield process
    process.stop()


def basic(process):
    token = base64.b64encode(f"admin:{process.admin_password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def publish(process, topic, data, headers=None):
    status, _, body = process.request("POST", f"/broker/publish/{topic}", json.dumps(data),
                                      {"Content-Type": "application/json", **(headers or {})})
    return status, json.loads(body)


def test_subscribe_and_receive_what_http_and_ws_publish(broker):
    with WSClient(broker.port) as sub, WSClient(broker.port) as pub:
        assert sub.request("subscribe", topic="demo.#")["op"] == "ok"
        status, answer = publish(broker, "demo.one", {"n": 1})
        assert status == 200 and answer["topic"] == "demo.one"
        reply = pub.request("publish", topic="demo.two.deep", data={"n": 2})
        assert reply["op"] == "ok" and reply["msg_id"]
        first, second = sub.messages(2)
        assert (first["topic"], first["data"], first["msg_id"]) == ("demo.one", {"n": 1}, answer["msg_id"])
        assert (second["topic"], second["data"], second["msg_id"]) == ("demo.two.deep", {"n": 2},
                                                                        reply["msg_id"])
        assert first["published_at"].endswith("Z")


def test_wildcards_one_word_and_any_depth(broker):
    with WSClient(broker.port, headers=basic(broker)) as sub:
        assert sub.request("subscribe", topic="rates.EUR.*")["op"] == "ok"
        for topic in ("rates.EUR", "rates.EUR.USD", "rates.EUR.USD.x", "rates.GBP.USD"):
            assert publish(broker, topic, topic, basic(broker))[0] == 200
        publish(broker, "rates.EUR.JPY", "end", basic(broker))
        got = [m["topic"] for m in sub.messages(2)]
        assert got == ["rates.EUR.USD", "rates.EUR.JPY"]
        assert sub.request("unsubscribe", topic="rates.EUR.*")["op"] == "ok"
        assert sub.request("subscribe", topic="#")["op"] == "ok"
        publish(broker, "x", 1, basic(broker))
        assert sub.messages(1)[0]["topic"] == "x"


def test_one_message_once_per_connection_with_overlapping_subscriptions(broker):
    with WSClient(broker.port) as sub:
        sub.request("subscribe", topic="demo.#")
        sub.request("subscribe", topic="demo.overlap.*")
        publish(broker, "demo.overlap.a", 1)
        publish(broker, "demo.overlap.b", 2)
        assert [m["data"] for m in sub.messages(2)] == [1, 2]


def test_invoke_a_service_and_its_errors(broker):
    with WSClient(broker.port) as client:
        ok = client.request("invoke", service="demo.echo", data={"text": "ab", "repeat": 2})
        assert ok["op"] == "ok" and ok["data"] == {"text": "abab"}
        bad = client.request("invoke", service="demo.echo", data={"repeat": "x"})
        assert bad["code"] == "invalid_input"
        assert {e["field"] for e in bad["errors"]} == {"text", "repeat"}
        denied = client.request("invoke", service="customer.get1", data={})
        assert denied["code"] == "forbidden"


def test_permissions_per_security_definition(broker):
    key = {"X-API-Key": broker.api_key}
    with WSClient(broker.port, headers=key) as app, WSClient(broker.port) as anonymous:
        assert app.request("subscribe", topic="rates.#")["op"] == "ok"
        assert app.request("subscribe", topic="#")["code"] == "forbidden"
        assert app.request("subscribe", topic="rates.#.x")["op"] == "ok"   # inside rates.#
        assert app.request("publish", topic="rates.EUR.USD", data=1)["op"] == "ok"
        assert app.request("publish", topic="rates.GBP.USD", data=1)["code"] == "forbidden"
        assert anonymous.request("subscribe", topic="rates.#")["code"] == "forbidden"
        assert anonymous.request("subscribe", topic="#")["code"] == "forbidden"
        assert anonymous.request("publish", topic="rates.EUR.USD", data=1)["code"] == "forbidden"
    assert publish(broker, "rates.EUR.USD", 1)[0] == 401
    assert publish(broker, "rates.GBP.USD", 1, key)[0] == 403
    assert publish(broker, "rates.EUR.USD", 1, key)[0] == 200


def test_auth_at_handshake_basic_apikey_bearer_and_token(broker):
    with WSClient(broker.port, headers={"Authorization": f"Bearer {broker.api_key}"}) as c:
        assert c.request("subscribe", topic="rates.#")["op"] == "ok"
    with WSClient(broker.port, path=f"/ws?token={broker.api_key}") as c:
        assert c.request("subscribe", topic="rates.#")["op"] == "ok"
    for headers, path in (({"X-API-Key": "wrong"}, "/ws"), ({}, "/ws?token=wrong"),
                          ({"Authorization": "Basic " + base64.b64encode(b"admin:no").decode()}, "/ws")):
        with pytest.raises(InvalidStatus) as refused:
            WSClient(broker.port, path=path, headers=headers)
        assert refused.value.response.status_code == 401
    assert broker.api_key not in broker.output      # secrets are never logged
    assert broker.admin_password not in broker.output


def test_origins_same_origin_and_listed_only(broker):
    with WSClient(broker.port, origin="http://allowed.example") as c:
        assert c.request("ping")["pong"] is True
    with WSClient(broker.port, origin=f"http://127.0.0.1:{broker.port}") as c:
        assert c.request("ping")["pong"] is True
    with pytest.raises(InvalidStatus) as refused:
        WSClient(broker.port, origin="http://evil.example")
    assert refused.value.response.status_code == 403


def test_mistakes_get_error_frames_and_the_socket_stays_open(broker):
    with WSClient(broker.port) as c:
        c.send("not json")
        assert c.recv()["code"] == "bad_json"
        c.send(b"\x00\x01")
        assert c.recv()["code"] == "bad_frame"
        c.send("[1, 2]")
        assert c.recv()["code"] == "bad_frame"
        assert c.request("dance")["code"] == "unknown_op"
        assert c.request("subscribe", topic="demo..x")["code"] == "bad_topic"
        assert c.request("subscribe", topic=5)["code"] == "bad_topic"
        assert c.request("publish", topic="demo.*", data=1)["code"] == "bad_topic"
        assert c.request("publish", topic="demo.x")["field"] == "data"
        assert c.request("subscribe", topic="demo.#", since="yesterday")["field"] == "since"
        assert c.request("unsubscribe", topic="demo.none")["code"] == "not_subscribed"
        assert c.request("ping")["op"] == "ok"


def test_oversized_message_closes_with_1009(broker):
    with WSClient(broker.port, max_size=None) as c:
        c.send(json.dumps({"op": "publish", "topic": "demo.big", "data": "x" * 70_000}))
        with pytest.raises(ConnectionClosed) as closed:
            c.recv()
        assert closed.value.rcvd.code == 1009


def test_http_publish_errors_name_the_problem(broker):
    status, _, body = broker.request("POST", "/broker/publish/demo.x", b"{nope")
    assert status == 400 and json.loads(body)["errors"][0]["field"] == "body"
    status, _, body = broker.request("POST", "/broker/publish/demo..x", b"1")
    assert status == 400 and json.loads(body)["errors"][0]["field"] == "topic"
    status, _, body = broker.request("POST", "/broker/publish/demo.x", b'{"a": NaN}')
    assert status == 400 and json.loads(body)["errors"][0]["field"] == "body"
    status, _, body = broker.request("POST", "/broker/publish/demo.x", json.dumps("x" * 70_000))
    assert status == 400 and json.loads(body)["errors"][0]["field"] == "data"   # over 64KiB


def test_resume_after_a_dropped_connection_loses_and_repeats_nothing(broker):
    first = WSClient(broker.port)
    first.request("subscribe", topic="demo.resume.#")
    for n in range(5):
        publish(broker, f"demo.resume.{n % 2}", n)
    seen = first.messages(5)
    last = seen[2]["msg_id"]           # the client processed three, then lost the connection
    first.ws.transport.abort() if hasattr(first.ws, "transport") else first.ws.socket.close()
    for n in range(5, 8):
        publish(broker, f"demo.resume.{n % 2}", n)
    with WSClient(broker.port) as again:
        ok = again.request("subscribe", topic="demo.resume.#", since=last)
        assert ok["op"] == "ok" and ok["gap"] is False and ok["replayed"] == 5
        publish(broker, "demo.resume.live", 8)
        got = again.messages(6)
        assert [m["data"] for m in got] == [3, 4, 5, 6, 7, 8]
        ids = [m["msg_id"] for m in got]
        assert len(set(ids)) == len(ids)


def test_resume_older_than_history_tells_the_gap(broker):
    with WSClient(broker.port) as c:
        c.request("subscribe", topic="tiny.gap")
        for n in range(6):
            publish(broker, "tiny.gap", n)
        oldest = c.messages(6)[0]["msg_id"]
    with WSClient(broker.port) as again:
        ok = again.request("subscribe", topic="tiny.gap", since=oldest)
        assert ok["gap"] is True and ok["replayed"] == 3
        gap = [f for f in again.frames if f["op"] == "gap"]
        assert gap and gap[0]["reason"] == "history"
        assert [m["data"] for m in again.messages(3)] == [3, 4, 5]


def test_metrics_count_pubsub(broker):
    status, _, body = broker.request("GET", "/broker/metrics")
    counters = json.loads(body)["counters"]
    assert counters["pubsub"]["published"] > 0 and counters["pubsub"]["deliveries"] > 0
    assert counters["websocket"]["auth_refused"] >= 1
