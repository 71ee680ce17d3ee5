"""The ``auth:`` section: tokens, roles, trusted proxies, shared rate limits.

::

    auth:
      trusted_proxies: [10.0.0.0/8]      # X-Forwarded-For is believed only from these
      tokens:                            # POST /broker/auth/token, /refresh, /revoke
        algorithm: HS256                 # or RS256, ES256, EdDSA... (private_key then)
        secret: ${file:/run/secrets/jwt}
        issuer: broker
        audience: my-system
        ttl: 15m
        refresh_ttl: 8h
        login: []                        # definitions that may log in (empty: all but jwt)
      revocation: {redis: redis://127.0.0.1:6379}   # else kept in memory
      rate_limits: {redis: redis://127.0.0.1:6379}  # else local buckets only
      roles:
        - {name: reader, invoke: ["demo.#", "!demo.admin.#"], subscribe: ["news.#"]}

One :class:`Auth` per node, built before the definitions that use it.
"""

from cryptography.hazmat.primitives import serialization

from broker.auth.backoff import LoginBackoff
from broker.components import CONNECTION, ComponentType, Needs
from broker.config.schema import (Choice, Duration, Field, Int, ListOf, Name, Schema, Str,
                                  config_error)
from broker.security.addresses import parse_networks
from broker.security.ratelimit import Buckets
from broker.security.roles import Policy, Role
from broker.security.tokens import (ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS, MemoryRevocations,
                                    TokenIssuer, TokenVerifier)

__all__ = ["AUTH_SECTION", "Auth", "FEATURE", "build_auth"]


def _check_tokens(section):
    if section.algorithm in HMAC_ALGORITHMS:
        if not section.secret:
            raise ValueError("secret: HMAC tokens need a secret (${file:PATH} or ${ENV})")
        if section.private_key:
            raise ValueError("private_key: not used with HMAC algorithms")
    elif not section.private_key:
        raise ValueError(f"private_key: {section.algorithm} tokens need a private key (PEM)")


TOKENS = Schema("auth.tokens", {
    "algorithm": Field(Choice(*sorted(HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS)), default="HS256"),
    "secret": Field(Str(), default="", doc="HMAC secret, 32 bytes or more"),
    "private_key": Field(Str(), default="", doc="PEM private key (RS*, PS*, ES*, EdDSA)"),
    "issuer": Field(Str(min_length=1), default="broker"),
    "audience": Field(Str(), default=None),
    "ttl": Field(Duration(min=1, max=86400), default=900.0),
    "refresh_ttl": Field(Duration(max=30 * 86400), default=0.0, doc="0: no refresh tokens"),
    "leeway": Field(Duration(max=600), default=30.0, doc="clock skew allowed"),
    "cache_size": Field(Int(min=0, max=1_000_000), default=10000, doc="verified tokens remembered"),
    "login": Field(ListOf(Name()), default=[],
                   doc="definitions whose callers may get a token; empty: all but jwt ones"),
    "login_failures": Field(Int(min=1, max=1000), default=5,
                            doc="failed logins from one address before it must wait"),
    "login_backoff": Field(Duration(min=0.001), default=1.0, doc="the first wait, then doubled"),
    "login_backoff_max": Field(Duration(min=0.001), default=300.0),
}, validate=_check_tokens)


def _shared(name):
    return Schema(name, {
        "redis": Field(Str(), default=None, doc="a redis connection's name or a redis:// URL; "
                                                "none: this node only"),
        "prefix": Field(Str(), default="broker:"),
        "max_entries": Field(Int(min=1), default=100000, doc="kept in memory, bounded"),
        "sync_interval": Field(Duration(min=0.01, max=60), default=0.5,
                               doc="how often this node and Redis exchange what they know"),
    })


ROLE = Schema("role", {
    "name": Field(Name(), required=True),
    "invoke": Field(ListOf(Str(min_length=1)), default=[], doc="service patterns; ! denies"),
    "publish": Field(ListOf(Str(min_length=1)), default=[], doc="topic patterns; ! denies"),
    "subscribe": Field(ListOf(Str(min_length=1)), default=[], doc="topic patterns; ! denies"),
})


def _check(section):
    try:
        parse_networks(section.trusted_proxies, "trusted_proxies")
    except ValueError as exc:
        raise config_error(section, "trusted_proxies", str(exc).partition(": ")[2]) from None
    seen = set()
    for role in section.roles:
        if role.name in seen:
            raise config_error(role, "name", f'role "{role.name}" is defined twice')
        seen.add(role.name)


AUTH_SECTION = Schema("auth", {
    "trusted_proxies": Field(ListOf(Str(min_length=1)), default=[]),
    "tokens": Field(TOKENS, default=None),
    "revocation": Field(_shared("auth.revocation"), default={}),
    "rate_limits": Field(_shared("auth.rate_limits"), default={}),
    "roles": Field(ListOf(ROLE), default=[], doc="RBAC; once any is configured, callers of "
                                                 "secured channels may only what their roles list"),
}, validate=_check)


class Auth:
    """What the node's definitions and channels share (one per node).

    :ivar issuer: the :class:`~broker.security.tokens.TokenIssuer`, or None.
    :ivar verifier: the node's :class:`~broker.security.tokens.TokenVerifier`, or None.
    :ivar revocations: the revocation store.
    :ivar buckets: the rate-limit buckets.
    :ivar trusted_proxies: networks whose ``X-Forwarded-For`` is believed.
    :ivar policy: the RBAC :class:`~broker.security.roles.Policy`, or None (no roles).
    :ivar backoff: failed-login backoff per address.
    """

    def __init__(self, issuer, verifier, revocations, buckets, trusted_proxies, policy, backoff,
                 login):
        self.issuer, self.verifier, self.revocations = issuer, verifier, revocations
        self.buckets, self.trusted_proxies, self.policy = buckets, trusted_proxies, policy
        self.backoff, self.login = backoff, login

    def metrics(self):
        report = {f"buckets_{k}": v for k, v in self.buckets.metrics().items()}
        if self.verifier is not None:
            report.update({f"tokens_{k}": v for k, v in self.verifier.counters.items()})
        if self.issuer is not None:
            report.update({f"tokens_{k}": v for k, v in self.issuer.counters.items()})
        if self.policy is not None:
            report.update({f"rbac_{k}": v for k, v in self.policy.counters.items()})
        report.update({f"login_{k}": v for k, v in self.backoff.counters.items()})
        return report


def _public_pem(private_pem):
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _stores(section, ctx):
    clock = ctx.reactor
    revocation, limits = section.revocation, section.rate_limits
    if revocation.redis:
        from broker.redis.revocations import RedisRevocations
        revocations = ctx.add_service(RedisRevocations(
            ctx.connection(revocation, "redis", "redis"), clock, prefix=revocation.prefix,
            max_entries=revocation.max_entries, interval=revocation.sync_interval))
    elif ctx.worker is not None:  # every worker learns each revocation at once
        revocations = ctx.worker.revocations(revocation.max_entries)
    else:
        revocations = MemoryRevocations(clock, revocation.max_entries)
    if limits.redis:
        from broker.redis.ratelimit import SharedBuckets
        buckets = ctx.add_service(SharedBuckets(
            ctx.connection(limits, "redis", "redis"), clock, prefix=limits.prefix,
            max_keys=limits.max_entries, interval=limits.sync_interval))
    else:
        buckets = Buckets(clock, limits.max_entries)
    return revocations, buckets


def build_auth(section, ctx):
    """The node's :class:`Auth`; the token endpoints when ``auth.tokens`` is set."""
    from broker.auth.endpoints import token_routes

    clock = ctx.reactor
    revocations, buckets = _stores(section, ctx)
    trusted = [network for network, _ in parse_networks(section.trusted_proxies)]
    issuer = verifier = None
    tokens = section.tokens
    if tokens is not None:
        try:
            issuer = TokenIssuer(tokens.algorithm, secret=tokens.secret or None,
                                 private_key=tokens.private_key or None, issuer=tokens.issuer,
                                 audience=tokens.audience, ttl=tokens.ttl,
                                 refresh_ttl=tokens.refresh_ttl, clock=clock)
            hmac = tokens.algorithm in HMAC_ALGORITHMS
            verifier = TokenVerifier(
                [tokens.algorithm], secret=tokens.secret if hmac else None,
                public_key=None if hmac else _public_pem(tokens.private_key),
                issuer=tokens.issuer, audience=tokens.audience, leeway=tokens.leeway, clock=clock,
                revocations=revocations, cache_size=tokens.cache_size)
        except ValueError as exc:
            key, _, problem = str(exc).partition(": ")
            raise config_error(tokens, key if key in TOKENS.fields else "secret",
                               problem or str(exc)) from None
    policy = Policy([Role(r.name, r.invoke, r.publish, r.subscribe) for r in section.roles]) \
        if section.roles else None
    backoff = LoginBackoff(clock, tokens.login_failures, tokens.login_backoff,
                           tokens.login_backoff_max) if tokens is not None else LoginBackoff(clock)
    auth = Auth(issuer, verifier, revocations, buckets, trusted, policy, backoff,
                tuple(tokens.login) if tokens is not None else ())
    if issuer is not None:
        for route in token_routes(auth, ctx.definitions):
            ctx.add_route(route)
    ctx.lend("rbac", policy)
    ctx.metrics("auth", auth.metrics)
    return auth


class _SharedStores(Needs):
    """The Redis connections ``revocation.redis`` and ``rate_limits.redis`` name."""

    def of(self, section):
        return [((CONNECTION, sub.redis), sub) for sub in (section.revocation, section.rate_limits)
                if sub.redis]


#: The ``auth:`` section (always built: a node without one has local buckets, no tokens).
FEATURE = ComponentType(AUTH_SECTION, build_auth,
                        needs=[_SharedStores(CONNECTION, "redis", type="redis")])
