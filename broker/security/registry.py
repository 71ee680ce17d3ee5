"""Security definition types: config ``type`` → schema and factory.

A new definition type is one class with its schema beside it and one line
in :data:`SECURITY_TYPES`.
"""

from broker.config.schema import Field, Schema, Str
from broker.security.auth import APIKey, BasicAuth

__all__ = ["SECURITY_TYPES", "build_security"]

_NAME = Field(Str(pattern=r"^[A-Za-z0-9][\w.\-]*$"), required=True)

SECURITY_TYPES = {
    "basic_auth": (
        Schema("basic_auth", {
            "name": _NAME, "type": Field(Str(), required=True),
            "username": Field(Str(min_length=1), required=True),
            "password": Field(Str(), default="", doc="empty: the definition accepts nobody"),
            "realm": Field(Str(), default="broker"),
        }),
        lambda c: BasicAuth(c.name, c.username, c.password, c.realm),
    ),
    "apikey": (
        Schema("apikey", {
            "name": _NAME, "type": Field(Str(), required=True),
            "header": Field(Str(pattern=r"^[A-Za-z0-9\-]+$"), default="X-API-Key"),
            "key": Field(Str(), default="", doc="empty: the definition accepts nobody"),
            "caller": Field(Str(), default=None),
        }),
        lambda c: APIKey(c.name, c.key, c.header, c.caller),
    ),
}


def build_security(section):
    """The definition object for one checked config section."""
    return SECURITY_TYPES[section.type][1](section)
