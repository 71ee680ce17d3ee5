"""Who may do what with topics: identify a caller, then check topic permissions.

Permissions are per security definition (``pubsub.permissions``), plus an
``anonymous`` entry for callers sending no credentials.  A caller sending
credentials that fail is refused, never treated as anonymous; credentials that
only a definition without permissions here accepts are refused naming it (403),
so the fix is clear.  Credentials:
``Authorization: Basic``, an API key header, ``Authorization: Bearer <t>``
or, for browsers that cannot set headers on a WebSocket, ``?token=<t>``
(a bearer token, also accepted as the API key).
"""

from broker.errors import Forbidden, Unauthorized
from broker.pubsub.topics import PatternSet

__all__ = ["Access", "Grant", "ANONYMOUS"]

ANONYMOUS = "anonymous"


class Grant:
    """The topic patterns one identity may subscribe and publish to, and services it may invoke."""

    __slots__ = ("name", "subscribe", "publish", "invoke")

    def __init__(self, name, subscribe=(), publish=(), invoke=()):
        self.name = name
        self.subscribe = PatternSet(subscribe)
        self.publish = PatternSet(publish)
        self.invoke = PatternSet(invoke)

    def may_subscribe(self, pattern):
        """A pattern is allowed when one allowed pattern covers every topic it can match."""
        return any(covers(allowed, pattern) for allowed in self.subscribe.patterns)

    def may_publish(self, topic):
        return topic in self.publish

    def may_invoke(self, service):
        return service in self.invoke


def covers(allowed, pattern):
    """Whether every topic matching ``pattern`` also matches ``allowed``.

    Checked word by word: ``#`` in ``allowed`` takes the rest (or any run of
    words, tried every way); ``*`` takes one word or ``*``; a literal only itself.
    """
    return _covers(allowed.split("."), pattern.split("."))


def _covers(a, p):
    if not a:
        return not p
    head = a[0]
    if head == "#":
        return any(_covers(a[1:], p[i:]) for i in range(len(p) + 1))
    if not p:
        return False
    if p[0] == "#":
        return False  # "#" in the request can match more than one word: only "#" covers it
    if head == "*" or head == p[0]:
        return _covers(a[1:], p[1:])
    return False


class _Shim:
    """What a security definition's ``authenticate`` reads."""

    def __init__(self, headers, peer, cid):
        self.headers, self.peer, self.cid = headers, peer, cid


class Access:
    """Identifies callers and answers their :class:`Grant`.

    :param definitions: the node's ``{name: security definition}``, read when a caller
        comes (so a definition changed while the node runs is used at once): those
        with a grant are tried in order; the others explain a refusal of their callers.
    :param grants: ``{name: Grant}`` for definitions and ``anonymous``.
    """

    def __init__(self, definitions, grants):
        self._all = definitions
        self.grants = dict(grants)
        self.anonymous = self.grants.get(ANONYMOUS) or Grant(ANONYMOUS)
        self.counters = {"authenticated": 0, "anonymous": 0, "auth_failures": 0, "denied": 0}

    @property
    def definitions(self):
        """``{name: definition}`` of those with a grant."""
        return {n: self._all[n] for n in self.grants if n != ANONYMOUS and n in self._all}

    @property
    def ungranted(self):
        return {n: d for n, d in self._all.items() if n not in self.grants}

    def identify(self, headers, query=None, peer="", cid=None):
        """The caller's :class:`Grant`; raise Unauthorized for wrong credentials."""
        if "authorization" not in headers and not (query and "token" in query) \
                and not any(d.key_header in headers for d in self._all.values() if d.key_header):
            self.counters["anonymous"] += 1
            return self.anonymous
        headers = dict(headers)
        token = (query or {}).get("token")
        if token and "authorization" not in headers:
            headers["authorization"] = f"Bearer {token}"
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        offered = bool(auth) or any(
            d.key_header in headers for d in self.definitions.values())
        if not offered:
            self.counters["anonymous"] += 1
            return self.anonymous
        name = self._accepting(self.definitions, headers, bearer, peer, cid)
        if name is not None:
            self.counters["authenticated"] += 1
            return self.grants[name]
        name = self._accepting(self.ungranted, headers, bearer, peer, cid)
        if name is not None:
            self.counters["denied"] += 1
            raise Forbidden(f'security definition "{name}" has no pub/sub permissions '
                            f'(none under pubsub.permissions)')
        self.counters["auth_failures"] += 1
        raise Unauthorized()

    def _accepting(self, definitions, headers, bearer, peer, cid):
        """The name of the first of ``definitions`` accepting these credentials, or None."""
        for name, definition in definitions.items():
            seen = headers
            api_header = definition.key_header
            if api_header and bearer and api_header not in headers:
                seen = {**headers, api_header: bearer}
            if not self._offers(definition, seen):
                continue
            try:
                definition.authenticate(_Shim(seen, peer, cid))
            except Unauthorized:
                continue
            return name
        return None

    @staticmethod
    def _offers(definition, headers):
        """Only ask a definition that could accept these credentials (fewer false alarms)."""
        api_header = definition.key_header
        if api_header:
            return api_header in headers
        scheme = headers.get("authorization", "").partition(" ")[0].lower()
        if definition.type == "basic_auth":
            return scheme == "basic"
        return bool(scheme)

