"""Public helpers for people who write services: run one with fakes, no sockets.

::

    from broker.testing import call_service

    def test_echo():
        response = call_service_sync(Echo, {"text": "hi", "repeat": 2})
        assert response.payload == {"text": "hihi"}

``call_service`` runs the real pipeline (SimpleIO input validation, the
service, output filtering) with a fake clock, a synchronous thread runner
and stand-ins for the services it invokes.
"""

from twisted.internet import defer, task

from broker.services.base import Service
from broker.services.context import ChannelInfo, Request
from broker.services.invoker import Invoker
from broker.services.store import ServiceStore

__all__ = ["SyncThreads", "call_service", "call_service_sync"]


class SyncThreads:
    """Runs 'blocking' work at once, in the calling thread (for unit tests)."""

    def __init__(self):
        self.calls = []

    def run(self, fn, *args, **kwargs):
        self.calls.append(fn)
        return defer.maybeDeferred(fn, *args, **kwargs)


def _stub(name, answer):
    """A service named ``name`` answering ``answer(data)`` or ``answer`` itself."""

    class Stub(Service):
        def handle(self):
            result = answer(self.request.input) if callable(answer) else answer
            if isinstance(result, defer.Deferred):
                return result.addCallback(self._set)
            self._set(result)

        def _set(self, result):
            self.response.payload = result

    Stub.name = name
    return Stub


def call_service(service_cls, data=None, *, services=None, headers=None, params=None,
                 undeclared_input="reject", clock=None, threads=None, cid="test-cid",
                 resources=None):
    """Invoke ``service_cls`` as a channel would, with fakes around it.

    :param data: the input payload (a dict for SimpleIO services).
    :param services: ``{name: answer}`` for services this one invokes; an
        answer is a value or a callable taking the input.
    :param resources: a :class:`~broker.runtime.Resources` holding fake
        outgoing connections, caches and publisher (``self.out``, ``self.cache``...).
    :return: a Deferred firing with the :class:`~broker.services.context.Response`.
    """
    store = ServiceStore(undeclared_input)
    entry = store.add(service_cls)
    for name, answer in (services or {}).items():
        store.add(_stub(name, answer))
    invoker = Invoker(store, reactor=clock or task.Clock(), threads=threads or SyncThreads(),
                      resources=resources)
    request = Request(payload=data, headers=headers or {}, path_params=params or {}, cid=cid,
                      channel=ChannelInfo("test", "test", "json"))
    return defer.maybeDeferred(invoker.invoke, entry.name, request, False)


def call_service_sync(service_cls, data=None, **kwargs):
    """:func:`call_service` for services that finish at once; raises their error."""
    d = call_service(service_cls, data, **kwargs)
    results = []
    d.addBoth(results.append)
    if not results:
        raise AssertionError(f"{service_cls.__name__} did not finish synchronously")
    result = results[0]
    if hasattr(result, "raiseException"):
        result.raiseException()
    return result
