"""A service that drives the cache API, for integration tests."""

from broker import Service


class CacheProbe(Service):
    """``{"op": "set", "key": "k", "value": ..., "ttl": ..., "cache": "default"}`` → the result."""

    name = "test.cache-probe"

    async def handle(self):
        data = self.request.input
        cache = self.caches[data.get("cache", "default")]
        op = data["op"]
        if op == "set":
            result = await cache.set(data["key"], data["value"], data.get("ttl"))
        elif op == "get_many":
            result = await cache.get_many(data["keys"])
        elif op == "incr":
            result = await cache.incr(data["key"], data.get("amount", 1))
        else:
            result = await getattr(cache, op)(data["key"])
        self.response.payload = {"result": result}
