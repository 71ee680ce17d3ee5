"""The pickup directory where inotify is not available: polled on the node's clock."""

from twisted.internet.task import Clock

from broker.errors import ServiceNotFound
from broker.node.pickup import HotDeployer, PickupWatcher
from broker.services.store import ServiceStore

MODULE = '''
from broker import Service

class Hello(Service):
    name = "poll.hello"

    def handle(self):
        self.response.payload = "{version}"
'''


def test_polling_deploys_changes_keeps_the_old_on_error_and_undeploys(tmp_path):
    store, clock = ServiceStore(), Clock()
    watcher = PickupWatcher(HotDeployer(store, tmp_path), interval=0.5, reactor=clock,
                            use_inotify=False)
    watcher.startService()
    assert watcher.mode == "polling"
    module = tmp_path / "hello.py"
    module.write_text(MODULE.format(version="one"))
    clock.advance(0.5)
    first = store.get("poll.hello").cls
    module.write_text(MODULE.format(version="two!"))
    clock.advance(0.5)
    second = store.get("poll.hello").cls
    assert second is not first
    module.write_text("def broken(:\n")
    clock.advance(0.5)
    assert store.get("poll.hello").cls is second
    assert "SyntaxError" in watcher.deployer.modules["hello.py"]["error"]
    module.unlink()
    clock.advance(0.5)
    try:
        store.get("poll.hello")
        raise AssertionError("still deployed")
    except ServiceNotFound:
        pass
    watcher.stopService()
    assert watcher.deployer.counters == {"deploys": 2, "failures": 1, "undeploys": 1}


def test_a_module_naming_anothers_service_is_refused(tmp_path):
    store = ServiceStore()
    deployer = HotDeployer(store, tmp_path)
    (tmp_path / "a.py").write_text(MODULE.format(version="a"))
    (tmp_path / "b.py").write_text(MODULE.format(version="b"))
    assert deployer.deploy(tmp_path / "a.py")["error"] is None
    report = deployer.deploy(tmp_path / "b.py")
    assert "'poll.hello' is already used by" in report["error"]
    assert store.get("poll.hello").source == str(tmp_path / "a.py")


def test_the_same_bytes_twice_are_deployed_once(tmp_path):
    store = ServiceStore()
    deployer = HotDeployer(store, tmp_path)
    (tmp_path / "a.py").write_text(MODULE.format(version="a"))
    deployer.deploy(tmp_path / "a.py")
    first = store.get("poll.hello").cls
    assert deployer.deploy(tmp_path / "a.py")["error"] is None
    assert store.get("poll.hello").cls is first and deployer.counters["deploys"] == 1


SLOW = '''
from twisted.internet import defer
from broker import Service

WAITING = []

class Slow(Service):
    name = "hot.slow"

    def handle(self):
        if self.request.payload.get("wait"):
            d = defer.Deferred()
            WAITING.append(d)
            return d.addCallback(lambda _: self._answer())
        self._answer()

    def _answer(self):
        self.response.payload = {"version": "%s"}
'''


def test_a_call_in_flight_finishes_on_the_old_code_and_the_next_gets_the_new(tmp_path):
    import json
    import sys
    import textwrap

    from twisted.internet.testing import MemoryReactorClock

    from broker.http.wire import HTTPRequest
    from broker.node import build_node

    pickup = tmp_path / "pickup"
    pickup.mkdir()
    (pickup / "slow.py").write_text(SLOW % "old")
    config = tmp_path / "broker.yaml"
    config.write_text(textwrap.dedent("""
        channels:
          - {name: slow, type: http, path: /slow, service: hot.slow}
    """))
    node = build_node(str(config), reactor=MemoryReactorClock(), pickup=str(pickup))
    node.startService()

    def post(body):
        request = HTTPRequest("POST", "/slow", "", "1.1", {}, json.dumps(body).encode(), True,
                              "127.0.0.1", b"")
        return node.http.handler.handle(request)

    try:
        in_flight = post({"wait": True})
        waiting = sys.modules["broker_pickup.slow"].WAITING
        (pickup / "slow.py").write_text(SLOW % "new")
        node.deployer.deploy(pickup / "slow.py")
        answered = post({})
        assert json.loads(answered.body) == {"version": "new"}
        answers = []
        in_flight.addCallback(answers.append)
        waiting.pop().callback(None)
        assert json.loads(answers[0].body) == {"version": "old"}
    finally:
        node.stopService()
