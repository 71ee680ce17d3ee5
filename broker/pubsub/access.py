"""Who may do what with topics: identify a caller, then check topic permissions.

Permissions are per security definition (``pubsub.permissions``), plus an
``anonymous`` entry for callers sending no credentials.  A caller sending
credentials that fail is refused, never treated as anonymous; credentials that
only a definition without permissions here accepts are refused naming it (403),
so the fix is clear.  Credentials:
``Authorization: Basic``, an API key header, ``Authorization: Bearer <t>``
or, for browsers that cannot set headers on a WebSocket, ``?token=<t>``
(a bearer token, also accepted as the API key); checked by
:func:`broker.security.credentials.authenticate`.
"""

from broker.errors import Forbidden, Unauthorized
from broker.pubsub.topics import PatternSet
from broker.security.credentials import Credentials, authenticate

__all__ = ["Access", "Grant", "RoleGrant", "ANONYMOUS"]

ANONYMOUS = "anonymous"
_NO_PERMISSIONS = ('security definition "{name}" has no pub/sub permissions '
                   '(none under pubsub.permissions)')


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


class RoleGrant:
    """A definition's :class:`Grant` narrowed by the caller's roles (RBAC, once roles are
    configured): both must allow; a refusal by the roles is logged with its reason."""

    __slots__ = ("grant", "name", "caller", "policy")

    def __init__(self, grant, caller, policy):
        self.grant, self.name, self.caller, self.policy = grant, grant.name, caller, policy

    def _roles_allow(self, action, name):
        try:
            self.policy.check(self.caller, action, name)
        except Forbidden:
            return False
        return True

    def may_subscribe(self, pattern):
        return self.grant.may_subscribe(pattern) and self._roles_allow("subscribe", pattern)

    def may_publish(self, topic):
        return self.grant.may_publish(topic) and self._roles_allow("publish", topic)

    def may_invoke(self, service):
        return self.grant.may_invoke(service) and self._roles_allow("invoke", service)


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


class Access:
    """Identifies callers and answers their :class:`Grant`.

    :param definitions: the node's live ``{name: security definition}``, read when a caller
        comes (so a definition changed while the node runs is used at once): those with a
        grant may pass; the others explain a refusal of their callers.
    :param grants: ``{name: Grant}`` for definitions and ``anonymous``.
    """

    def __init__(self, definitions, grants, resources=None):
        self._all = definitions
        self._resources = resources  # its ``rbac`` (lent by ``auth:``), read when a caller comes
        self.grants = dict(grants)
        self.anonymous = self.grants.get(ANONYMOUS) or Grant(ANONYMOUS)
        self._granted = frozenset(self.grants) - {ANONYMOUS}
        self.counters = {"authenticated": 0, "anonymous": 0, "auth_failures": 0, "denied": 0}

    @property
    def definitions(self):
        """``{name: definition}`` of the definitions with a grant, as they are now."""
        return {name: d for name, d in self._all.items() if name in self._granted}

    def identify(self, headers, query=None, peer="", cid=None):
        """The caller's :class:`Grant`; raise Unauthorized for wrong credentials, Forbidden
        for those of a definition without permissions here."""
        return self.caller(headers, query, peer, cid)[0]

    def caller(self, headers, query=None, peer="", cid=None):
        """``(grant, caller)``: :meth:`identify`'s grant, and who the caller is as services
        see it (the definition's ``caller``, as on every channel; None when anonymous)."""
        credentials = Credentials(headers, (query or {}).get("token"), peer, cid)
        try:
            definition = authenticate(self._all, credentials, admitted=self._granted,
                                      anonymous=True, refusal=_NO_PERMISSIONS)
        except Forbidden:
            self.counters["denied"] += 1
            raise
        except Unauthorized:
            self.counters["auth_failures"] += 1
            raise
        if definition is None:
            self.counters["anonymous"] += 1
            return self.anonymous, None
        self.counters["authenticated"] += 1
        caller = definition.caller
        policy = getattr(self._resources, "rbac", None)
        if policy is not None:
            return RoleGrant(self.grants[definition.name], caller, policy), caller
        return self.grants[definition.name], caller
