"""The ``http`` channel type: its config schema and how it becomes a route."""

from broker.components import ComponentType, Needs
from broker.config.schema import Choice, Field, ListOf, Name, Schema, Str
from broker.http.router import Route
from broker.security.registry import GUARD_FIELDS, guard_of
from broker.services.context import ChannelInfo
from broker.simpleio import FORMATS

__all__ = ["CHANNEL", "HTTP_CHANNEL", "build_http_channel"]

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _check(section):
    if "HEAD" in section.methods:
        raise ValueError("methods: HEAD is answered wherever GET is; list GET")


HTTP_CHANNEL = Schema("http channel", {
    "name": Field(Name(), required=True),
    "type": Field(Str(), required=True),
    "path": Field(Str(pattern=r"^/[^\s?#]*$"), required=True,
                  doc="URL path; {name} segments become input"),
    "service": Field(Str(min_length=1), required=True),
    "methods": Field(ListOf(Choice(*_METHODS), min_items=1), default=["POST"]),
    "data_format": Field(Choice(*sorted(FORMATS)), default="json"),
    "security": Field(Str(), default=None, doc="a security definition's name; none = open"),
    **GUARD_FIELDS,
}, validate=_check)


def build_http_channel(section, ctx):
    """A :class:`Route` for one checked ``http`` channel section."""
    entry = ctx.store.get(section.service)
    security = guard_of(ctx.security_of(section), section, ctx, f"channel {section.name}")
    channel = ChannelInfo(section.name, "http", section.data_format, security)
    return Route(section.name, section.path, section.methods, section.service, channel=channel,
                 cid_header=getattr(entry.cls, "cid_header", None))


#: ``channels:`` type ``http``: a route answered by a service.
CHANNEL = ComponentType(HTTP_CHANNEL, build_http_channel, needs=[Needs.security(), Needs.feature("auth")])
