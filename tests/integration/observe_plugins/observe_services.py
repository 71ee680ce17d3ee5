"""Services the observability tests drive: traffic for every metric family, and a chain
that follows one trace through a service into outgoing HTTP and AMQP."""

from twisted.internet import reactor, task

from broker import Service

SEEN = {}  # what arrived where: {"http": [traceparent...], "amqp": [...], "logged": [...]}


class Headers(Service):
    """Records the ``traceparent`` an outgoing HTTP call brought (the broker calls itself)."""

    name = "observe.headers"

    def handle(self):
        SEEN.setdefault("http", []).append(self.request.headers.get("traceparent"))
        self.response.payload = {"ok": True}


class Chain(Service):
    """HTTP → this service → ``observe.inner`` (service to service)."""

    name = "observe.chain"

    async def handle(self):
        self.logger.info("chain called with password={password}", password="s3cret-never-logged")
        self.response.payload = await self.invoke("observe.inner", {})


class Inner(Service):
    """Calls outgoing HTTP and publishes to AMQP, both carrying the trace."""

    name = "observe.inner"

    async def handle(self):
        await self.out.http["self"].get()
        await self.out.amqp["trace"].publish({"from": "inner"})
        self.response.payload = {"done": True}


class Record(Service):
    """Consumes the AMQP message: the trace it read back, and the one it passes on."""

    name = "observe.record"

    async def handle(self):
        SEEN.setdefault("amqp", []).append(self.request.headers.get("traceparent"))
        await self.out.http["self"].get()  # its outgoing call continues the AMQP message's trace


class Seen(Service):
    name = "observe.seen"

    def handle(self):
        self.response.payload = {"seen": SEEN}


class Traffic(Service):
    """One request that moves the families an HTTP call can: cache hits and misses, a Redis
    failure, a ZeroMQ message out (and in, through the node's own pull channel), an AMQP
    message with bad JSON (dead-lettered), a pub/sub message."""

    name = "observe.traffic"

    async def handle(self):
        cache = self.caches["default"]
        await cache.set("k", 1)
        await cache.get("k")
        await cache.get("missing")
        try:
            await self.caches["dead"].get("k")
        except Exception:  # a failed Redis is a miss, or an error: both counted
            pass
        self.out.zmq["push"].send({"n": 1})
        await self.out.amqp["bad"].publish(b"{not json")
        self.publish("observe.tick", {"n": 1})
        self.response.payload = {"ok": True}


class Sink(Service):
    name = "observe.sink"

    def handle(self):
        SEEN["zmq"] = SEEN.get("zmq", 0) + 1


class Slow(Service):
    """A job that outlives its interval (overlaps get skipped)."""

    name = "observe.slow"

    def handle(self):
        return task.deferLater(reactor, 0.3, lambda: None)
