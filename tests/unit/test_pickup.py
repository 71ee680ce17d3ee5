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
