"""``self.patterns``: fan-out, parallel and invoke-retry, standing on tasks.

Targets are ``{service: data}`` (Zato's form) or a list of ``(service, data)``
pairs (the same service twice).  Each target runs as a task, so each has its
own status and a timeout (the pattern's ``timeout`` is every target's
expiration): a target failing, timing out or cancelled is reported with its
typed error and never loses the others' results.  The callbacks are services
(invoked with the results), so what follows does not depend on the process
that started the pattern.  ``cancel(pattern_id)`` cancels every target not yet
finished (reported ``cancelled``); the callbacks still get what finished.
"""

import secrets

from twisted.internet import defer, task
from twisted.logger import Logger

from broker.errors import BrokerError, ValidationError
from broker.services.context import owner_of

__all__ = ["Patterns", "MAX_TARGETS", "MAX_ATTEMPTS"]

log = Logger()

MAX_TARGETS = 1000
MAX_ATTEMPTS = 100


class Patterns:
    """The patterns of one invocation (its caller owns the targets' tasks).

    :param tasks: the node's :class:`~broker.tasks.runner.Tasks`.
    :param request: the invoking service's request.
    """

    def __init__(self, tasks, request):
        self.tasks = tasks
        self.request = request

    # -- fan-out / fan-in -----------------------------------------------------------

    def fan_out(self, targets, on_final, *, on_target=None, timeout=None):
        """Start every target at once; when all finished, invoke ``on_final`` once with
        ``{"pattern_id", "results": [{"target", "task_id", "status", "data" | "error"}]}``
        (and ``on_target`` with each result as it comes).

        :return: the pattern id (for :meth:`cancel`).
        """
        self._check_callback("on_final", on_final)
        if on_target is not None:
            self._check_callback("on_target", on_target)
        pattern_id, started = self._start(targets, timeout)
        waits = [self._result(pattern_id, name, task_id, on_target) for name, task_id in started]
        d = defer.gatherResults(waits)
        d.addCallback(lambda results: self._call(on_final, {"pattern_id": pattern_id,
                                                            "results": results}))
        d.addBoth(self._forget, pattern_id)
        return pattern_id

    # -- parallel ------------------------------------------------------------------------

    def parallel(self, targets, on_target, *, timeout=None):
        """Start every target at once; invoke ``on_target`` with each one's result as it
        finishes (``{"pattern_id", "target", "task_id", "status", "data" | "error"}``).

        :return: the pattern id (for :meth:`cancel`).
        """
        self._check_callback("on_target", on_target)
        pattern_id, started = self._start(targets, timeout)
        waits = [self._result(pattern_id, name, task_id, on_target) for name, task_id in started]
        defer.gatherResults(waits).addBoth(self._forget, pattern_id)
        return pattern_id

    def cancel(self, pattern_id):
        """Cancel the targets of ``pattern_id`` not yet finished; False if none is known."""
        task_ids = self.tasks.pattern_tasks.get(pattern_id)
        if not task_ids:
            return False
        for task_id in list(task_ids):
            self.tasks.cancel(task_id)
        return True

    # -- invoke with retries ---------------------------------------------------------------

    def invoke_retry(self, name, data=None, *, attempts=3, backoff=1.0, max_backoff=60.0,
                     timeout=None):
        """Invoke ``name`` until it succeeds, at most ``attempts`` times, waiting ``backoff``
        seconds (doubling, at most ``max_backoff``) between attempts; each attempt may take
        ``timeout`` seconds.  A caller's mistake (a 4xx) is not retried.

        :return: a Deferred of the output, or of the last attempt's typed error; cancel
            it to stop retrying.
        """
        if isinstance(attempts, bool) or not isinstance(attempts, int) \
                or not 1 <= attempts <= MAX_ATTEMPTS:
            raise ValidationError.of([{"field": "attempts",
                                       "problem": f"must be a whole number from 1 to {MAX_ATTEMPTS}"}])
        for field, value in (("backoff", backoff), ("max_backoff", max_backoff)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
                raise ValidationError.of([{"field": field, "problem": "must be seconds from 0 to 3600"}])
        self.tasks.invoker.store.get(name)
        return defer.Deferred.fromCoroutine(self._retry(name, data, attempts, backoff, max_backoff,
                                                        timeout))

    async def _retry(self, name, data, attempts, backoff, max_backoff, timeout):
        invoker, counters = self.tasks.invoker, self.tasks.counters
        for attempt in range(1, attempts + 1):
            try:
                return await invoker.invoke_internal(name, data, parent=self.request,
                                                     timeout=timeout)
            except BrokerError as error:
                if error.status < 500 or attempt == attempts:
                    raise
                counters["retries"] += 1
                delay = min(backoff * 2 ** (attempt - 1), max_backoff)
                log.info("invoke_retry: {service} failed ({code}), attempt {attempt} of "
                         "{attempts}; again in {delay}s", service=name, code=error.code,
                         attempt=attempt, attempts=attempts, delay=delay)
                await task.deferLater(self.tasks.reactor, delay, lambda: None)

    # -- common ------------------------------------------------------------------------------

    def _start(self, targets, timeout):
        pairs = _pairs(targets)
        store = self.tasks.invoker.store
        for name, _ in pairs:
            store.get(name)
        pattern_id = secrets.token_hex(16)
        owner = owner_of(self.request)
        started = []
        try:
            for name, data in pairs:
                task_id, _ = self.tasks.submit(name, data, owner=owner, parent=self.request,
                                               expiration=timeout)
                started.append((name, task_id))
        except BrokerError:
            for _, task_id in started:
                self.tasks.cancel(task_id)
            raise
        self.tasks.pattern_tasks[pattern_id] = {task_id for _, task_id in started}
        return pattern_id, started

    def _result(self, pattern_id, name, task_id, on_target):
        d = self.tasks.wait(task_id)

        def arrived(view):
            result = {"target": name, "task_id": task_id, "status": "failed"}
            if view is not None:
                result["status"] = view["status"]
                result.update({k: view[k] for k in ("data", "error") if k in view})
            else:
                result["error"] = {"code": "lost", "status": 500, "details": "no record left"}
            self.tasks.pattern_tasks.get(pattern_id, set()).discard(task_id)
            if on_target is not None:
                self._call(on_target, {"pattern_id": pattern_id, **result})
            return result

        return d.addCallback(arrived)

    def _call(self, callback, data):
        d = self.tasks.invoker.invoke_internal(callback, data, parent=self.request)
        d.addErrback(self._callback_failed, callback)
        return d

    def _callback_failed(self, failure, callback):
        self.tasks.counters["callback_errors"] += 1
        log.warn("pattern callback {callback} failed: {error}", callback=callback,
                 error=failure.getErrorMessage())

    def _forget(self, result, pattern_id):
        self.tasks.pattern_tasks.pop(pattern_id, None)
        return None

    def _check_callback(self, field, name):
        if not isinstance(name, str) or not name:
            raise ValidationError.of([{"field": field, "problem": "must name a service"}])
        self.tasks.invoker.store.get(name)


def _pairs(targets):
    if isinstance(targets, dict):
        pairs = list(targets.items())
    elif isinstance(targets, (list, tuple)):
        pairs = [tuple(t) for t in targets]
    else:
        pairs = None
    if not pairs or not all(len(p) == 2 and isinstance(p[0], str) and p[0] for p in pairs):
        raise ValidationError.of([{"field": "targets", "problem": "must be {service: data} or "
                                                                  "[(service, data)...], not empty"}])
    if len(pairs) > MAX_TARGETS:
        raise ValidationError.of([{"field": "targets", "problem": f"at most {MAX_TARGETS} targets"}])
    return pairs
