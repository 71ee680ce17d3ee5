"""Address allow-lists per channel and per definition: CIDR, IPv4 and IPv6, first match wins,
403 otherwise; X-Forwarded-For believed only from a trusted proxy."""

from ipaddress import ip_address

import pytest

from broker.config import ConfigError
from broker.security.addresses import AddressList, client_address, parse_networks
from broker.security.credentials import Credentials
from tests.unit.security_support import Node, basic

SERVICES = '''
from broker import Service


class Echo(Service):
    name = "demo.echo"

    def handle(self):
        self.response.payload = {"caller": self.request.caller}
'''

CONFIG = '''
services: {paths: [services.py]}
auth:
  trusted_proxies: [10.0.0.1, "fd00::1"]
security:
  - {name: office, type: basic_auth, username: o, password: pw,
     allow_from: ["192.168.0.0/16", "2001:db8::/32"]}
channels:
  - {name: internal, type: http, path: /internal, service: demo.echo, methods: [GET],
     allow_from: ["!10.9.0.0/16", "10.0.0.0/8", "::1/128"]}
  - {name: office, type: http, path: /office, service: demo.echo, methods: [GET], security: office}
'''


@pytest.fixture
def node(tmp_path):
    return Node(tmp_path, CONFIG, SERVICES)


def test_a_channel_list_first_match_wins_ipv4_and_ipv6(node):
    assert node.request("GET", "/internal", peer="10.1.2.3")[0] == 200
    assert node.request("GET", "/internal", peer="::1")[0] == 200
    status, _, body = node.request("GET", "/internal", peer="10.9.0.5")  # denied before 10/8
    assert (status, body["code"]) == (403, "forbidden")
    assert node.request("GET", "/internal", peer="172.16.0.1")[0] == 403
    assert node.request("GET", "/internal", peer="::ffff:10.1.2.3")[0] == 200  # v4-mapped
    counts = node.node.resources.metrics_report()["guard.channel.internal"]
    assert (counts["address_allowed"], counts["address_denied"]) == (3, 2)


def test_a_definition_list_applies_wherever_the_definition_is_used(node):
    assert node.request("GET", "/office", basic("o", "pw"), peer="192.168.1.1")[0] == 200
    assert node.request("GET", "/office", basic("o", "pw"), peer="2001:db8::5")[0] == 200
    assert node.request("GET", "/office", basic("o", "pw"), peer="8.8.8.8")[0] == 403


def test_forwarded_for_counts_only_from_a_trusted_proxy(node):
    forwarded = {"X-Forwarded-For": "172.16.0.1, 10.1.1.1"}
    # through the trusted proxy: the client is the last address before it
    assert node.request("GET", "/internal", forwarded, peer="10.0.0.1")[0] == 200
    spoofed = {"X-Forwarded-For": "10.1.1.1"}
    assert node.request("GET", "/internal", spoofed, peer="172.16.0.9")[0] == 403
    blocked = {"X-Forwarded-For": "10.1.1.1, 10.9.0.7"}
    assert node.request("GET", "/internal", blocked, peer="10.0.0.1")[0] == 403
    assert node.request("GET", "/office", {**basic("o", "pw"), "X-Forwarded-For": "192.168.3.3"},
                        peer="fd00::1")[0] == 200


def test_client_address_reads_autobahn_peers_and_garbage():
    assert client_address(Credentials({}, peer="tcp:127.0.0.1:5555")) == ip_address("127.0.0.1")
    assert client_address(Credentials({}, peer="tcp6:::1:5555")) == ip_address("::1")
    assert client_address(Credentials({}, peer="nonsense")) is None
    assert not AddressList(parse_networks(["0.0.0.0/0"])).allows(None)


def test_a_bad_network_is_a_config_error_naming_the_key(tmp_path):
    (tmp_path / "broker.yaml").write_text(
        "channels: [{name: x, type: http, path: /x, service: demo.echo, allow_from: [nope]}]\n"
        "services: {paths: [services.py]}\n")
    (tmp_path / "services.py").write_text(SERVICES)
    from broker.node import build_node
    with pytest.raises(ConfigError, match="allow_from.*'nope' is not an IPv4 or IPv6"):
        build_node(str(tmp_path / "broker.yaml"))
