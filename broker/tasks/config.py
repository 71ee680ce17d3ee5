"""The ``tasks:`` config section and the one place a node makes its task store.

::

    tasks:
      redis: main          # optional: records in Redis, so any node answers a status
      keep: 1h             # a finished task's record is kept this long
      expiration: 5m       # default time a task may take (per call: expiration)
      max_running: 10000   # tasks running at once on this node; more: 503

Without ``redis`` the records live in this node's memory (at most ``max_tasks``).
"""

import secrets

from broker.components import ComponentType, Needs
from broker.config.schema import Bool, Duration, Field, Int, Schema, Str
from broker.tasks.runner import Tasks
from broker.tasks.store import MemoryTaskStore, RedisTaskStore

__all__ = ["FEATURE", "TASKS_SECTION", "build_tasks"]


def _check(section):
    if section.expiration > section.max_expiration:
        raise ValueError("expiration: must be at most max_expiration")


TASKS_SECTION = Schema("tasks", {
    "enabled": Field(Bool(), default=True),
    "redis": Field(Str(), default=None, doc="a redis connection's name or a redis:// URL: task "
                                            "records shared by every node"),
    "namespace": Field(Str(pattern=r"^[A-Za-z0-9][\w.\-:]*$"), default="broker:tasks",
                       doc="Redis key prefix; nodes of one cluster share it"),
    "keep": Field(Duration(min=0.001, max=30 * 86400), default="1h",
                  doc="how long a finished task's record is kept"),
    "expiration": Field(Duration(min=0.001, max=30 * 86400), default="5m",
                        doc="how long a task may take unless the call says otherwise"),
    "max_expiration": Field(Duration(min=0.001, max=30 * 86400), default="1d",
                            doc="the longest expiration a call may ask for"),
    "max_running": Field(Int(min=1, max=10_000_000), default=10_000,
                         doc="tasks running at once on this node; more are refused (503)"),
    "max_tasks": Field(Int(min=1, max=100_000_000), default=100_000,
                       doc="memory: records kept at most; more are refused (503)"),
    "heartbeat": Field(Duration(min=0.01, max=3600), default="5s",
                       doc="how often a node says it is alive (its tasks are lost after 3)"),
}, validate=_check)


def build_tasks(section, ctx):
    """The node's :class:`~broker.tasks.runner.Tasks` (``resources.tasks``), or None."""
    if not section.enabled:
        return None
    if section.redis:
        store = RedisTaskStore(ctx.connection(section, "redis", "redis"), section.namespace)
    elif ctx.worker is not None:  # the node's, kept by the main process
        store = ctx.worker.task_store()
    else:
        store = MemoryTaskStore(ctx.reactor, section.max_tasks)
    resources = ctx.resources

    def publish(topic, data, owner):
        if resources.pubsub is None:
            from twisted.internet import defer
            return defer.succeed(None)
        return resources.pubsub.publish(topic, data, publisher=owner)

    tasks = Tasks(store, ctx.invoker, ctx.reactor, f"{ctx.config.name}:{secrets.token_hex(6)}",
                  publish=publish, keep=section.keep, expiration=section.expiration,
                  max_expiration=section.max_expiration, max_running=section.max_running,
                  heartbeat=section.heartbeat)
    ctx.add_service(tasks)
    ctx.lend("tasks", tasks)
    ctx.metrics("tasks", tasks.metrics)
    return tasks


#: The ``tasks:`` section: asynchronous invocation with task ids.
FEATURE = ComponentType(TASKS_SECTION, build_tasks, needs=[Needs.connection("redis", "redis")])
