"""Security definition types: config ``type`` → ``(schema, build)``.

A new definition type is one class with its schema beside it and one line
in :data:`DEFINITION_TYPES`; :mod:`broker.node.registry` makes each a
component type (security sits below the components, which run services,
which authenticate their callers).

Every definition may name ``roles`` (RBAC, :mod:`broker.security.roles`), an
``allow_from`` address list and ``rate_limit``s (:mod:`broker.security.guard`);
the node's ``auth:`` feature lends what they share (the buckets, the trusted
proxies, the node's token verifier).
"""

from broker.config.schema import (Choice, Duration, Field, Int, ListOf, MapOf, Name, Schema, Str,
                                  config_error)
from broker.security.auth import APIKey, BasicAuth
from broker.security.bearer import JWTDefinition
from broker.security.certs import ClientCertificate
from broker.security.guard import guard
from broker.security.ratelimit import Limit
from broker.security.roles import Principal
from broker.security.tokens import TokenVerifier

__all__ = ["DEFINITION_TYPES", "GUARD_FIELDS", "MESSAGE_GUARD_FIELDS", "RATE_LIMIT",
           "channel_security", "guard_of", "limits_of"]

_NAME = Field(Name(), required=True)


def _check_limit(section):
    if section.burst is not None and section.burst < 1:
        raise ValueError("burst: at least 1")


RATE_LIMIT = Schema("rate limit", {
    "rate": Field(Int(min=1), required=True, doc="requests per `per`"),
    "per": Field(Duration(min=0.001), default=1.0),
    "burst": Field(Int(min=1), default=None, doc="requests at once (default: rate)"),
    "by": Field(Choice("address", "caller", "channel"), default="address",
                doc="one bucket per client address, per caller, or one for all"),
}, validate=_check_limit)

#: The fields every definition and every channel that takes callers may have.
GUARD_FIELDS = {
    "allow_from": Field(ListOf(Str(min_length=1)), default=[],
                        doc="client addresses (CIDR, IPv4/IPv6; ! denies) allowed; first match "
                            "wins, none matching is a 403; empty: any"),
    "rate_limit": Field(ListOf(RATE_LIMIT), default=[]),
}

#: What a message channel (AMQP, ZeroMQ) may have: a definition its messages' credentials must
#: pass (an ``authorization`` header, a credentials frame) and rate limits.
MESSAGE_GUARD_FIELDS = {
    "security": Field(Str(), default=None, doc="a security definition each message's "
                                               "credentials must pass; none = open"),
    "rate_limit": GUARD_FIELDS["rate_limit"],
}

_ROLES = {"roles": Field(ListOf(Name()), default=[], doc="the RBAC roles of its callers")}


def limits_of(section, where):
    return [Limit(item.rate, item.per, item.burst, item.by, where) for item in section.rate_limit]


def guard_of(definition, section, ctx, where):
    """``definition`` behind ``section``'s ``allow_from`` and ``rate_limit`` (if any)."""
    if not section.get("allow_from") and not section.rate_limit:
        return definition
    auth = ctx.feature("auth")
    try:
        guarded = guard(definition, where, allow_from=section.get("allow_from") or (),
                        limits=limits_of(section, where),
                        buckets=getattr(auth, "buckets", None),
                        trusted_proxies=getattr(auth, "trusted_proxies", ()))
    except ValueError as exc:
        key, _, problem = str(exc).partition(": ")
        raise config_error(section, key, problem) from None
    ctx.metrics("guard." + where.replace(" ", "."), guarded.metrics)  # guard.channel.<name>
    return guarded


def channel_security(section, ctx):
    """The security a channel's section asks for: its definition behind its guard, or None."""
    return guard_of(ctx.security_of(section), section, ctx, f"channel {section.name}")


def _guarded(build):
    def build_guarded(section, ctx):
        return guard_of(build(section, ctx), section, ctx, f"definition {section.name}")
    return build_guarded


def _caller(name, section):
    return Principal(name, section.roles) if section.roles else name


def _build_basic(c, ctx):
    definition = BasicAuth(c.name, c.username, c.password, c.realm)
    definition.username = definition.caller = _caller(c.username, c)
    return definition


def _build_apikey(c, ctx):
    definition = APIKey(c.name, c.key, c.header, c.caller)
    definition.caller = _caller(definition.caller, c)
    return definition


def _check_jwt(section):
    keys = bool(section.secret) or bool(section.public_key)
    if keys and not section.algorithms:
        raise ValueError("algorithms: name the algorithms allowed with this key")


def _build_jwt(c, ctx):
    if c.secret or c.public_key:
        try:
            verifier = TokenVerifier(c.algorithms, secret=c.secret or None,
                                     public_key=c.public_key or None, issuer=c.issuer,
                                     audience=c.audience, leeway=c.leeway, clock=ctx.reactor,
                                     revocations=getattr(ctx.feature("auth"), "revocations", None),
                                     cache_size=c.cache_size)
        except ValueError as exc:
            key, _, problem = str(exc).partition(": ")
            raise config_error(c, key, problem) from None
    else:
        auth = ctx.feature("auth")
        verifier = getattr(auth, "verifier", None)
        if verifier is None:
            raise config_error(c, "secret", "no key of its own and auth.tokens is not configured "
                                            "(give secret or public_key, or configure auth.tokens)")
    return JWTDefinition(c.name, verifier, roles=c.roles)


DEFINITION_TYPES = {
    "basic_auth": (
        Schema("basic_auth", {
            "name": _NAME, "type": Field(Str(), required=True),
            "username": Field(Str(min_length=1), required=True),
            "password": Field(Str(), default="", doc="empty: the definition accepts nobody"),
            "realm": Field(Str(), default="broker"),
            **_ROLES, **GUARD_FIELDS,
        }),
        _guarded(_build_basic),
    ),
    "apikey": (
        Schema("apikey", {
            "name": _NAME, "type": Field(Str(), required=True),
            "header": Field(Str(pattern=r"^[A-Za-z0-9\-]+$"), default="X-API-Key"),
            "key": Field(Str(), default="", doc="empty: the definition accepts nobody"),
            "caller": Field(Str(), default=None),
            **_ROLES, **GUARD_FIELDS,
        }),
        _guarded(_build_apikey),
    ),
    "jwt": (
        Schema("jwt", {
            "name": _NAME, "type": Field(Str(), required=True),
            "algorithms": Field(ListOf(Str(min_length=1)), default=[],
                                doc="the allow-list (with secret or public_key); none: the "
                                    "node's auth.tokens"),
            "secret": Field(Str(), default="", doc="HMAC secret (HS*) of tokens issued elsewhere"),
            "public_key": Field(Str(), default="", doc="PEM public key (RS*/PS*/ES*/EdDSA)"),
            "issuer": Field(Str(), default=None),
            "audience": Field(Str(), default=None),
            "leeway": Field(Duration(max=600), default=30.0, doc="clock skew allowed"),
            "cache_size": Field(Int(min=0, max=1_000_000), default=10000,
                                doc="verified tokens remembered"),
            **_ROLES, **GUARD_FIELDS,
        }, validate=_check_jwt),
        _guarded(_build_jwt),
    ),
    "tls_client": (
        Schema("tls_client", {
            "name": _NAME, "type": Field(Str(), required=True),
            "subjects": Field(MapOf(Str(min_length=1)), default={},
                              doc="{certificate common name: caller}; empty: any certificate "
                                  "http.client_ca signed, the caller being its common name"),
            **_ROLES, **GUARD_FIELDS,
        }),
        _guarded(lambda c, ctx: ClientCertificate(c.name, c.subjects, c.roles)),
    ),
}
