"""The ``wsgi`` channel type: mount a WSGI app at a path prefix of the HTTP server.

::

    channels:
      - name: portal
        type: wsgi
        path: /portal                  # SCRIPT_NAME; the app sees the rest as PATH_INFO
        app: portal.wsgi:application   # or django_settings: portal.settings
        python_path: [../apps]         # added to sys.path
        security: admin                # REMOTE_USER = the authenticated caller
        threads: 10
        queue: 100
"""

import sys

from twisted.application.internet import TimerService

from broker.components import ComponentType, Needs
from broker.config.schema import (Duration, Field, Int, ListOf, Name, Path, Schema, Size, Str,
                                  config_error)
from broker.http.router import Route
from broker.wsgi.gateway import WSGIGateway
from broker.wsgi.loading import DjangoConflict, load_callable, load_django, note_django_app
from broker.wsgi.pool import WorkerPool

__all__ = ["CHANNEL", "WSGI_CHANNEL", "build_wsgi_channel"]

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _check(section):
    if (section.app is None) == (section.django_settings is None):
        raise ValueError("give exactly one of app (a dotted path) and django_settings")
    if section.path != "/" and section.path.endswith("/"):
        raise ValueError("path: no trailing slash (the mount answers /x and /x/...)")


WSGI_CHANNEL = Schema("wsgi channel", {
    "name": Field(Name(), required=True),
    "type": Field(Str(), required=True),
    "path": Field(Str(pattern=r"^/[^\s?#{}]*$"), required=True,
                  doc="the mount path (SCRIPT_NAME); it answers the path and everything below"),
    "app": Field(Str(min_length=1), default=None, doc="package.module:callable"),
    "django_settings": Field(Str(pattern=r"^[\w.]+$"), default=None,
                             doc="a Django settings module (one Django project per process)"),
    "python_path": Field(ListOf(Path()), default=[], doc="directories added to sys.path"),
    "security": Field(Str(), default=None, doc="a security definition; REMOTE_USER = its caller"),
    "request_filter": Field(Str(), default=None,
                            doc="package.module:callable(environ) -> None or (status, headers, body)"),
    "response_filter": Field(Str(), default=None,
                             doc="package.module:callable(environ, status, headers) -> (status, headers)"),
    "threads": Field(Int(min=1, max=256), default=10, doc="threads running the app"),
    "queue": Field(Int(min=0, max=100_000), default=100,
                   doc="requests waiting for a thread; over it: 503, counted"),
    "timeout": Field(Duration(), default=60.0, doc="for the app to start answering (504); 0: none"),
    "buffer_size": Field(Size(min=1), default="64KiB",
                         doc="answers up to this size are sent whole; larger ones are streamed"),
    "window": Field(Int(min=1, max=1024), default=8, doc="streamed parts in flight per request"),
}, validate=_check)


def build_wsgi_channel(section, ctx):
    """Load the app, start its thread pool with the node and answer a mount route."""
    for directory in section.python_path:
        if directory not in sys.path:
            sys.path.insert(0, directory)
    try:
        if section.django_settings is not None:
            key = "django_settings"
            app = load_django(section.django_settings, section.name)
        else:
            key = "app"
            app = load_callable(section.app)
            note_django_app(app, section.name)
        filters = {}
        for key in ("request_filter", "response_filter"):
            if section[key] is not None:
                filters[key] = load_callable(section[key], "filter")
    except DjangoConflict as error:
        raise config_error(section, key, str(error)) from None
    except ValueError as error:
        raise config_error(section, key, str(error)) from None
    pool = ctx.add_service(WorkerPool(ctx.reactor, section.threads, section.queue, section.name))
    gateway = WSGIGateway(section.name, section.path, app, pool, ctx.reactor,
                          security=ctx.security_of(section), timeout=section.timeout,
                          buffer_size=section.buffer_size, window=section.window, **filters)
    if section.timeout:
        sweeper = TimerService(gateway.sweep_interval, gateway.sweep)
        sweeper.clock = ctx.reactor
        ctx.add_service(sweeper)
    ctx.metrics(f"wsgi.{section.name}", gateway.metrics)
    return Route(section.name, section.path, _METHODS, gateway.handle, kind="builtin",
                 prefix=True)


#: ``channels:`` type ``wsgi``: a WSGI app mounted at a path.
CHANNEL = ComponentType(WSGI_CHANNEL, build_wsgi_channel, needs=[Needs.security()])
