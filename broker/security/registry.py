"""Security definition types: config ``type`` → ``(schema, build)``.

A new definition type is one class with its schema beside it and one line
in :data:`DEFINITION_TYPES`; :mod:`broker.node.registry` makes each a
component type (security sits below the components, which run services,
which authenticate their callers).
"""

from broker.config.schema import Field, Name, Schema, Str
from broker.security.auth import APIKey, BasicAuth

__all__ = ["DEFINITION_TYPES"]

_NAME = Field(Name(), required=True)

DEFINITION_TYPES = {
    "basic_auth": (
        Schema("basic_auth", {
            "name": _NAME, "type": Field(Str(), required=True),
            "username": Field(Str(min_length=1), required=True),
            "password": Field(Str(), default="", doc="empty: the definition accepts nobody"),
            "realm": Field(Str(), default="broker"),
        }),
        lambda c, ctx: BasicAuth(c.name, c.username, c.password, c.realm),
    ),
    "apikey": (
        Schema("apikey", {
            "name": _NAME, "type": Field(Str(), required=True),
            "header": Field(Str(pattern=r"^[A-Za-z0-9\-]+$"), default="X-API-Key"),
            "key": Field(Str(), default="", doc="empty: the definition accepts nobody"),
            "caller": Field(Str(), default=None),
        }),
        lambda c, ctx: APIKey(c.name, c.key, c.header, c.caller),
    ),
}
