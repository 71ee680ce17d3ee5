"""Pub/sub logic with fakes: patterns, permissions, history, sessions and their queues."""

import pytest
from twisted.internet.task import Clock

from broker.errors import Forbidden, Unauthorized
from broker.pubsub.access import Access, Grant, covers
from broker.pubsub.hub import Hub, PublishError, TopicPolicy
from broker.pubsub.session import SLOW_CONSUMER, Session
from broker.pubsub.stores import MemoryStore
from broker.pubsub.topics import TopicError, check_pattern, check_topic, matches
from broker.security.auth import APIKey, BasicAuth


@pytest.mark.parametrize("pattern, topic, expected", [
    ("rates.#", "rates", True), ("rates.#", "rates.EUR.USD", True), ("rates.#", "ratesx", False),
    ("rates.EUR.*", "rates.EUR.USD", True), ("rates.EUR.*", "rates.EUR", False),
    ("rates.EUR.*", "rates.EUR.USD.x", False), ("#", "a.b", True), ("#.x", "x", True),
    ("a.#.z", "a.z", True), ("a.#.z", "a.b.c.z", True), ("a.#.z", "a.b.c", False),
    ("*.b", "a.b", True), ("*.b", "b", False), ("a", "a", True), ("a", "ab", False),
])
def test_wildcards(pattern, topic, expected):
    assert matches(pattern, topic) is expected


def test_bad_names_say_why():
    for bad in ("", "a..b", "a.*", "a b", "x" * 300, None):
        with pytest.raises(TopicError):
            check_topic(bad)
    with pytest.raises(TopicError, match="each word"):
        check_pattern("a.b*")
    assert check_pattern("a.*.#") == "a.*.#"


@pytest.mark.parametrize("allowed, requested, expected", [
    ("#", "anything.#", True), ("rates.#", "rates.#", True), ("rates.#", "rates.EUR.*", True),
    ("rates.#", "#", False), ("rates.*", "rates.#", False), ("rates.*", "rates.*", True),
    ("rates.EUR", "rates.*", False), ("demo.#", "demo", True), ("*.x", "a.x", True),
])
def test_a_grant_covers_a_subscription_only_when_every_topic_is_inside(allowed, requested, expected):
    assert covers(allowed, requested) is expected


class Sink:
    def __init__(self):
        self.messages, self.notices, self.closed = [], [], None

    def send_message(self, message):
        self.messages.append(message)

    def send_notice(self, notice):
        self.notices.append(notice)

    def close(self, code, reason):
        self.closed = (code, reason)


def hub(*policies, history=10):
    return Hub(MemoryStore(Clock()), [*policies, TopicPolicy("#", history)], max_message_size=100)


def publish(h, topic, data):
    return h.publish(topic, data).result


def test_publish_answers_an_ordered_id_and_refuses_bad_input():
    h = hub()
    first, second = publish(h, "a", 1), publish(h, "b", 2)
    assert first.split("-")[0] == second.split("-")[0]
    assert int(second.split("-")[1]) == int(first.split("-")[1]) + 1
    for topic, data, field in (("a.*", 1, "topic"), ("a", object(), "data"), ("a", "x" * 200, "data")):
        errors = []
        h.publish(topic, data).addErrback(lambda f: errors.append(f.value))
        assert isinstance(errors[0], PublishError) and errors[0].field == field


def test_queue_is_bounded_while_paused_and_drop_oldest_tells_the_gap():
    h = hub()
    sink = Sink()
    session = Session(h, sink, queue_size=3)
    session.subscribe("t.#")
    session.pause()
    for n in range(10):
        publish(h, "t.x", n)
    assert len(session.queue) == 3 and h.counters["dropped"] == 7
    session.resume()
    assert [m.data_json for m in sink.messages] == ["7", "8", "9"]
    assert sink.notices[0]["op"] == "gap" and sink.notices[0]["dropped"] == 7


def test_close_policy_closes_with_4008_and_forgets_the_session():
    h = hub(TopicPolicy("must.#", 10, "close"))
    sink = Sink()
    session = Session(h, sink, queue_size=2)
    session.subscribe("must.#")
    session.pause()
    for n in range(3):
        publish(h, "must.x", n)
    assert sink.closed[0] == SLOW_CONSUMER and "slow consumer" in sink.closed[1]
    assert h.counters["slow_consumer_closes"] == 1 and h.counters["subscriptions"] == 0


def test_resume_replays_in_order_without_duplicates_and_tells_old_gaps():
    h = hub(TopicPolicy("short.#", 2))
    ids = [publish(h, "r.a" if n % 2 else "r.b", n) for n in range(6)]
    sink = Sink()
    session = Session(h, sink)
    from broker.pubsub.message import parse_msg_id
    result = session.subscribe("r.#", parse_msg_id(ids[2])).result
    assert result == {"replayed": 3, "gap": False}
    assert [m.data_json for m in sink.messages] == ["3", "4", "5"]
    for n in range(3):
        publish(h, "short.x", n)
    other = Sink()
    gap = Session(h, other).subscribe("short.x", (int(ids[0].split("-")[0]), 1)).result
    assert gap["gap"] is True and other.notices[0]["reason"] == "history"


def test_an_id_from_another_epoch_is_a_gap():
    h = hub()
    publish(h, "t", 1)
    sink = Sink()
    result = Session(h, sink).subscribe("t", (h.store.epoch + 1, 1)).result
    assert result == {"replayed": 1, "gap": True}


def test_identify_anonymous_known_and_wrong_credentials():
    key = APIKey("apps", "k3y")
    basic = BasicAuth("admin", "admin", "pw")
    access = Access({"admin": basic, "apps": key},
                    {"admin": Grant("admin", ["#"]), "apps": Grant("apps", ["rates.#"]),
                     "anonymous": Grant("anonymous", ["demo.#"])})
    assert access.identify({}).name == "anonymous"
    assert access.identify({"x-api-key": "k3y"}).name == "apps"
    assert access.identify({"authorization": "Bearer k3y"}).name == "apps"
    assert access.identify({}, {"token": "k3y"}).name == "apps"
    assert access.identify({"authorization": "Basic YWRtaW46cHc="}).name == "admin"
    for headers in ({"x-api-key": "nope"}, {"authorization": "Bearer nope"},
                    {"authorization": "Basic YWRtaW46bm8="}):
        with pytest.raises(Unauthorized):
            access.identify(headers)
    assert access.counters["auth_failures"] == 3


def test_credentials_of_a_definition_without_permissions_are_refused_naming_it():
    """Right credentials of a definition absent from pubsub.permissions: a 403 saying so, not a
    bare 401 (which reads as a wrong password)."""
    basic = BasicAuth("admin", "admin", "pw")
    access = Access({"admin": basic}, {"anonymous": Grant("anonymous", ["rates.#"])})
    with pytest.raises(Forbidden) as caught:
        access.identify({"authorization": "Basic YWRtaW46cHc="})
    assert 'security definition "admin" has no pub/sub permissions' in caught.value.message
    with pytest.raises(Unauthorized):
        access.identify({"authorization": "Basic YWRtaW46bm8="})     # a wrong password stays 401
    assert (access.counters["denied"], access.counters["auth_failures"]) == (1, 1)


def test_an_api_key_of_a_definition_without_permissions_is_never_anonymous():
    """In its own header as with a bearer token: the right key is a 403 naming the definition,
    a wrong one a 401 (it was let in as anonymous when sent in the header)."""
    access = Access({"apps": APIKey("apps", "k3y", header="X-Apps-Key")},
                    {"anonymous": Grant("anonymous", ["demo.#"])})
    for headers in ({"x-apps-key": "k3y"}, {"authorization": "Bearer k3y"}):
        with pytest.raises(Forbidden, match='security definition "apps" has no pub/sub'):
            access.identify(headers)
    with pytest.raises(Unauthorized):
        access.identify({"x-apps-key": "nope"})
    assert access.identify({"x-other": "k3y"}) is access.anonymous
    assert access.counters == {"authenticated": 0, "anonymous": 1, "auth_failures": 1,
                               "denied": 2}


def test_a_service_publishes_through_resources_and_gets_the_id():
    from broker import Service
    from broker.runtime import Resources
    from broker.testing import call_service_sync

    class Announce(Service):
        name = "test.announce"

        async def handle(self):
            self.response.payload = {"msg_id": await self.publish("news.today", {"n": 1})}

    h = hub()
    sink = Sink()
    Session(h, sink).subscribe("news.#")
    resources = Resources()
    resources.pubsub = h
    response = call_service_sync(Announce, {}, resources=resources)
    assert sink.messages[0].msg_id == response.payload["msg_id"]
    assert sink.messages[0].publisher == "test.announce"
    assert sink.messages[0].frame.startswith(b'{"op":"message","topic":"news.today"')


@pytest.mark.parametrize("section, problem", [
    ("pubsub:\n  permissions:\n    nobody: {subscribe: ['#']}\n", 'no security definition "nobody"'),
    ("pubsub:\n  permissions:\n    anonymous: {subscribe: ['a..b']}\n", "each word"),
    ("pubsub:\n  topics:\n    - {pattern: 'x.#', overflow: explode}\n", "overflow"),
    ("pubsub:\n  redis: cache\n", 'no redis connection "cache"'),
    ("pubsub:\n  websocket: {queue_size: 0}\n", "queue_size"),
])
def test_config_mistakes_name_the_key(tmp_path, section, problem):
    from broker.config import ConfigError
    from broker.node import build_node
    from twisted.internet.task import Clock
    path = tmp_path / "broker.yaml"
    path.write_text(section)
    with pytest.raises(ConfigError) as error:
        build_node(str(path), reactor=Clock())
    assert problem in str(error.value) and "broker.yaml" in str(error.value)
