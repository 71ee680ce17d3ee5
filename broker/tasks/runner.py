"""Tasks: invocations that answer a task id at once and finish in the background.

:meth:`Tasks.submit` records a ``pending`` task, runs the service on the
reactor (it may offload to the thread pool itself), records ``running`` then
``done`` (its output under ``data``) or ``failed`` (the typed error under
``error``), publishes the final record to the topic ``broker.tasks.<id>``
(only its owner receives it, see :func:`task_topic`) and hands it to the
optional callback service.  Every task has an ``expiration``: not finished by
then, it is cancelled and fails with the typed timeout.  Records are kept
``keep`` seconds after they finish; a task whose node died is reported
``failed`` with the code ``lost``.
"""

import secrets

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger

from broker.errors import BrokerError, ServiceError, ServiceUnavailable, Timeout
from broker.services.context import ChannelInfo, Request, owner_of

__all__ = ["ANONYMOUS", "ASYNC_CHANNEL", "TASK_TOPIC_PREFIX", "Tasks", "owner_of", "task_topic"]

log = Logger()

ANONYMOUS = "anonymous"
TASK_TOPIC_PREFIX = "broker.tasks."
#: What services run as tasks see as ``self.channel`` (Zato's ``invoke-async``).
ASYNC_CHANNEL = ChannelInfo("invoke-async", "invoke-async", "json")
_UNFINISHED = ("pending", "running")


def task_topic(task_id):
    """The topic a task's final record is published to."""
    return TASK_TOPIC_PREFIX + task_id


class Lost(BrokerError):
    code = "lost"
    status = 500
    default_message = "The node running the task stopped before it finished"


class Cancelled(BrokerError):
    code = "cancelled"
    status = 409
    default_message = "The task was cancelled"


class Tasks(Service):
    """The node's tasks (``resources.tasks``).

    :param store: an :class:`~broker.tasks.store.ITaskStore`.
    :param invoker: the node's invoker.
    :param publish: ``publish(topic, data, publisher)`` → Deferred, or None (no pub/sub).
    :param node_id: this node's id for this run (reported lost once its heartbeat stops).
    :param keep: seconds a finished record is kept.
    :param expiration: default seconds a task may take (``max_expiration`` at most).
    :param max_running: tasks running at once on this node; more are refused (503, counted).
    :param heartbeat: seconds between this node's heartbeats (alive for three of them).
    """

    def __init__(self, store, invoker, reactor, node_id, *, publish=None, keep=3600.0,
                 expiration=300.0, max_expiration=86400.0, max_running=10_000, heartbeat=5.0):
        self.setName("tasks")
        self.store = store
        self._ordered = getattr(store, "writes_at_once", False)
        self.invoker = invoker
        self.reactor = reactor
        self.node_id = node_id
        self.publish = publish
        self.keep = keep
        self.expiration = expiration
        self.max_expiration = max_expiration
        self.max_running = max_running
        self.heartbeat = heartbeat
        self._running = {}     # task id -> the running Deferred (None until it starts)
        self._waiters = {}     # task id -> [Deferred] waiting for its final record
        self._writes = {}      # task id -> the last write, so writes land in order
        self._beat = None
        self._cancelled = set()
        self.pattern_tasks = {}   # pattern id -> ids of its targets' tasks not yet finished
        self._expired = set()
        self.counters = {"submitted": 0, "done": 0, "failed": 0, "timed_out": 0, "cancelled": 0,
                         "refused_busy": 0, "lost_reported": 0, "published": 0, "publish_errors": 0,
                         "callbacks": 0, "callback_errors": 0, "store_errors": 0, "retries": 0}

    # -- life cycle -------------------------------------------------------------

    def startService(self):
        super().startService()
        self._beat = task.LoopingCall(self._heartbeat)
        self._beat.clock = self.reactor
        self._beat.start(self.heartbeat, now=True)

    def stopService(self):
        super().stopService()
        if self._beat is not None and self._beat.running:
            self._beat.stop()

    def _heartbeat(self):
        d = self.store.heartbeat(self.node_id, self.heartbeat * 3)
        d.addErrback(lambda f: log.warn("tasks: heartbeat not stored: {error}", error=f.getErrorMessage()))

    # -- submitting -------------------------------------------------------------

    def submit(self, service, data=None, *, owner, parent=None, callback=None, expiration=None):
        """Start ``service`` with ``data`` as a task of ``owner``.

        :param parent: the invoking :class:`~broker.services.context.Request` (depth, cid).
        :param callback: a service given the final record.
        :param expiration: seconds the task may take (default: the configured one).
        :return: ``(task_id, Deferred)``; the Deferred fires with the task id once the
            ``pending`` record is stored (so its status can be asked).
        :raise BrokerError: an unknown service or callback (404), bad expiration (400),
            too many tasks running (503).
        """
        store = self.invoker.store
        store.get(service)
        if callback is not None:
            store.get(callback)
        if len(self._running) >= self.max_running:
            self.counters["refused_busy"] += 1
            raise ServiceUnavailable(f"Too many tasks running (at most {self.max_running})")
        expiration = self._expiration(expiration)
        task_id = secrets.token_hex(16)
        now = self.reactor.seconds()
        record = {"id": task_id, "status": "pending", "service": service, "owner": owner,
                  "node": self.node_id, "cid": task_id[:24], "created": now, "callback": callback,
                  "expiration": expiration}
        self.counters["submitted"] += 1
        self._running[task_id] = None
        depth = parent.depth if parent is not None else 0
        stored = self._write(record, expiration + self.keep)

        def start(_):
            self.reactor.callLater(0, self._start, record, data, depth, expiration)
            return task_id

        def not_stored(failure):
            self._running.pop(task_id, None)
            self._writes.pop(task_id, None)
            return failure

        return task_id, stored.addCallbacks(start, not_stored)

    def _expiration(self, expiration):
        if expiration is None:
            return self.expiration
        if isinstance(expiration, bool) or not isinstance(expiration, (int, float)) \
                or not 0 < expiration <= self.max_expiration:
            from broker.errors import ValidationError
            raise ValidationError.of([{"field": "expiration", "problem": (
                f"must be a number of seconds above 0 and at most {self.max_expiration:g}")}])
        return float(expiration)

    def _write(self, record, ttl):
        """Store ``record`` after the task's previous write (so ``done`` never precedes
        ``running``); a Deferred of this write."""
        if self._ordered:   # the store writes at once: nothing to wait for
            return self.store.put(record, ttl)
        task_id = record["id"]
        previous = self._writes.get(task_id)
        snapshot = dict(record)
        if previous is None:
            d = self.store.put(snapshot, ttl)
        else:
            d = defer.Deferred()
            previous.addBoth(lambda _: self.store.put(snapshot, ttl).chainDeferred(d))
        ours = defer.Deferred()

        def settled(result):
            if self._writes.get(task_id) is ours:
                del self._writes[task_id]
            ours.callback(None)
            return result

        self._writes[task_id] = ours
        return d.addBoth(settled)

    # -- running ----------------------------------------------------------------

    def _start(self, record, data, depth, expiration):
        task_id = record["id"]
        if task_id not in self._running:
            return  # cancelled before it started
        record["status"] = "running"
        record["started"] = self.reactor.seconds()
        self._write(record, expiration + self.keep).addErrback(self._store_failed, record)
        owner_caller = record["owner"].partition(":")[2] or None
        parent = Request(cid=record["cid"], caller=owner_caller, depth=depth)
        d = self.invoker.invoke_internal(record["service"], data, parent=parent,
                                         channel=ASYNC_CHANNEL)
        self._running[task_id] = d
        if not d.called:
            expiry = self.reactor.callLater(expiration, self._expire, task_id)
            d.addBoth(_passing(lambda: expiry.cancel() if expiry.active() else None))
        d.addCallbacks(self._done, self._failed, (record,), None, (record,))

    def _expire(self, task_id):
        d = self._running.get(task_id)
        if d is not None:
            self._expired.add(task_id)
            d.cancel()

    def _done(self, output, record):
        record["status"] = "done"
        record["data"] = output
        self.counters["done"] += 1
        self._finish(record)

    def _failed(self, failure, record):
        if record["id"] in self._expired:
            self._expired.discard(record["id"])
            self.counters["timed_out"] += 1
            error = Timeout(f"The task did not finish within {record['expiration']:g}s")
        elif record["id"] in self._cancelled or failure.check(defer.CancelledError):
            self._cancelled.discard(record["id"])
            self.counters["cancelled"] += 1
            error = Cancelled()
        elif failure.check(BrokerError):
            error = failure.value  # a service's own failure is logged in full by the invoker
            log.info("task {task_id} of {service} failed: {status} {code}: {details}",
                     task_id=record["id"], service=record["service"], status=error.status,
                     code=error.code, details=error.message)
        else:
            log.failure("task {task_id} of {service} failed", failure, task_id=record["id"],
                        service=record["service"])
            error = ServiceError()
        record["status"] = "failed"
        record["error"] = error_of(error)
        self.counters["failed"] += 1
        self._finish(record)

    def _finish(self, record):
        task_id = record["id"]
        record["finished"] = self.reactor.seconds()
        self._running.pop(task_id, None)
        view = public_view(record)
        self._write(record, self.keep).addErrback(self._store_failed, record)
        if self.publish is not None:
            try:
                d = self.publish(task_topic(task_id), view, record["owner"])
            except Exception:
                d = defer.fail()
            d.addCallbacks(self._published, self._publish_failed, errbackArgs=(task_id,))
        if record.get("callback"):
            self._call_back(record, view)
        for waiter in self._waiters.pop(task_id, ()):
            waiter.callback(view)

    def _published(self, _):
        self.counters["published"] += 1

    def _publish_failed(self, failure, task_id):
        self.counters["publish_errors"] += 1
        log.warn("task {task_id}: result not published: {error}", task_id=task_id,
                 error=failure.getErrorMessage())

    def _call_back(self, record, view):
        self.counters["callbacks"] += 1
        parent = Request(cid=record["cid"], caller=record["owner"].partition(":")[2] or None)
        d = self.invoker.invoke_internal(record["callback"], view, parent=parent,
                                         channel=ASYNC_CHANNEL)
        d.addErrback(self._callback_failed, record)

    def _callback_failed(self, failure, record):
        self.counters["callback_errors"] += 1
        log.warn("task {task_id}: callback {callback} failed: {error}", task_id=record["id"],
                 callback=record["callback"], error=failure.getErrorMessage())

    def _store_failed(self, failure, record):
        self.counters["store_errors"] += 1
        log.warn("task {task_id}: record not stored: {error}", task_id=record["id"],
                 error=failure.getErrorMessage())

    # -- asking -------------------------------------------------------------------

    def status(self, task_id):
        """Deferred(``(owner, view)``) of a task, or None when unknown or expired.  A task
        still ``pending``/``running`` on a node that no longer beats is reported lost."""
        d = self.store.get(task_id)
        return d.addCallback(self._checked)

    def _checked(self, record):
        if record is None:
            return None
        if record["status"] not in _UNFINISHED:
            return record["owner"], public_view(record)
        if record["node"] == self.node_id:
            if record["id"] in self._running:
                return record["owner"], public_view(record)
            return self._lost(record)
        return self.store.alive(record["node"]).addCallback(
            lambda alive: (record["owner"], public_view(record)) if alive else self._lost(record))

    def _lost(self, record):
        self.counters["lost_reported"] += 1
        record = {**record, "status": "failed", "error": error_of(Lost())}
        return record["owner"], public_view(record)

    def wait(self, task_id):
        """Deferred(the final view) of a task this node runs; of its record otherwise."""
        if task_id in self._running:
            d = defer.Deferred(lambda _: self.cancel(task_id))
            self._waiters.setdefault(task_id, []).append(d)
            return d
        return self.status(task_id).addCallback(lambda found: found[1] if found else None)

    def cancel(self, task_id):
        """Cancel a task this node runs (it fails with ``cancelled``); False if it does not."""
        if task_id not in self._running:
            return False
        d = self._running[task_id]
        if d is None:   # not started yet: fail it now
            del self._running[task_id]
            record = {"id": task_id}
            self._writes.pop(task_id, None)
            self.counters["cancelled"] += 1
            self.store.get(task_id).addCallback(self._cancel_pending, record)
            return True
        self._cancelled.add(task_id)   # the invoker reports a cancelled service as a timeout
        d.cancel()
        return True

    def _cancel_pending(self, stored, record):
        if stored is None:
            return
        stored["status"] = "failed"
        stored["error"] = error_of(Cancelled())
        self.counters["failed"] += 1
        self._finish(stored)

    def patterns(self, request):
        """``self.patterns`` of a service invoked for ``request``."""
        from broker.tasks.patterns import Patterns
        return Patterns(self, request)

    def metrics(self):
        return {**self.counters, "running": len(self._running), **self.store.counters}


def _passing(fn):
    """A callback calling ``fn()`` and passing its result on."""
    def call(result):
        fn()
        return result
    return call


def error_of(error):
    """The typed error as a record keeps it."""
    return {"code": error.code, "status": error.status, "details": error.message}


def public_view(record):
    """What the owner is shown: never the owner or node."""
    view = {"task_id": record["id"], "status": record["status"], "service": record["service"],
            "created": record["created"]}
    if "finished" in record:
        view["finished"] = record["finished"]
    if record["status"] == "done":
        view["data"] = record.get("data")
    elif record["status"] == "failed":
        view["error"] = record.get("error")
    return view
