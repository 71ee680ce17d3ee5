"""Services for the tasks tests: slow, failing, bounded by a timeout, callbacks kept."""

from twisted.internet import reactor, task

from broker import Service

#: What tasks.recorder was given, by key (read back through tasks.recorded).
RECORDED = {}


class Slow(Service):
    """Waits ``seconds`` on the reactor, then answers ``{"slept": seconds, "tag": tag}``."""

    name = "tasks.slow"

    async def handle(self):
        data = self.request.input or {}
        seconds = float(data.get("seconds", 0.1))
        await task.deferLater(reactor, seconds, lambda: None)
        self.response.payload = {"slept": seconds, "tag": data.get("tag")}


class Fail(Service):
    """Always fails (a service's own error: 500 service_error)."""

    name = "tasks.fail"

    def handle(self):
        raise RuntimeError("this service always fails")


class Bounded(Service):
    """Its class says it may take 0.2 s; it takes ``seconds`` (1 by default)."""

    name = "tasks.bounded"
    timeout = 0.2

    async def handle(self):
        seconds = float((self.request.input or {}).get("seconds", 1))
        await task.deferLater(reactor, seconds, lambda: None)
        self.response.payload = {"slept": seconds}


class Flaky(Service):
    """Fails until it was called ``fail_times`` times for ``key``, then answers the count."""

    name = "tasks.flaky"
    calls = {}

    def handle(self):
        data = self.request.input
        key = data["key"]
        count = self.calls[key] = self.calls.get(key, 0) + 1
        if count <= data["fail_times"]:
            raise RuntimeError(f"flaky: call {count}")
        self.response.payload = {"calls": count}


class Recorder(Service):
    """A callback: keeps what it is given under its ``pattern_id`` (or ``task_id``)."""

    name = "tasks.recorder"

    def handle(self):
        data = self.request.input
        RECORDED.setdefault(data.get("pattern_id") or data.get("task_id") or "?", []).append(data)


class Recorded(Service):
    """``{"key": k}`` → what tasks.recorder kept under k (a list), or null."""

    name = "tasks.recorded"

    def handle(self):
        self.response.payload = {"found": RECORDED.get(self.request.input["key"])}


class Starter(Service):
    """Starts ``service`` with ``data`` as a task from inside a service: its id."""

    name = "tasks.starter"

    def handle(self):
        data = self.request.input
        task_id = self.invoke_async(data["service"], data.get("data"),
                                    callback=data.get("callback"))
        self.response.payload = {"task_id": task_id}


class StarterCallback(Service):
    """Zato's implicit callback of tasks.starter: ``<name>-async-callback``."""

    name = "tasks.starter-async-callback"

    def handle(self):
        data = self.request.input
        RECORDED.setdefault(data["task_id"], []).append({**data, "implicit": True})


class Pattern(Service):
    """Runs one of self.patterns: ``{"pattern": "fan_out"|"parallel", "targets": {...},
    "callback": name, "timeout": s}`` → the pattern's id; ``invoke_retry`` → its result."""

    name = "tasks.pattern"

    async def handle(self):
        data = self.request.input
        patterns = self.patterns
        kind = data["pattern"]
        if kind == "fan_out":
            pid = patterns.fan_out(data["targets"], data["callback"], timeout=data.get("timeout"))
        elif kind == "parallel":
            pid = patterns.parallel(data["targets"], data["callback"], timeout=data.get("timeout"))
        elif kind == "fan_out_cancel":
            pid = patterns.fan_out(data["targets"], data["callback"], timeout=data.get("timeout"))
            patterns.cancel(pid)
        else:
            result = await patterns.invoke_retry(data["service"], data.get("data"),
                                                 attempts=data["attempts"],
                                                 backoff=data.get("backoff", 0.01),
                                                 timeout=data.get("timeout"))
            self.response.payload = {"result": result}
            return
        self.response.payload = {"pattern_id": pid}
