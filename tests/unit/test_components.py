"""Components: built in the order their needs give, replaced and removed one at a time."""

import textwrap
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock

from broker.components import FEATURE, ComponentType, Needs, NodeParts
from broker.config import ConfigError, Field, Schema, Str
from broker.config.loader import parse_yaml
from broker.node import build_node
from broker.node.assembly import Assembler, Registry
from broker.runtime import Resources

SERVICES = Path(__file__).with_name("loopback_services.py")


# -- ordering, with made-up feature types ---------------------------------------------------

def _assembler(order, needs):
    """Features named in ``order``, each needing the features ``needs[name]``."""
    built = []

    def build(name):
        def builder(section, ctx):
            built.append(name)
            return name
        return builder

    types = {name: ComponentType(None, build(name),
                                 needs=[Needs.feature(n) for n in needs.get(name, ())])
             for name in order}
    registry = Registry({"security": {}, "connection": {}, "outgoing": {}, "feature": types,
                         "channel": {}})
    parts = NodeParts(config=None, reactor=MemoryReactorClock(), store=None, invoker=None,
                      resources=Resources(), router=None, upgrades={})
    declared = [((FEATURE, name), {}) for name in order]
    return Assembler(parts, registry), declared, built


def test_each_is_built_after_what_it_needs_not_in_declaration_order():
    assembler, declared, built = _assembler(["c", "b", "a"], {"c": ["b"], "b": ["a"]})
    for key, section in assembler.order(declared, {}):
        assembler.built[key] = assembler.build(key, section, assembler.built)
    assert built == ["a", "b", "c"]


def test_without_needs_the_declaration_order_stands():
    assembler, declared, _ = _assembler(["c", "b", "a"], {})
    assert [name for (_, name), _ in assembler.order(declared, {})] == ["c", "b", "a"]


def test_needs_in_a_circle_are_refused_naming_them():
    assembler, declared, _ = _assembler(["a", "b"], {"a": ["b"], "b": ["a"]})
    with pytest.raises(ConfigError, match="in a circle: feature a, feature b"):
        assembler.order(declared, {})


def test_a_missing_need_is_reported_at_the_key_naming_it():
    schema = Schema("thing", {"uses": Field(Str())})
    section = schema.check(parse_yaml("uses: gone\n", "f.yaml"))
    thing = ComponentType(schema, lambda s, c: None, needs=[Needs.connection("uses", "amqp")])
    registry = Registry({"feature": {"thing": thing}, "connection": {}})
    assembler = Assembler(None, registry)
    with pytest.raises(ConfigError, match=r'f.yaml:1: uses: no amqp connection "gone"'):
        assembler.order([((FEATURE, "thing"), section)], {})


# -- a whole node ------------------------------------------------------------------------------

CONFIG = f"""
services: {{paths: ["{SERVICES}"]}}
connections:
  - {{name: mem, type: loopback}}
channels:
  - {{name: double, type: http, path: /double, service: test.double}}
  - {{name: work, type: loopback, connection: mem, queue: work, service: test.double}}
"""


@pytest.fixture
def node(tmp_path):
    path = tmp_path / "broker.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    node = build_node(str(path), reactor=MemoryReactorClock())
    node.startService()
    yield node
    node.stopService()


def _section(schema_text, where="new.yaml"):
    from broker.node.model import root_schema
    return root_schema().check(parse_yaml(textwrap.dedent(schema_text), where))


def _channel(text):
    return _section(f"channels:\n  - {text}\n").channels[0]


def _paths(node):
    return sorted(route.path for route in node.router.routes if route.kind == "service")


def test_the_node_lists_its_components_with_what_they_need(node):
    work = node.components[("channel", "work")]
    assert work.needs == {("connection", "mem")} and work.running
    assert list(node.components).index(("connection", "mem")) < list(node.components).index(
        ("channel", "work"))


def test_replacing_an_http_channel_routes_the_new_path_only(node):
    old = node.components[("channel", "double")]
    node.replace(("channel", "double"), _channel(
        "{name: double, type: http, path: /twice, service: test.double}"))
    assert _paths(node) == ["/twice"] and not old.running
    assert node.components[("channel", "double")].running


def test_a_change_that_fails_its_checks_changes_nothing(node):
    before = dict(node.components)
    with pytest.raises(ConfigError, match=r'new.yaml:2: channels\[0\].service: no such service'):
        node.replace(("channel", "double"), _channel(
            "{name: double, type: http, path: /twice, service: nope}"))
    assert node.components == before and _paths(node) == ["/double"]
    assert all(c.running for c in before.values())


def test_a_route_taken_by_another_channel_is_refused_and_the_old_one_stays(node):
    with pytest.raises(ConfigError, match="already routed to double"):
        node.replace(("channel", "other"), _channel(
            "{name: other, type: http, path: /double, service: test.double}"))
    assert _paths(node) == ["/double"] and ("channel", "other") not in node.components


def test_replacing_a_connection_rebuilds_what_is_built_on_it(node):
    old_channel = node.components[("channel", "work")]
    node.replace(("connection", "mem"), _section(
        "connections:\n  - {name: mem, type: loopback, max_queue: 5}\n").connections[0])
    channel = node.components[("channel", "work")]
    connection = node.components[("connection", "mem")].value
    assert channel is not old_channel and channel.value.connection is connection
    assert connection.max_queue == 5 and channel.running and not old_channel.running
    assert list(node.components)[-1] == ("channel", "work")


def test_removing_what_others_need_is_refused_naming_them(node):
    with pytest.raises(ValueError, match="connection mem is needed by channel work"):
        node.remove(("connection", "mem"))


def test_removing_a_channel_takes_its_route_health_and_metrics_away(node):
    assert "loopback.channel.work" in node.resources.metrics
    node.remove(("channel", "work"))
    node.remove(("channel", "double"))
    assert _paths(node) == [] and "loopback.channel.work" not in node.resources.metrics
    assert ("channel", "work") not in node.components


def test_replacing_a_feature_rebuilds_the_features_built_on_it(node):
    scheduler = node.components[("feature", "scheduler")]
    node.replace(("feature", "cache"), _section("cache: {max_entries: 7}\n").cache)
    cache = node.resources.cache
    assert cache.max_entries == 7 and node.resources.caches["default"] is cache
    rebuilt = node.components[("feature", "scheduler")]
    assert rebuilt is not scheduler and rebuilt.value.store is cache and rebuilt.running
