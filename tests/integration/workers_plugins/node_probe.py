"""Services for the worker-process tests: each answers which process ran it."""

import os

from twisted.internet import task

from broker import Int, Service, Text


class Where(Service):
    """Which process answered."""

    name = "probe.where"

    class SimpleIO:
        output_required = ("pid",)

    def handle(self):
        self.response.payload = {"pid": os.getpid()}


class CacheSet(Service):
    name = "probe.cache.set"

    class SimpleIO:
        input_required = (Text("key"), Text("value"))
        output_required = ("pid",)

    async def handle(self):
        await self.cache.set(self.request.input.key, self.request.input.value)
        self.response.payload = {"pid": os.getpid()}


class CacheGet(Service):
    name = "probe.cache.get"

    class SimpleIO:
        input_required = (Text("key"),)
        output_required = ("pid",)
        output_optional = ("value",)

    async def handle(self):
        value = await self.cache.get(self.request.input.key)
        self.response.payload = {"value": value, "pid": os.getpid()}


class Tick(Service):
    """The scheduler's job: counts its runs in the node's cache."""

    name = "probe.tick"

    async def handle(self):
        await self.cache.incr("ticks")


class Ticks(Service):
    name = "probe.ticks"

    class SimpleIO:
        output_required = ("ticks",)

    async def handle(self):
        self.response.payload = {"ticks": await self.cache.get("ticks") or 0}


class Slow(Service):
    """Takes ``ms`` milliseconds; for stopping and reloading under load."""

    name = "probe.slow"

    class SimpleIO:
        input_required = (Int("ms", min=0, max=10_000),)
        output_required = ("pid",)

    async def handle(self):
        from twisted.internet import reactor
        await task.deferLater(reactor, self.request.input.ms / 1000)
        self.response.payload = {"pid": os.getpid()}


class Work(Service):
    """An AMQP channel's work: takes ``ms`` and answers its ``n`` (to the message's reply_to)."""

    name = "probe.work"

    class SimpleIO:
        input_required = (Int("n"), Int("ms", min=0, max=10_000))
        output_required = ("n",)

    async def handle(self):
        from twisted.internet import reactor
        await task.deferLater(reactor, self.request.input.ms / 1000)
        self.response.payload = {"n": self.request.input.n}
