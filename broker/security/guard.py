"""Guards: an address allow-list and rate limits in front of a definition, or of a channel.

A :class:`Guarded` stands where a definition stood (a channel's ``ChannelInfo.security``, the
node's ``{name: definition}``): its :meth:`~Guarded.authenticate` checks the client's address,
the limits counted by channel or address, then asks the definition (if any), then the limits
counted by caller, and answers the caller.  Every other attribute is the definition's, so the
hot path is unchanged for what has no guard: nothing is wrapped then.
"""

from twisted.logger import Logger

from broker.security.addresses import AddressList, client_address
from broker.security.ratelimit import rate_limited

__all__ = ["Guarded", "guard"]

log = Logger()


class Guarded:
    """``definition`` (or None: an open channel) behind ``allow`` and ``limits``.

    :param where: ``channel <name>`` or ``definition <name>``: the bucket keys' prefix and
        what the log says.
    :param allow: an :class:`~broker.security.addresses.AddressList`, or None.
    :param limits: :class:`~broker.security.ratelimit.Limit` objects.
    :param buckets: the node's :class:`~broker.security.ratelimit.Buckets`.
    """

    def __init__(self, definition, where, *, allow=None, limits=(), buckets=None,
                 trusted_proxies=()):
        self.definition = definition
        self.where = where
        self.allow = allow
        self.trusted_proxies = tuple(trusted_proxies)
        self.before = [limit for limit in limits if limit.by != "caller"]
        self.after = [limit for limit in limits if limit.by == "caller"]
        # the common case, one limit by address with no proxy to believe: keyed by the peer
        self._peer_limit = (self.before[0] if len(self.before) == 1 and allow is None
                            and self.before[0].by == "address" and not self.trusted_proxies
                            else None)
        if definition is None and self.after:
            raise ValueError("rate_limit: by caller needs a security definition")
        self.buckets = buckets
        self._by_address = f"{where}|address|"
        self.caller = None
        self.counters_guard = {"limited": 0}

    def __getattr__(self, name):
        definition = self.__dict__.get("definition")
        if definition is None:
            raise AttributeError(name)
        return getattr(definition, name)

    def authenticate(self, credentials):
        """The caller (None on an open channel), or raise 401/403/429."""
        limit = self._peer_limit
        if limit is not None:
            wait = self.buckets.take(self._by_address + credentials.peer, limit)
            if wait:
                self._refuse(limit, wait, credentials)
            caller = self.caller = (self.definition.authenticate(credentials)
                                    if self.definition is not None else None)
            for limit in self.after:
                self._take(f"{self.where}|caller|{caller}", limit, credentials)
            return caller
        address = None
        if self.allow is not None:
            address = self.allow.check(credentials)
        for limit in self.before:
            if limit.by == "address":
                if self.trusted_proxies:
                    if address is None:
                        address = client_address(credentials, self.trusted_proxies)
                    key = self._by_address + str(address)
                else:  # the peer is the client: its text is the key, nothing to parse
                    key = self._by_address + credentials.peer
            else:
                key = f"{self.where}|channel"
            self._take(key, limit, credentials)
        caller = self.caller = (self.definition.authenticate(credentials)
                                if self.definition is not None else None)
        for limit in self.after:
            self._take(f"{self.where}|caller|{caller}", limit, credentials)
        return caller

    def metrics(self):
        """Refusals: ``address_denied`` (the allow-list), ``rate_limited``."""
        return {"address_allowed": self.allow.counters["allowed"] if self.allow else 0,
                "address_denied": self.allow.counters["denied"] if self.allow else 0,
                "rate_limited": self.counters_guard["limited"]}

    def offers(self, credentials):
        return self.definition.offers(credentials)

    def _take(self, key, limit, credentials):
        wait = self.buckets.take(key, limit)
        if wait:
            self._refuse(limit, wait, credentials)

    def _refuse(self, limit, wait, credentials):
        """Over ``limit``: count, log, and raise the 429 (nothing left: remaining 0)."""
        self.counters_guard["limited"] += 1
        log.info("rate limit {limit} of {where} hit by {peer} (cid {cid})", limit=repr(limit),
                 where=self.where, peer=str(credentials.peer), cid=credentials.cid)
        raise rate_limited(limit, 0, wait)

    def __repr__(self):
        return f"Guarded({self.definition!r}, {self.where!r})"


def guard(definition, where, *, allow_from=(), limits=(), buckets=None, trusted_proxies=()):
    """``definition`` itself when nothing guards it, else a :class:`Guarded` one."""
    if not allow_from and not limits:
        return definition
    from broker.security.addresses import parse_networks
    allow = AddressList(parse_networks(allow_from), trusted_proxies, where) if allow_from else None
    return Guarded(definition, where, allow=allow, limits=limits, buckets=buckets,
                   trusted_proxies=trusted_proxies)
