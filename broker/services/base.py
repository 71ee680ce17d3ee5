"""The ``Service`` base class: a plain class whose ``handle()`` does the work.

A service reads ``self.request.input`` (already validated against its
``SimpleIO`` declaration) and leaves its answer in ``self.response.payload``.
``handle()`` may return nothing, return a Deferred, or be ``async def``.
Everything a service needs is bound per call by the invoker, so a unit test
can build one with fakes (see :mod:`broker.testing`) and call ``handle()``.
"""

import re

from twisted.logger import Logger

from broker.services.context import Request, Response, owner_of

__all__ = ["Service", "derive_name"]

_KEBAB = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def derive_name(cls):
    """Zato's rule: ``<module>.<class-in-kebab-case>`` (``demo.get-client``)."""
    module = cls.__module__.rpartition(".")[2]
    return f"{module}.{_KEBAB.sub('-', cls.__name__).lower()}"


class Service:
    """Base class of every service.

    Class attributes a service may set:

    :cvar name: the service's name; derived from module and class when None.
    :cvar SimpleIO: an inner class declaring input and output (optional).
    :cvar timeout: seconds ``handle()`` may take when it waits (None: ``limits.service_timeout``;
        ``services.timeouts`` in the config overrides both).

    Per-call attributes bound by the invoker: ``request``, ``response``,
    ``cid``, ``channel``, ``logger``.
    """

    name = None
    timeout = None
    logger = Logger(namespace="broker.service")

    _resources = None

    def __init__(self, request=None, response=None, *, invoker=None, threads=None,
                 logger=None, resources=None):
        self.request = request if request is not None else Request()
        self.response = response if response is not None else Response()
        self._invoker = invoker
        self._threads = threads
        if resources is not None:
            self._resources = resources
        if logger is not None:
            self.logger = logger

    @property
    def resources(self):
        """The node's :class:`~broker.runtime.Resources`."""
        if self._resources is None:
            raise RuntimeError("this service was built without resources")
        return self._resources

    @property
    def out(self):
        """Outgoing connections by kind and name: ``self.out.amqp["demo"]``."""
        return self.resources.out

    @property
    def cache(self):
        """The default cache."""
        cache = self.resources.cache
        if cache is None:
            raise RuntimeError("no cache is configured on this node")
        return cache

    @property
    def caches(self):
        """Named caches: ``self.caches["rates"]``."""
        return self.resources.caches

    def publish(self, topic, data):
        """Publish ``data`` to ``topic``; a Deferred firing with the message id."""
        return self.resources.publish(topic, data, publisher=self.name)

    @property
    def cid(self):
        """The correlation id of this invocation."""
        return self.request.cid

    @property
    def channel(self):
        """The :class:`~broker.services.context.ChannelInfo` the request came through."""
        return self.request.channel

    def handle(self):
        """Do the work; override in every service."""
        raise NotImplementedError(f"{type(self).__name__}.handle() is not implemented")

    def invoke(self, name, data=None, timeout=None):
        """Invoke another service in-process with ``data`` as its input.

        :param timeout: seconds this call may take; over it: :class:`~broker.errors.Timeout`.

        :return: a Deferred firing with the other service's output payload;
            its errors (validation, service errors) propagate as exceptions.
        """
        if self._invoker is None:
            raise RuntimeError("this service was built without an invoker")
        return self._invoker.invoke_internal(name, data, parent=self.request, timeout=timeout)

    def invoke_async(self, name, data=None, *, callback=None, expiration=None):
        """Start ``name`` with ``data`` in the background and return its task id at once.

        The task's status and result are read at ``GET /broker/tasks/{id}`` by the same
        caller as this invocation's, pushed to the topic ``broker.tasks.<id>`` and, when
        ``callback`` names a service, given to it.

        :param callback: a service given the final record; by default, as in Zato, a
            service named ``<this service's name>-async-callback`` when one is deployed.
        :param expiration: seconds the task may take (default ``tasks.expiration``).
        :raise broker.errors.BrokerError: unknown service (404), too many tasks (503).
        """
        if callback is None and self._invoker is not None:
            implicit = f"{self._service_name()}-async-callback"
            if implicit in self._invoker.store:
                callback = implicit
        task_id, stored = self._tasks().submit(name, data, owner=owner_of(self.request),
                                               parent=self.request, callback=callback,
                                               expiration=expiration)
        stored.addErrback(lambda failure: self.logger.warn(
            "task {task_id} of {service} not started: {error}", task_id=task_id, service=name,
            error=failure.getErrorMessage()))
        return task_id

    def _service_name(self):
        """This service's deployed name."""
        return self.name or derive_name(type(self))

    @property
    def patterns(self):
        """Fan-out, parallel and invoke-retry (:mod:`broker.tasks.patterns`)."""
        return self._tasks().patterns(self.request)

    def _tasks(self):
        tasks = self._resources.tasks if self._resources is not None else None
        if tasks is None:
            from broker.errors import ServiceUnavailable
            raise ServiceUnavailable("Asynchronous invocation is not enabled on this node (tasks)")
        return tasks

    def run_in_thread(self, fn, *args, **kwargs):
        """Run blocking ``fn(*args, **kwargs)`` in the bounded thread pool.

        The only right way to call blocking code (a DB driver, a slow
        library) from a service: never block the reactor thread.

        :return: a Deferred firing with ``fn``'s result.
        """
        if self._threads is None:
            raise RuntimeError("this service was built without a thread pool")
        return self._threads.run(fn, *args, **kwargs)

