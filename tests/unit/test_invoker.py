"""The invoker pipeline, with fake dependencies and no sockets."""

import json

from twisted.internet import defer, task
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from broker import Int, Service
from broker.errors import (NotFound, ResponseTooLarge, ServiceError, Timeout, Unauthorized,
                           ValidationError)
from broker.security.auth import APIKey
from broker.services.context import ChannelInfo, Request
from broker.services.invoker import Invoker
from broker.services.store import ServiceStore
from broker.testing import SyncThreads, call_service_sync


class Echo(Service):
    name = "t.echo"

    class SimpleIO:
        input_required = ("text",)
        input_optional = (Int("repeat", default=1),)
        output_required = ("text",)

    def handle(self):
        self.response.payload.text = self.request.input.text * self.request.input.repeat
        self.response.payload.secret = "never leaves"


class Slow(Service):
    name = "t.slow"

    def handle(self):
        return defer.Deferred()


class AsyncCaller(Service):
    name = "t.caller"

    async def handle(self):
        inner = await self.invoke("t.echo", {"text": "ab", "repeat": 2})
        self.response.payload = {"inner": inner}


class Broken(Service):
    name = "t.broken"

    def handle(self):
        raise KeyError("boom")


class BreaksOutput(Service):
    name = "t.breaks-output"

    class SimpleIO:
        output_required = ("must",)

    def handle(self):
        self.response.payload = {"other": 1}


class Raw(Service):
    name = "t.raw"

    def handle(self):
        self.response.payload = '{"own": "json"}'


class Recursive(Service):
    name = "t.recursive"

    def handle(self):
        return self.invoke("t.recursive", {})


class Blocking(Service):
    name = "t.blocking"

    def handle(self):
        return self.run_in_thread(lambda: 41 + 1).addCallback(self._set)

    def _set(self, value):
        self.response.payload = {"value": value}


def _invoker(clock=None):
    store = ServiceStore()
    for cls in (Echo, Slow, AsyncCaller, Broken, BreaksOutput, Raw, Recursive, Blocking):
        store.add(cls)
    return Invoker(store, reactor=clock or task.Clock(), threads=SyncThreads(), timeout=5)


def _request(body=b"", fmt="json", security=None, **kw):
    return Request(raw_request=body, channel=ChannelInfo("c", "http", fmt, security), cid="cid1", **kw)


class InvokerTests(SynchronousTestCase):

    def test_sync_service_answers_without_a_deferred(self):
        """A service that finishes at once is answered directly, encoded, declared keys only."""
        response = _invoker().invoke("t.echo", _request(b'{"text":"hi","repeat":3}'))
        self.assertEqual(json.loads(response.body), {"text": "hihihi"})
        self.assertEqual(response.content_type, "application/json")

    def test_params_are_merged_into_input(self):
        """Path and query params join the body's input."""
        response = _invoker().invoke("t.echo", _request(b'{"text":"x"}', query={"repeat": "2"}))
        self.assertEqual(json.loads(response.body), {"text": "xx"})

    def test_invalid_input_names_every_field(self):
        """Missing and malformed input raise one ValidationError naming each field."""
        with self.assertRaises(ValidationError) as caught:
            _invoker().invoke("t.echo", _request(b'{"repeat":"many","extra":1}'))
        fields = {e["field"] for e in caught.exception.errors}
        self.assertEqual(fields, {"text", "repeat", "extra"})

    def test_unknown_service(self):
        """An unknown service name is NotFound."""
        self.assertRaises(NotFound, _invoker().invoke, "nope", _request())

    def test_security_runs_first(self):
        """A guarded channel authenticates before anything else runs."""
        request = _request(b'{"text":"x"}', security=APIKey("k", "secret"))
        self.assertRaises(Unauthorized, _invoker().invoke, "t.echo", request)
        request = _request(b'{"text":"x"}', security=APIKey("k", "secret", caller="app"),
                           headers={"x-api-key": "secret"})
        _invoker().invoke("t.echo", request)
        self.assertEqual(request.caller, "app")

    def test_async_service_times_out(self):
        """An async service over the timeout fails with Timeout, counted."""
        clock = task.Clock()
        invoker = _invoker(clock)
        d = invoker.invoke("t.slow", _request())
        clock.advance(5.1)
        self.failureResultOf(d, Timeout)
        self.assertEqual(invoker.counters["timeouts"], 1)

    def test_coroutine_service_invokes_another(self):
        """``async def handle`` may await ``self.invoke``; the callee's output comes back filtered."""
        response = self.successResultOf(defer.maybeDeferred(_invoker().invoke, "t.caller", _request()))
        self.assertEqual(json.loads(response.body), {"inner": {"text": "abab"}})

    def test_service_exception_is_a_generic_service_error(self):
        """A service's own exception is logged; the caller sees a ServiceError, no details."""
        with self.assertRaises(ServiceError) as caught:
            _invoker().invoke("t.broken", _request())
        self.assertNotIn("boom", caught.exception.message)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_broken_output_declaration_is_a_service_error(self):
        """Breaking its own output declaration is the service's fault: 500, logged with its name."""
        with self.assertRaises(ServiceError) as caught:
            _invoker().invoke("t.breaks-output", _request())
        self.assertEqual(caught.exception.status, 500)
        self.assertNotIn("must", caught.exception.message)
        self.flushLoggedErrors()

    def test_string_payload_passes_through(self):
        """A service without SimpleIO may answer its own string."""
        response = _invoker().invoke("t.raw", _request())
        self.assertEqual(response.body, b'{"own": "json"}')

    def test_recursion_is_bounded(self):
        """Services invoking each other endlessly stop at max_depth."""
        d = _invoker().invoke("t.recursive", _request())
        self.failureResultOf(d, ServiceError)
        self.flushLoggedErrors()

    def test_blocking_work_goes_to_the_thread_runner(self):
        """``run_in_thread`` hands work to the injected runner, not the reactor thread."""
        invoker = _invoker()
        # finished at once (the fake runner is synchronous): a Response or a fired Deferred
        response = self.successResultOf(defer.maybeDeferred(invoker.invoke, "t.blocking", _request()))
        self.assertEqual(json.loads(response.body), {"value": 42})
        self.assertEqual(len(invoker._threads.calls), 1)

    def test_xml_channel_encodes_xml(self):
        """The same service answers XML on an XML channel."""
        response = _invoker().invoke(
            "t.echo", _request(b"<request><text>hi</text></request>", fmt="xml"))
        self.assertIn(b"<text>hi</text>", response.body)
        self.assertEqual(response.content_type, "application/xml")

    def test_an_answer_over_max_response_size_is_refused_counted_and_logged(self):
        """Over ``limits.max_response_size``: a typed 500 instead of the body, counted, and
        logged with the service and the cid; XML, a plain string and async answers alike."""
        invoker = _invoker()
        invoker.max_response_size = 100
        ok = invoker.invoke("t.echo", _request(b'{"text":"x","repeat":80}'))
        self.assertEqual(json.loads(ok.body), {"text": "x" * 80})
        cases = [("t.echo", _request(b'{"text":"x","repeat":101}')),
                 ("t.echo", _request(b"<r><text>x</text><repeat>101</repeat></r>", fmt="xml")),
                 ("t.raw", _request())]
        invoker.max_response_size = 10
        with capturedLogs() as events:
            for name, request in cases:
                with self.assertRaises(ResponseTooLarge) as caught:
                    invoker.invoke(name, request)
                self.assertEqual((caught.exception.status, caught.exception.code),
                                 (500, "response_too_large"))
            d = defer.maybeDeferred(invoker.invoke, "t.caller", _request())
            self.failureResultOf(d, ResponseTooLarge)
        self.assertEqual(invoker.counters["responses_too_large"], 4)
        logged = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(logged), 4)
        self.assertIn("service t.echo answered more than limits.max_response_size (10 bytes)", logged[0])
        self.assertIn("(cid cid1)", logged[0])


class TestingHelperTests(SynchronousTestCase):

    def test_call_service_sync_with_fake_callee(self):
        """``call_service_sync`` runs a service with stand-ins for the services it invokes."""
        class Caller(Service):
            name = "t.c2"

            async def handle(self):
                self.response.payload = await self.invoke("other", {"x": 1})

        response = call_service_sync(Caller, services={"other": lambda data: {"got": data["x"]}})
        self.assertEqual(response.payload, {"got": 1})


def test_request_from_channel_equals_the_keyword_built_one():
    """The edges' positional constructor fills every slot as ``__init__`` does."""
    from broker.services.context import INTERNAL, Request
    args = dict(raw_request=b"x", headers={"a": "1"}, path_params={"p": "1"}, query={"q": "2"},
                method="POST", path="/a", channel=INTERNAL, cid="c", peer="peer", content_type="ct")
    fast, slow = Request.from_channel(*args.values()), Request(**args)
    for name in Request.__slots__:
        assert getattr(fast, name) == getattr(slow, name), name
