"""Build one component the way a node does, with fakes: for people who write transports.

::

    from broker.testing.components import ComponentHarness

    def test_channel_counts_messages():
        harness = ComponentHarness(invoker=FakeInvoker())
        channel = build_channel(section, harness.context(needs={("connection", "q"): queues}))
        harness.attach()
        assert harness.resources.metrics_report()["loopback.channel.orders"]["received"] == 0
"""

from twisted.internet.testing import MemoryReactorClock

from broker.components import BuildContext, Component, NodeParts
from broker.http.router import Router
from broker.runtime import Resources
from broker.services.store import ServiceStore

__all__ = ["ComponentHarness"]


class _Built:
    """A needed component, as a builder finds it."""

    def __init__(self, value, section):
        self.value, self.section = value, section


class ComponentHarness:
    """Node parts made of fakes, and the component one builder fills.

    :ivar parts: the :class:`~broker.components.NodeParts` (``router``, ``upgrades``...).
    :ivar component: the :class:`~broker.components.Component` being built.
    """

    def __init__(self, *, reactor=None, invoker=None, resources=None, store=None, config=None,
                 key=("channel", "test")):
        self.parts = NodeParts(config=config, reactor=reactor or MemoryReactorClock(),
                               store=store or ServiceStore(), invoker=invoker,
                               resources=resources or Resources(), router=Router(), upgrades={})
        self.resources = self.parts.resources
        self.reactor = self.parts.reactor
        self.invoker = invoker
        self.component = Component(key, {}, ())

    def context(self, needs=None):
        """The builder's context; ``needs``: ``{(kind, name): value}`` it may ask for (a
        connection's value may be given as ``(value, type)``)."""
        built = {}
        for key, value in (needs or {}).items():
            value, type = value if isinstance(value, tuple) else (value, None)
            built[key] = _Built(value, {"type": type})
        return BuildContext(self.parts, self.component, built)

    def attach(self):
        """Put what the builder recorded in place (routes, health, metrics...)."""
        self.component.attach(self.parts)
        return self.component
