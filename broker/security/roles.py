"""Roles (RBAC): which services a caller may invoke and which topics it may publish or subscribe to.

A caller's identity is a :class:`Principal`, a ``str`` (its name, as services always saw it)
that also carries its roles: those of its security definition (``roles:``) or those a token
names.  A :class:`Policy` holds the configured roles; each role lists patterns per action,
``!`` in front denies.  For one name the longest matching pattern over all the caller's roles
wins (the most literal characters; a deny wins a tie); nothing matching is a deny: once roles are configured, what is not
listed is refused.  Refusals are a plain 403; the reason goes to the log only.
"""

import re

from twisted.logger import Logger

from broker.errors import Forbidden

__all__ = ["ACTIONS", "Policy", "Principal", "Role"]

log = Logger()

ACTIONS = ("invoke", "publish", "subscribe")


class Principal(str):
    """Who a caller is (``str``: its name) and its ``roles`` (a frozenset)."""

    __slots__ = ("roles",)

    def __new__(cls, name, roles=()):
        principal = super().__new__(cls, name)
        principal.roles = frozenset(roles)
        return principal

    def __reduce__(self):
        return Principal, (str(self), tuple(self.roles))


def _compile(pattern):
    """A regex for a service pattern (``demo.*``: ``*`` any run of characters) or a topic
    pattern (``news.*`` one word, ``news.#`` any words)."""
    parts = []
    for word in pattern.split("."):
        if word == "#":
            parts.append(None)
        else:
            parts.append("[^.]*".join(re.escape(piece) for piece in word.split("*"))
                         if word != "*" else "[^.]*")
    text = ""
    for i, part in enumerate(parts):
        if part is None:
            text += (r"(?:\.[^.]*)*" if i else r"(?:[^.]*(?:\.[^.]*)*)?")
            continue
        text += (r"\." if i else "") + part
    if parts and parts[0] is None and len(parts) > 1:
        text = text.replace(r"(?:[^.]*(?:\.[^.]*)*)?\.", r"(?:[^.]*\.)*", 1)
    return re.compile(text + r"\Z")


class Role:
    """One role: ``{action: [(pattern, allowed, regex)]}``."""

    def __init__(self, name, invoke=(), publish=(), subscribe=()):
        self.name = name
        self.rules = {}
        for action, patterns in (("invoke", invoke), ("publish", publish),
                                 ("subscribe", subscribe)):
            rules = []
            for pattern in patterns:
                allowed = not pattern.startswith("!")
                bare = pattern if allowed else pattern[1:]
                rules.append((bare, allowed, _compile(bare)))
            self.rules[action] = rules


class Policy:
    """The configured roles; :meth:`check` allows or raises a 403.

    :param roles: :class:`Role` objects.
    :param cache_size: decisions remembered per (roles, action, name), bounded.
    """

    def __init__(self, roles, cache_size=10000):
        self.roles = {role.name: role for role in roles}
        self._decisions = {}
        self._cache_size = cache_size
        self.counters = {"allowed": 0, "denied": 0}

    def decide(self, roles, action, name):
        """``(allowed, reason)`` for a caller with ``roles`` doing ``action`` on ``name``."""
        key = (roles, action, name)
        found = self._decisions.get(key)
        if found is None:
            found = self._decide(roles, action, name)
            if len(self._decisions) >= self._cache_size:
                self._decisions.pop(next(iter(self._decisions)))
            self._decisions[key] = found
        return found

    def _decide(self, roles, action, name):
        best = None  # (length, allowed, role, pattern)
        for role_name in sorted(roles):
            role = self.roles.get(role_name)
            if role is None:
                continue
            for pattern, allowed, regex in role.rules[action]:
                if regex.match(name):
                    # longest = most literal characters (a wildcard is less specific)
                    literal = len(pattern) - pattern.count("*") - pattern.count("#")
                    candidate = ((literal, len(pattern)), not allowed, role_name, pattern)
                    if best is None or candidate[:2] > best[:2]:
                        best = candidate
        if best is None:
            return False, f"no role of {sorted(roles) or 'none'} lists {action} {name}"
        length, denied, role_name, pattern = best
        if denied:
            return False, f'role {role_name} denies {action} {name} ("!{pattern}")'
        return True, None

    def check(self, caller, action, name, cid=None):
        """Allow ``caller`` (a :class:`Principal`, else no roles) to do ``action`` on ``name``,
        or raise :class:`~broker.errors.Forbidden` (the reason goes to the log only)."""
        roles = getattr(caller, "roles", frozenset())
        allowed, reason = self.decide(roles, action, name)
        if allowed:
            self.counters["allowed"] += 1
            return
        self.counters["denied"] += 1
        log.info("denied {caller}: {reason} (cid {cid})", caller=str(caller), reason=reason, cid=cid)
        raise Forbidden()

    def allows(self, caller, action, name):
        """Whether ``caller`` may; no log line, no count (for filtering)."""
        return self.decide(getattr(caller, "roles", frozenset()), action, name)[0]
