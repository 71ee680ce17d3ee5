"""The task runner and stores on a fake clock: states, expiry, bounds, lost tasks, timeouts."""

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from broker import Service
from broker.errors import ServiceUnavailable, Timeout, ValidationError
from broker.services.context import ChannelInfo, Request
from broker.services.invoker import Invoker
from broker.services.store import ServiceStore
from broker.tasks import MemoryTaskStore, Tasks
from broker.tasks.store import StoreFull
from broker.testing import SyncThreads

WAITING = {}


class Echo(Service):
    name = "t.echo"

    def handle(self):
        self.response.payload = {"echo": self.request.input}


class Wait(Service):
    """Finishes when the test fires ``WAITING[key]``."""

    name = "t.wait"

    def handle(self):
        d = WAITING[self.request.input["key"]] = defer.Deferred()
        return d


class Bounded(Service):
    name = "t.bounded"
    timeout = 2.0

    def handle(self):
        return defer.Deferred()


def node(clock, store=None, **options):
    services = ServiceStore(timeouts={"t.wait": 50.0})
    for cls in (Echo, Wait, Bounded):
        services.add(cls)
    invoker = Invoker(services, reactor=clock, threads=SyncThreads(), timeout=100)
    published = []
    tasks = Tasks(store if store is not None else MemoryTaskStore(clock), invoker, clock, "n1",
                  publish=lambda topic, data, owner: published.append((topic, data, owner))
                  or defer.succeed("m"), **options)
    return tasks, published


def status(tasks, task_id):
    found = []
    tasks.status(task_id).addCallback(found.append)
    return found[0]


class TaskStates(SynchronousTestCase):
    def test_pending_running_done_published_to_its_owner(self):
        clock = task.Clock()
        tasks, published = node(clock)
        task_id, stored = tasks.submit("t.wait", {"key": "a"}, owner="admin:alice")
        self.assertEqual(self.successResultOf(stored), task_id)
        self.assertEqual(status(tasks, task_id)[1]["status"], "pending")
        clock.advance(0)
        owner, view = status(tasks, task_id)
        self.assertEqual((owner, view["status"]), ("admin:alice", "running"))
        WAITING["a"].callback(None)
        view = status(tasks, task_id)[1]
        self.assertEqual(view["status"], "done")
        self.assertEqual(published, [(f"broker.tasks.{task_id}", view, "admin:alice")])
        self.assertNotIn("owner", view)

    def test_expiration_fails_the_task_with_timeout(self):
        clock = task.Clock()
        tasks, _ = node(clock)
        task_id, _ = tasks.submit("t.wait", {"key": "b"}, owner="o:", expiration=3)
        clock.advance(0)
        clock.advance(3)
        view = status(tasks, task_id)[1]
        self.assertEqual(view["status"], "failed")
        self.assertEqual((view["error"]["code"], view["error"]["status"]), ("timeout", 504))
        self.assertEqual(tasks.counters["timed_out"], 1)

    def test_bad_expiration_names_the_field(self):
        tasks, _ = node(task.Clock())
        with self.assertRaises(ValidationError) as caught:
            tasks.submit("t.echo", owner="o:", expiration=0)
        self.assertEqual(caught.exception.errors[0]["field"], "expiration")

    def test_a_finished_record_expires_after_keep(self):
        clock = task.Clock()
        tasks, _ = node(clock, keep=10)
        task_id, _ = tasks.submit("t.echo", {"x": 1}, owner="o:")
        clock.advance(0)
        self.assertEqual(status(tasks, task_id)[1]["data"], {"echo": {"x": 1}})
        clock.advance(9.9)
        self.assertIsNotNone(status(tasks, task_id))
        clock.advance(0.2)
        self.assertIsNone(status(tasks, task_id))

    def test_max_running_is_a_counted_503(self):
        clock = task.Clock()
        tasks, _ = node(clock, max_running=2)
        tasks.submit("t.wait", {"key": "c1"}, owner="o:")
        tasks.submit("t.wait", {"key": "c2"}, owner="o:")
        with self.assertRaises(ServiceUnavailable):
            tasks.submit("t.echo", owner="o:")
        self.assertEqual(tasks.counters["refused_busy"], 1)

    def test_memory_store_is_bounded_and_counts_refusals(self):
        clock = task.Clock()
        store = MemoryTaskStore(clock, max_tasks=2)
        tasks, _ = node(clock, store=store)
        tasks.submit("t.echo", owner="o:")
        tasks.submit("t.echo", owner="o:")
        _, stored = tasks.submit("t.echo", owner="o:")
        self.failureResultOf(stored, StoreFull)
        self.assertEqual(store.counters["refused_full"], 1)
        self.assertEqual(len(tasks._running), 2)

    def test_a_task_of_a_node_that_stopped_beating_is_lost(self):
        clock = task.Clock()
        store = MemoryTaskStore(clock)
        first, _ = node(clock, store=store, heartbeat=1)
        first.startService()
        task_id, _ = first.submit("t.wait", {"key": "d"}, owner="o:")
        clock.advance(0)
        second, _ = node(clock, store=store)
        second.node_id = "n2"
        self.assertEqual(status(second, task_id)[1]["status"], "running")
        first.stopService()           # the first node dies: no more heartbeats
        clock.advance(3.1)
        view = status(second, task_id)[1]
        self.assertEqual(view["status"], "failed")
        self.assertEqual(view["error"]["code"], "lost")

    def test_cancel_fails_a_running_task_as_cancelled(self):
        clock = task.Clock()
        tasks, _ = node(clock)
        task_id, _ = tasks.submit("t.wait", {"key": "e"}, owner="o:")
        clock.advance(0)
        self.assertTrue(tasks.cancel(task_id))
        self.assertEqual(status(tasks, task_id)[1]["error"]["code"], "cancelled")
        self.assertFalse(tasks.cancel(task_id))


class ServiceTimeouts(SynchronousTestCase):
    def test_class_timeout_and_config_override(self):
        clock = task.Clock()
        tasks, _ = node(clock)
        invoker = tasks.invoker
        self.assertEqual(invoker.store.get("t.bounded").timeout, 2.0)
        self.assertEqual(invoker.store.get("t.wait").timeout, 50.0)   # services.timeouts
        d = invoker.invoke_internal("t.bounded")
        clock.advance(2)
        self.assertIn("after 2s", self.failureResultOf(d, Timeout).value.message)

    def test_per_call_timeout(self):
        clock = task.Clock()
        tasks, _ = node(clock)
        d = tasks.invoker.invoke_internal("t.wait", {"key": "f"}, timeout=0.5)
        clock.advance(0.5)
        self.assertIn("did not answer within 0.5s", self.failureResultOf(d, Timeout).value.message)
        self.assertEqual(tasks.invoker.counters["timeouts"], 1)

    def test_invoke_async_from_a_service_is_owned_by_its_caller(self):
        from broker.runtime import Resources
        clock = task.Clock()
        tasks, _ = node(clock)
        resources = Resources()
        resources.tasks = tasks
        tasks.invoker.resources = resources

        class Starter(Service):
            name = "t.starter"

            def handle(self):
                self.response.payload = {"task_id": self.invoke_async("t.echo", {"n": 1})}

        tasks.invoker.store.add(Starter)
        definition = type("Def", (), {"name": "apps", "authenticate": lambda self, r: "key-1"})()
        request = Request(channel=ChannelInfo("c", "http", "json", definition))
        response = tasks.invoker.invoke("t.starter", request, encode=False)
        task_id = response.payload["task_id"]
        clock.advance(0)
        owner, view = status(tasks, task_id)
        self.assertEqual((owner, view["data"]), ("apps:key-1", {"echo": {"n": 1}}))


class NodeWiring(SynchronousTestCase):
    def test_a_node_has_tasks_their_status_route_and_no_history_for_their_topics(self):
        from pathlib import Path

        from broker.node import build_node
        config = Path(__file__).parents[1] / "integration" / "configs" / "tasks.yaml"
        node = build_node(str(config), reactor=task.Clock())
        self.assertIsInstance(node.resources.tasks, Tasks)
        self.assertIn("/broker/tasks/{task_id}", [r.path for r in node.router.routes])
        hub = node.resources.pubsub
        self.assertEqual(hub.policy("broker.tasks.0123").history, 0)
        self.assertGreater(hub.policy("demo.x").history, 0)
        self.assertEqual(node.store.get("tasks.slow").timeout, 10.0)   # services.timeouts
        self.assertEqual(node.store.get("tasks.bounded").timeout, 0.2)  # the class's own


class OwnedTopics(SynchronousTestCase):
    def test_a_tasks_result_reaches_only_its_owners_sessions_and_is_not_cached(self):
        from broker.pubsub.hub import Hub
        from broker.pubsub.stores import MemoryStore

        class Sink:
            def __init__(self, owner):
                self.owner, self.got = owner, []

            def deliver(self, message):
                self.got.append(message.topic)

        clock = task.Clock()
        hub = Hub(MemoryStore(clock), reactor=clock)
        mine, other = Sink("admin:alice"), Sink("apps:key")
        for sink in (mine, other):
            hub.add(sink, "#")
        hub.publish("broker.tasks.abc", {"status": "done"}, publisher="admin:alice")
        hub.publish("demo.x", {"n": 1}, publisher="admin")
        self.assertEqual(mine.got, ["broker.tasks.abc", "demo.x"])
        self.assertEqual(other.got, ["demo.x"])
        self.assertNotIn("broker.tasks.abc", hub._targets)
        self.assertNotIn("broker.tasks.abc", hub._good_topics)
