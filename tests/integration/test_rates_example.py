"""The exchange-rates example end to end: a real ``twistd -n broker`` whose outgoing
HTTP connections fetch from the fixture providers it serves itself."""

import base64
import json
import secrets
import subprocess
import pytest
import yaml
from websockets.exceptions import InvalidStatus

from tests.integration.broker_process import BrokerProcess, ROOT, free_port, wait_until
from tests.integration.ws_client import WSClient


EXAMPLE = ROOT / "etc" / "examples" / "rates.yaml"


def get_json(broker, path, method="GET", **kwargs):
    status, headers, body = broker.request(method, path, **kwargs)
    return status, json.loads(body) if body else None


def admin(broker):
    token = base64.b64encode(f"admin:{broker.admin_password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def switch(broker, provider, state):
    """Switch a fixture provider down or up (the switch is for the admin definition only)."""
    status, body = get_json(broker, f"/fixtures/rates/{provider}/{state}", "POST", headers=admin(broker))
    assert status == 200, body
    return body


@pytest.fixture(scope="module")
def broker():
    process = BrokerProcess().start()          # the sample etc/broker.yaml
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def providers_up(broker):
    yield
    for provider in ("ecb", "ecb-sdmx", "frankfurter"):
        switch(broker, provider, "up")


def test_the_fixture_switch_is_for_admin_only(broker):
    """Anonymous callers may read the fixtures but not switch a provider down."""
    status, body = get_json(broker, "/fixtures/rates/ecb/down", "POST")
    assert status == 401 and body["code"] == "unauthorized"
    assert get_json(broker, "/fixtures/rates")[1]["providers"]["ecb"]["down"] is False
    assert switch(broker, "ecb", "down")["providers"]["ecb"]["down"] is True


def test_rates_in_the_sample_config(broker):
    status, body = get_json(broker, "/rates?currency=USD,GBP")
    assert status == 200, body
    assert [row["currency"] for row in body] == ["USD", "GBP"]
    for row in body:
        assert set(row) == {"currency", "rate", "provider", "as_of", "is_stale"}
        assert row["provider"] == "ecb" and row["is_stale"] is False
        assert 0.5 < row["rate"] < 2
    status, everything = get_json(broker, "/rates")
    assert status == 200 and len(everything) == 30


def test_every_provider_was_fetched_through_its_outgoing_connection(broker):
    get_json(broker, "/rates?currency=USD&max_age=0")
    _, metrics = get_json(broker, "/broker/metrics")
    counters = metrics["counters"]
    for name in ("ECB", "ECB-SDMX", "Frankfurter"):
        assert counters[f"outgoing.http.{name}"]["ok"] >= 1, counters
    assert all(n >= 1 for n in counters["fixtures.rates"].values())


def test_unknown_and_malformed_currencies(broker):
    status, body = get_json(broker, "/rates?currency=USD,XAU")
    assert status == 404
    assert body["errors"] == [{"field": "currency", "problem": "no rate for XAU"}]
    status, body = get_json(broker, "/rates?currency=dollar")
    assert status == 400
    assert body["errors"][0]["field"] == "currency"


def test_one_provider_down_the_others_still_serve(broker):
    switch(broker, "ecb", "down")
    status, body = get_json(broker, "/rates?currency=USD,JPY&max_age=0")   # max_age=0: refresh now
    assert status == 200, body
    assert {row["provider"] for row in body} == {"ecb-sdmx"}
    assert not any(row["is_stale"] for row in body)
    assert "rates: provider ecb failed: GET answered 503" in broker.output


def test_rate_changes_are_published_to_topics(broker):
    def published():
        _, metrics = get_json(broker, "/broker/metrics")
        return metrics["counters"]["pubsub"]["published"]
    before = published()
    status, _ = get_json(broker, "/rates?currency=USD&max_age=0")       # a refresh: the fixtures move
    assert status == 200
    assert wait_until(lambda: published() > before)
    assert "pub/sub is not configured" not in broker.output


def test_all_providers_down_serves_the_last_rates_as_stale(broker):
    status, before = get_json(broker, "/rates?currency=USD&max_age=0")
    assert status == 200 and before[0]["is_stale"] is False
    for provider in ("ecb", "ecb-sdmx", "frankfurter"):
        switch(broker, provider, "down")
    status, after = get_json(broker, "/rates?currency=USD&max_age=0")
    assert status == 200, after
    assert after[0]["is_stale"] is True
    assert after[0]["rate"] == before[0]["rate"]


@pytest.fixture(scope="module")
def example():
    """etc/examples/rates.yaml as shipped (memory cache: BROKER_REDIS_URL unset)."""
    process = BrokerProcess(config=EXAMPLE, env={"BROKER_REDIS_URL": ""}).start()
    yield process
    process.stop()


def served(process):
    """Answers per fixture provider so far."""
    return get_json(process, "/broker/metrics")[1]["counters"].get("fixtures.rates", {})


def test_the_example_prefetches_at_start(example):
    """The scheduler's first refresh runs at start: the rates are there before anyone asks."""
    assert wait_until(lambda: served(example) == {"ecb": 1, "frankfurter": 1, "ecb-sdmx": 1}), \
        example.output
    status, body = get_json(example, "/rates?currency=USD,GBP")
    assert status == 200, body
    assert [row["currency"] for row in body] == ["USD", "GBP"]
    assert served(example) == {"ecb": 1, "frankfurter": 1, "ecb-sdmx": 1}    # from the cache
    assert "job rates.refresh ran rates.refresh" in example.output


def test_anonymous_websocket_subscribers_get_each_refresh(example):
    """rates.# is open to anonymous subscribers; admin gets in too (it has pub/sub permissions)."""
    with WSClient(example.port) as anonymous, \
            WSClient(example.port, headers=admin(example)) as operator:
        assert anonymous.request("subscribe", topic="rates.#")["op"] == "ok"
        assert operator.request("subscribe", topic="rates.EUR.USD")["op"] == "ok"
        status, body = get_json(example, "/rates/refresh", "POST", headers=admin(example))
        assert status == 200 and "USD" in body["changed"], body
        changes = anonymous.messages(len(body["changed"]))
        assert {frame["topic"] for frame in changes} == {f"rates.EUR.{c}" for c in body["changed"]}
        usd, = operator.messages(1)
        assert usd["data"]["currency"] == "USD" and usd["data"]["previous"] is not None


def test_the_example_refuses_publishing_and_explains_a_definition_without_permissions(tmp_path):
    """Anonymous callers may not publish to rates.#; credentials of a definition the config gives
    no pub/sub permissions are refused with a 403 naming it (they used to get a bare 401)."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["services"]["paths"] = [str(ROOT / "plugins" / "rates.py")]
    del config["pubsub"]["permissions"]["admin"]
    path = tmp_path / "rates-no-admin-pubsub.yaml"
    path.write_text(yaml.safe_dump(config))
    process = BrokerProcess(config=path, env={"BROKER_REDIS_URL": ""}).start()
    try:
        with pytest.raises(InvalidStatus) as refused:
            WSClient(process.port, headers=admin(process))
        response = refused.value.response
        assert response.status_code == 403
        assert 'security definition "admin" has no pub/sub permissions' in response.reason_phrase
        with WSClient(process.port) as anonymous:
            assert anonymous.request("publish", topic="rates.EUR.USD", data={})["op"] == "error"
    finally:
        process.stop()


def test_the_offline_example_refreshes_on_its_own():
    process = BrokerProcess(config=EXAMPLE, env={"RATES_REFRESH_INTERVAL": "1s"}).start()
    try:
        def served():
            _, metrics = get_json(process, "/broker/metrics")
            counts = metrics["counters"].get("fixtures.rates", {})
            return counts if counts and min(counts.values()) >= 2 else None
        # Two scheduled refreshes happen without any /rates request.
        assert wait_until(served), process.output
        status, body = get_json(process, "/rates?currency=USD,GBP,JPY")
        assert status == 200, body
        assert [row["currency"] for row in body] == ["USD", "GBP", "JPY"]
        assert "Traceback" not in process.output
    finally:
        process.stop()


def redis_config(tmp_path, prefix):
    """rates.yaml as shipped, but for its keys under ``prefix`` (tests share the Redis server)."""
    config = yaml.safe_load(EXAMPLE.read_text())
    assert config["cache"] == {"redis": "${BROKER_REDIS_URL:}"}
    config["cache"]["prefix"] = prefix
    config["services"]["paths"] = [str(ROOT / "plugins" / "rates.py")]
    path = tmp_path / "rates-redis.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def redis_cli(*args):
    return subprocess.run(["redis-cli", *args], capture_output=True, text=True, timeout=10).stdout


def test_the_offline_example_keeps_rates_in_redis(tmp_path):
    """BROKER_REDIS_URL set: the rates the node prefetches at start are in Redis."""
    prefix = f"test-rates-{secrets.token_hex(4)}:"
    process = BrokerProcess(config=redis_config(tmp_path, prefix),
                            env={"BROKER_REDIS_URL": "redis://127.0.0.1:6379/0"}).start()
    try:
        stored = wait_until(lambda: redis_cli("GET", f"{prefix}rates:EUR:USD").strip())
        assert stored, process.output
        status, body = get_json(process, "/rates?currency=USD")
        assert status == 200, body
        entry = json.loads(stored)                     # the scheduler may have moved the rate since
        assert entry["currency"] == "USD" and set(entry) == set(body[0])
        snapshot = json.loads(redis_cli("GET", f"{prefix}rates:EUR"))
        assert "USD" in snapshot["currencies"]
    finally:
        process.stop()
        for key in redis_cli("--scan", "--pattern", f"{prefix}*").split():
            redis_cli("DEL", key)


def test_redis_down_rates_get_still_answers(tmp_path):
    process = BrokerProcess(config=redis_config(tmp_path, "unused:"),
                            env={"BROKER_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}).start()
    try:
        status, body = get_json(process, "/rates?currency=USD,GBP")
        assert status == 200, body
        assert [row["currency"] for row in body] == ["USD", "GBP"]
    finally:
        process.stop()


def test_the_example_configs_check():
    from broker.node.model import load_config
    for name in ("rates.yaml", "rates-online.yaml"):
        path = ROOT / "etc" / "examples" / name
        config = load_config(path)
        assert [o.name for o in config.outgoing] == ["ECB", "ECB-SDMX", "Frankfurter"]


def test_rate_changes_go_to_rabbitmq(tmp_path):
    """With an AMQP outgoing named "rates", each change reaches a queue bound to its exchange."""
    import pika
    suffix = secrets.token_hex(4)
    exchange, queue = f"test-rates-{suffix}", f"test-rates-{suffix}.all"
    config = yaml.safe_load(EXAMPLE.read_text())
    config["services"]["paths"] = [str(ROOT / "plugins" / "rates.py")]
    config["scheduler"]["jobs"][0]["run_at_start"] = False  # refresh once the queue is bound
    config["connections"] = [{
        "name": "rabbit", "type": "amqp", "username": "guest", "password": "guest",
        "exchanges": [{"name": exchange, "type": "topic", "durable": False, "auto_delete": True}],
        "queues": [{"name": queue, "durable": False,
                    "bindings": [{"exchange": exchange, "routing_key": "rates.EUR.#"}]}]}]
    config["outgoing"].append({"name": "rates", "type": "amqp", "connection": "rabbit",
                               "exchange": exchange, "persistent": False})
    path = tmp_path / "rates-amqp.yaml"
    path.write_text(yaml.safe_dump(config))
    process = BrokerProcess(config=path).start()
    rabbit = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    channel = rabbit.channel()
    try:
        def queue_ready():
            nonlocal channel
            if channel.is_closed:                   # a passive declare of a missing queue closes it
                channel = rabbit.channel()
            try:
                channel.queue_declare(queue, passive=True)
                return True
            except pika.exceptions.ChannelClosedByBroker:
                return False
        # The broker declares the queue once connected; a refresh before that would go nowhere.
        assert wait_until(queue_ready), process.output
        status, _ = get_json(process, "/rates?currency=USD")
        assert status == 200
        received = []

        def drained():
            while True:
                method, properties, body = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    return len(received) >= 30
                received.append((method.routing_key, json.loads(body)))
        assert wait_until(drained), (received, process.output)
        keys = {key for key, _ in received}
        assert "rates.EUR.USD" in keys and len(keys) == 30
        usd = next(message for key, message in received if key == "rates.EUR.USD")
        assert usd["currency"] == "USD" and usd["base"] == "EUR" and usd["previous"] is None
    finally:
        process.stop()
        if channel.is_open:
            channel.queue_delete(queue)
            channel.exchange_delete(exchange)
        rabbit.close()
