"""The broker's configuration file: its schema.

Each component type keeps its own schema beside its code and is looked up
by ``type`` through :mod:`broker.node.registry`; what one section names in
another is checked when the node is assembled (:mod:`broker.node.assembly`).
"""

import os
from collections.abc import Mapping

from broker.config.loader import load_yaml
from broker.config.schema import (Bool, Choice, Duration, Endpoint, Field, Int, ListOf, MapOf, Name, Path,
                                  Schema, Size, Str, Tagged, config_error)
from broker.jsonfast import DEFAULT_MAX_DEPTH, MAX_DEPTH_LIMIT
from broker.node.registry import (CHANNEL_TYPES, CONNECTION_TYPES, FEATURES, OUTGOING_TYPES,
                                  SECURITY_TYPES)

__all__ = ["load_config", "root_schema"]

DEFAULT_LISTEN = "tcp:17010:interface=127.0.0.1"

HTTP = Schema("http", {
    "listen": Field(Endpoint(), default=DEFAULT_LISTEN),
    "access_log": Field(Bool(), default=False),
    "docs": Field(Bool(), default=True, doc="serve /openapi.json and /docs"),
    "server_header": Field(Str(), default="broker"),
    "security_headers": Field(Bool(), default=True,
                              doc="X-Content-Type-Options, X-Frame-Options and Referrer-Policy "
                                  "on every answer"),
    "client_ca": Field(Str(min_length=1), default=None,
                       doc="PEM CA file: an ssl: listener asks clients for a certificate it "
                           "signed (tls_client definitions name callers by it)"),
    "client_certificate": Field(Choice("optional", "required"), default="optional",
                                doc="with client_ca: whether a client without one is refused"),
    "hsts": Field(Duration(max=2 * 365 * 86400), default=0.0,
                  doc="Strict-Transport-Security max-age on an ssl: listener; 0: none"),
})

SERVICES = Schema("services", {
    "paths": Field(ListOf(Path()), default=[]),
    "timeouts": Field(MapOf(Duration(min=0.001, max=86400)), default={},
                      doc="service name → how long its handle() may wait (over its class's "
                          "timeout and limits.service_timeout)"),
    "pickup": Field(Path(), default=None,
                    doc="hot deploy: every *.py dropped here is deployed within a second or two, "
                        "deleted ones undeployed (--pickup DIR overrides it)"),
    "pickup_interval": Field(Duration(min=0.05, max=60), default=1.0,
                             doc="how often the pickup directory is scanned where inotify is not "
                                 "available"),
    "max_module_size": Field(Size(min=1), default="1MiB",
                             doc="the largest module POST /broker/admin/deploy accepts"),
})

SIMPLEIO = Schema("simpleio", {
    "undeclared_input": Field(Choice("reject", "drop"), default="reject"),
})

LIMITS = Schema("limits", {
    "max_body_size": Field(Size(), default="1MiB"),
    "max_response_size": Field(Size(min=1), default="10MiB",
                               doc="the largest answer a service may give; over it is a 500"),
    "max_json_depth": Field(Int(min=1, max=MAX_DEPTH_LIMIT), default=DEFAULT_MAX_DEPTH,
                            doc="how deep objects and arrays may nest in a client's JSON"),
    "max_header_count": Field(Int(min=1, max=10_000), default=100),
    "max_header_size": Field(Size(), default="16KiB"),
    "header_timeout": Field(Duration(), default=10.0),
    "body_timeout": Field(Duration(), default=30.0),
    "idle_timeout": Field(Duration(), default=60.0),
    "write_timeout": Field(Duration(min=0.1), default=60.0,
                           doc="a client must take what we wrote (answers, WebSocket frames) "
                               "within it, or its connection is aborted"),
    "max_pipelined": Field(Int(min=1, max=1024), default=16),
    "max_connections": Field(Int(min=1), default=1024),
    "service_timeout": Field(Duration(), default=30.0),
    "max_invoke_depth": Field(Int(min=1, max=256), default=16),
    "threads": Field(Int(min=1, max=512), default=10),
    "thread_queue": Field(Int(min=1), default=1000),
    "thread_stop_timeout": Field(Duration(), default=10.0),
    "shutdown_timeout": Field(Duration(min=0.1, max=3600), default=30.0,
                              doc="on SIGTERM (or a worker's rolling restart), in-flight requests, "
                                  "services and AMQP deliveries get this long to finish"),
})

ADMIN = Schema("admin", {
    "security": Field(Name(), doc="the security definition guarding /broker/admin/ (the admin API "
                                  "and dashboard); without one they answer 403"),
    "dashboard_interval": Field(Duration(min=0.1, max=60), default="1s",
                                doc="how often the dashboard gets a new snapshot"),
})


def worker_count(value):
    """A number of worker processes from 1 to 256, or ``auto`` (one per CPU); ValueError else."""
    if value == "auto":
        return os.cpu_count() or 1
    count = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str) and value.isdigit():
        count = int(value)
    if count is None or not 1 <= count <= 256:
        raise ValueError(f"expected a number from 1 to 256 or auto, got {value!r}")
    return count


class Workers(Int):
    """How many worker processes (:func:`worker_count`)."""

    def _check(self, value, where):
        try:
            return worker_count(value)
        except ValueError as error:
            raise where.error(str(error)) from None


class _Schemas(Mapping):
    """A live view of a type registry's schemas, so types added later are known."""

    def __init__(self, registry):
        self._registry = registry

    def __getitem__(self, key):
        return self._registry[key].schema

    def __iter__(self):
        return iter(self._registry)

    def __len__(self):
        return len(self._registry)


_CORE = {
    "name": Field(Name(), default="broker"),
    "http": Field(HTTP, default={}),
    "services": Field(SERVICES, default={}),
    "simpleio": Field(SIMPLEIO, default={}),
    "limits": Field(LIMITS, default={}),
    "admin": Field(ADMIN, default={}),
    "workers": Field(Workers(), default=None,
                     doc="worker processes sharing the HTTP port: a number, or auto (one per "
                         "CPU); none: one process"),
    "security": Field(ListOf(Tagged("type", _Schemas(SECURITY_TYPES))), default=[]),
    "connections": Field(ListOf(Tagged("type", _Schemas(CONNECTION_TYPES))), default=[]),
    "outgoing": Field(ListOf(Tagged("type", _Schemas(OUTGOING_TYPES))), default=[]),
    "channels": Field(ListOf(Tagged("type", _Schemas(CHANNEL_TYPES))), default=[]),
}


def root_schema():
    """The whole file's schema: the core sections plus each feature's (:data:`FEATURES`)."""
    fields = dict(_CORE)
    for key, ctype in FEATURES.items():
        if ctype.schema is not None:
            fields[key] = Field(ctype.schema, default={})
    return Schema("config", fields)


def load_config(path):
    """Load, substitute and check ``path``; :class:`ConfigError` names file, line and key."""
    config = root_schema().check(load_yaml(path))
    for key in ("security", "connections", "outgoing", "channels"):
        _check_unique(config[key], key)
    return config


def _check_unique(items, key):
    seen = set()
    for item in items:
        if item.name in seen:
            raise config_error(item, "name", f'"{item.name}" is used twice in {key}')
        seen.add(item.name)
