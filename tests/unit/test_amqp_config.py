"""AMQP config: schema checks, cross-references, and no pika import while building a node."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from broker.amqp import AMQP_CHANNEL, AMQP_CONNECTION, AMQP_OUTGOING
from broker.config import ConfigError
from broker.node import build_node

CONNECTION = {"name": "rabbit", "type": "amqp", "username": "guest"}
CHANNEL = {"name": "c", "type": "amqp", "connection": "rabbit", "queue": "q"}


def test_connection_defaults_are_bounded():
    section = AMQP_CONNECTION.check(CONNECTION)
    assert (section.host, section.port, section.vhost) == ("127.0.0.1", 5672, "/")
    assert section.password == ""  # no default password
    assert section.heartbeat == 30.0 and section.reconnect_max == 10.0


def test_a_channel_needs_exactly_one_of_service_and_topic():
    with pytest.raises(ConfigError, match="exactly one of service or topic"):
        AMQP_CHANNEL.check(CHANNEL)
    with pytest.raises(ConfigError, match="exactly one of service or topic"):
        AMQP_CHANNEL.check({**CHANNEL, "service": "s", "topic": "t"})
    assert AMQP_CHANNEL.check({**CHANNEL, "topic": "news"}).topic == "news"


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match="prefetch"):
        AMQP_CHANNEL.check({**CHANNEL, "service": "s", "prefetch": 0})
    with pytest.raises(ConfigError, match="max_outbox"):
        AMQP_OUTGOING.check({"name": "o", "type": "amqp", "connection": "rabbit",
                             "max_outbox": -1})
    with pytest.raises(ConfigError, match="reconnect_max"):
        AMQP_CONNECTION.check({**CONNECTION, "reconnect_initial": "5s", "reconnect_max": "1s"})


def test_retry_delays_are_bounded_and_ordered():
    section = AMQP_CHANNEL.check({**CHANNEL, "service": "s"})
    assert (section.retry_delay, section.retry_delay_max) == (1.0, 60.0)
    with pytest.raises(ConfigError, match="retry_delay_max: must be at least retry_delay"):
        AMQP_CHANNEL.check({**CHANNEL, "service": "s", "retry_delay": "10s",
                            "retry_delay_max": "5s"})
    with pytest.raises(ConfigError, match="retry_delay_max"):  # below consumer_timeout
        AMQP_CHANNEL.check({**CHANNEL, "service": "s", "retry_delay_max": "1h"})


def write(tmp_path, text):
    path = tmp_path / "broker.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_channel_naming_an_unknown_connection_is_a_config_error(tmp_path):
    path = write(tmp_path, """
        channels:
          - {name: c, type: amqp, connection: nope, queue: q, service: broker.service.invoke}
        """)
    with pytest.raises(ConfigError, match='no amqp connection "nope"'):
        build_node(path)


def test_a_channel_naming_an_unknown_service_is_a_config_error(tmp_path):
    path = write(tmp_path, """
        connections: [{name: rabbit, type: amqp, username: guest}]
        channels:
          - {name: c, type: amqp, connection: rabbit, queue: q, service: no.such}
        """)
    with pytest.raises(ConfigError, match='no such service "no.such"'):
        build_node(path)


def test_building_a_node_with_amqp_imports_neither_pika_nor_a_reactor(tmp_path):
    path = write(tmp_path, """
        connections: [{name: rabbit, type: amqp, username: guest}]
        outgoing: [{name: o, type: amqp, connection: rabbit}]
        channels:
          - {name: c, type: amqp, connection: rabbit, queue: q, service: broker.amqp.publish}
        """)
    code = (f"import sys; from twisted.internet.testing import MemoryReactorClock\n"
            f"from broker.node import build_node\n"
            f"node = build_node({str(path)!r}, reactor=MemoryReactorClock())\n"
            f"assert 'amqp' in node.resources.out.kinds()\n"
            f"print('pika' in sys.modules, 'twisted.internet.reactor' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == ["False", "False"]
