"""Address allow-lists: which client addresses may reach a channel or use a definition.

An :class:`AddressList` is a list of rules, IPv4 and IPv6 networks (CIDR), each allowing or
(``!`` in front) denying; the first rule matching the client's address decides, no match is a
deny (403; the reason goes to the log only).  The client's address is the connection's peer,
or, when the peer is one of the trusted proxies, the last address in ``X-Forwarded-For`` that
is not itself a trusted proxy (:func:`client_address`).
"""

from functools import lru_cache
from ipaddress import ip_address, ip_network

from twisted.logger import Logger

from broker.errors import Forbidden

__all__ = ["AddressList", "client_address", "parse_networks"]

log = Logger()


def parse_networks(items, key="allow_from"):
    """``[(network, allowed)]`` from ``["10.0.0.0/8", "!10.1.0.0/16", "::1"]``; ValueError
    naming the bad entry."""
    rules = []
    for item in items:
        allowed = not item.startswith("!")
        text = item if allowed else item[1:]
        try:
            rules.append((ip_network(text.strip(), strict=False), allowed))
        except ValueError:
            raise ValueError(f"{key}: {item!r} is not an IPv4 or IPv6 address or network") from None
    return rules


@lru_cache(maxsize=4096)  # peers repeat: parse each once
def _address(text):
    if not text:
        return None
    text = text.strip()
    if text[:4] in ("tcp:", "tcp4", "tcp6"):  # autobahn's peer: "tcp:1.2.3.4:5678"
        text = text.partition(":")[2].rpartition(":")[0]
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    return address.ipv4_mapped or address if address.version == 6 else address


def client_address(credentials, trusted_proxies=()):
    """The client's address (an ``ip_address``, or None when unknown) for ``credentials``
    (``peer`` and ``headers``)."""
    address = _address(credentials.peer)
    if address is None or not trusted_proxies or not _within(address, trusted_proxies):
        return address
    forwarded = credentials.headers.get("x-forwarded-for")
    if not forwarded:
        return address
    for hop in reversed(forwarded.split(",")):
        hop_address = _address(hop)
        if hop_address is None:
            return address  # a malformed hop: trust nothing beyond the proxy
        if not _within(hop_address, trusted_proxies):
            return hop_address
        address = hop_address
    return address


def _within(address, networks):
    return any(address.version == n.version and address in n for n in networks)


class AddressList:
    """Rules checked in order; the first matching decides, none matching denies.

    :param rules: as :func:`parse_networks` returns them.
    :param trusted_proxies: networks whose ``X-Forwarded-For`` is believed.
    :param where: what the list guards, for the log (``channel x``, ``definition y``).
    """

    def __init__(self, rules, trusted_proxies=(), where=""):
        self.rules = list(rules)
        self.trusted_proxies = tuple(trusted_proxies)
        self.where = where
        self.counters = {"allowed": 0, "denied": 0}

    def allows(self, address):
        if address is None:
            return False
        for network, allowed in self.rules:
            if address.version == network.version and address in network:
                return allowed
        return False

    def check(self, credentials, _definition=None):
        """Pass, or raise :class:`~broker.errors.Forbidden` (the reason in the log only)."""
        address = client_address(credentials, self.trusted_proxies)
        if self.allows(address):
            self.counters["allowed"] += 1
            return address
        self.counters["denied"] += 1
        log.info("address {address} not allowed by {where} (cid {cid})", address=str(address),
                 where=self.where, cid=credentials.cid)
        raise Forbidden()
