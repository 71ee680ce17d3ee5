"""Live configuration through the admin API: each kind created, read, updated, deleted; bad
sections refused naming the field with nothing changed; export/import; the state file."""

import base64
import json
import textwrap
from pathlib import Path

import pytest
import yaml
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from broker.http.wire import HTTPRequest
from broker.node import build_node

SERVICES = Path(__file__).with_name("loopback_services.py")
PASSWORD = "s3cret-for-tests"

CONFIG = f"""
services: {{paths: ["{SERVICES}"]}}
admin: {{security: ops}}
security:
  - {{name: ops, type: basic_auth, username: ops, password: "{PASSWORD}"}}
connections:
  - {{name: mem, type: loopback}}
outgoing:
  - {{name: out, type: loopback, connection: mem, queue: elsewhere}}
channels:
  - {{name: double, type: http, path: /double, service: test.double}}
scheduler:
  jobs:
    - {{name: tick, service: test.double, data: {{n: 1}}, interval: 60s}}
cache:
  named:
    - {{name: small, max_entries: 10}}
pubsub:
  topics:
    - {{pattern: "orders.#", history: 10}}
"""


def _build(tmp_path, text=CONFIG):
    path = tmp_path / "broker.yaml"
    path.write_text(textwrap.dedent(text))
    node = build_node(str(path), reactor=MemoryReactorClock())
    node.startService()
    return node


@pytest.fixture
def node(tmp_path):
    node = _build(tmp_path)
    yield node
    node.stopService()


def _auth(password=PASSWORD):
    return {"authorization": "Basic " + base64.b64encode(f"ops:{password}".encode()).decode()}


def call(node, method, path, body=None, query="", headers=None):
    """One request through the router; (status, decoded body)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    request = HTTPRequest(method, path, query, "1.1", {**_auth(), **(headers or {})}, body or b"",
                          True, "127.0.0.1", b"")
    route, params = node.router.match(method, path)
    answer = route.target(request, "cid", params)
    if isinstance(answer, Deferred):
        results = []
        answer.addBoth(results.append)
        assert results, f"{method} {path} did not answer"
        answer = results[0]
    content_type = dict(answer.headers).get("Content-Type", "")
    data = json.loads(answer.body) if "json" in content_type else answer.body.decode()
    return answer.status, data


def paths(node):
    return sorted(r.path for r in node.router.routes if r.kind == "service")


# -- each kind: create, read, update, delete ------------------------------------------------

KINDS = {
    "channels": ({"name": "triple", "type": "http", "path": "/triple", "service": "test.double"},
                 {"path": "/thrice"}, {"path": "no-slash"}, "path"),
    "outgoing": ({"name": "out2", "type": "loopback", "connection": "mem", "queue": "q2"},
                 {"queue": "q3"}, {"connection": "nope"}, "connection"),
    "connections": ({"name": "mem2", "type": "loopback"}, {"max_queue": 5}, {"max_queue": -1},
                    "max_queue"),
    "security": ({"name": "apps", "type": "apikey", "key": "k-123"}, {"header": "X-Key"},
                 {"header": "bad header"}, "header"),
    "jobs": ({"name": "tock", "service": "test.double", "data": {"n": 2}, "interval": "30s"},
             {"interval": "10s"}, {"cron": "not a cron"}, "cron"),
    "caches": ({"name": "big", "max_entries": 100}, {"max_entries": 200}, {"max_entries": "many"},
               "max_entries"),
    "topics": ({"pattern": "rates.*", "history": 5}, {"history": 7}, {"overflow": "explode"},
               "overflow"),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_is_created_read_updated_and_deleted(node, kind):
    item, change, _, _ = KINDS[kind]
    item_id = item.get("name") or item["pattern"]
    status, answer = call(node, "POST", f"/broker/admin/config/{kind}", item)
    assert status == 201 and answer == {"kind": kind, "id": item_id, "change": "created"}
    status, read = call(node, "GET", f"/broker/admin/config/{kind}/{item_id}")
    assert status == 200 and read.get(next(iter(change))) != list(change.values())[0]
    status, answer = call(node, "PUT", f"/broker/admin/config/{kind}/{item_id}", {**item, **change})
    assert status == 200 and answer["change"] == "updated"
    status, read = call(node, "GET", f"/broker/admin/config/{kind}/{item_id}")
    assert {k: read[k] for k in change} == change
    listed = call(node, "GET", f"/broker/admin/config/{kind}")[1]["items"]
    assert item_id in [i.get("name") or i.get("pattern") for i in listed]
    status, answer = call(node, "DELETE", f"/broker/admin/config/{kind}/{item_id}")
    assert status == 200 and answer["change"] == "deleted"
    assert call(node, "GET", f"/broker/admin/config/{kind}/{item_id}")[0] == 404


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_bad_item_is_a_400_naming_the_field_and_changes_nothing(node, kind):
    item, _, bad, field = KINDS[kind]
    before = dict(node.components)
    exported = call(node, "GET", "/broker/admin/config/export")[1]
    status, answer = call(node, "POST", f"/broker/admin/config/{kind}", {**item, **bad})
    assert status == 400 and answer["code"] == "invalid_config"
    assert answer["errors"][0]["field"] == field, answer
    assert field in answer["details"]
    assert node.components == before
    assert call(node, "GET", "/broker/admin/config/export")[1] == exported


def test_a_new_http_channel_is_routed_and_a_removed_one_is_gone(node):
    call(node, "POST", "/broker/admin/config/channels",
         {"name": "triple", "type": "http", "path": "/triple", "service": "test.double"})
    assert paths(node) == ["/double", "/triple"]
    call(node, "DELETE", "/broker/admin/config/channels/double")
    assert paths(node) == ["/triple"]


def test_a_changed_job_is_rescheduled(node):
    scheduler = node.components[("feature", "scheduler")]
    call(node, "PUT", "/broker/admin/config/jobs/tick",
         {"name": "tick", "service": "test.double", "data": {"n": 1}, "interval": "5s"})
    rebuilt = node.components[("feature", "scheduler")]
    assert rebuilt is not scheduler and rebuilt.running and not scheduler.running
    assert [job.interval for job in rebuilt.section.jobs] == [5.0]


def test_a_changed_outgoing_connection_is_what_the_next_call_gets(node):
    before = node.resources.out.loopback["out"]
    call(node, "PUT", "/broker/admin/config/outgoing/out",
         {"name": "out", "type": "loopback", "connection": "mem", "queue": "moved"})
    after = node.resources.out.loopback["out"]
    assert after is not before and after.section.queue == "moved"


def test_wrong_credentials_are_refused_and_nothing_changes(node):
    request = HTTPRequest("POST", "/broker/admin/config/channels", "", "1.1", _auth("wrong"),
                          b"{}", True, "127.0.0.1", b"")
    route, params = node.router.match("POST", "/broker/admin/config/channels")
    from broker.errors import Unauthorized
    with pytest.raises(Unauthorized):
        route.target(request, "cid", params)


def test_create_of_an_existing_item_is_a_conflict_and_update_of_a_missing_one_a_404(node):
    status, answer = call(node, "POST", "/broker/admin/config/channels",
                          {"name": "double", "type": "http", "path": "/x", "service": "test.double"})
    assert status == 409 and "exists already" in answer["details"]
    status, _ = call(node, "PUT", "/broker/admin/config/channels/ghost",
                     {"type": "http", "path": "/x", "service": "test.double"})
    assert status == 404
    assert call(node, "GET", "/broker/admin/config/widgets")[0] == 404


def test_deleting_what_others_need_is_a_conflict_naming_them(node):
    status, answer = call(node, "DELETE", "/broker/admin/config/connections/mem")
    assert status == 409 and "outgoing out" in answer["details"]
    assert ("connection", "mem") in node.components


def test_every_change_is_logged_with_who_made_it(node):
    from twisted.logger import globalLogPublisher
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        call(node, "DELETE", "/broker/admin/config/topics/orders.#")
    finally:
        globalLogPublisher.removeObserver(seen.append)
    changes = [e for e in seen if e.get("log_format", "").startswith("config {verb}")]
    assert changes and changes[0]["who"] == "ops:ops" and changes[0]["id"] == "orders.#"


# -- export / import ----------------------------------------------------------------------------

def test_export_writes_secrets_as_env_references_never_values(node):
    call(node, "POST", "/broker/admin/config/security",
         {"name": "apps", "type": "apikey", "key": "plain-secret-value"})
    status, text = call(node, "GET", "/broker/admin/config/export")
    assert status == 200 and "plain-secret-value" not in text and PASSWORD not in text
    security = {s["name"]: s for s in yaml.safe_load(text)["security"]}
    assert security["apps"]["key"] == "${BROKER_SECURITY_APPS_KEY}"
    assert security["ops"]["password"] == "${BROKER_SECURITY_OPS_PASSWORD}"


def test_importing_the_export_changes_nothing(node):
    text = call(node, "GET", "/broker/admin/config/export")[1]
    before = dict(node.components)
    for _ in range(2):  # the password written as the ${ENV} the export made of it: unchanged
        status, answer = call(node, "POST", "/broker/admin/config/import", text)
        assert status == 200 and answer["changes"] == []
    assert node.components == before
    with_password = text.replace("${BROKER_SECURITY_OPS_PASSWORD}", PASSWORD)
    assert call(node, "POST", "/broker/admin/config/import", with_password)[1]["changes"] == []
    changed = text.replace("${BROKER_SECURITY_OPS_PASSWORD}", "${BROKER_TEST_UNSET_VARIABLE}")
    status, answer = call(node, "POST", "/broker/admin/config/import", changed)
    assert status == 400 and "BROKER_TEST_UNSET_VARIABLE is not set" in answer["details"]
    assert node.components == before


def test_import_dry_run_says_what_would_change_and_changes_nothing(node):
    tree = yaml.safe_load(call(node, "GET", "/broker/admin/config/export")[1])
    tree["security"][0]["password"] = PASSWORD
    tree["channels"].append({"name": "triple", "type": "http", "path": "/triple",
                             "service": "test.double"})
    tree["scheduler"]["jobs"] = []
    text = yaml.safe_dump(tree)
    status, answer = call(node, "POST", "/broker/admin/config/import", text, query="dry_run=true")
    assert status == 200 and answer["dry_run"] is True
    assert answer["changes"] == [{"kind": "jobs", "id": "tick", "change": "deleted"},
                                 {"kind": "channels", "id": "triple", "change": "created"}]
    assert paths(node) == ["/double"]
    status, answer = call(node, "POST", "/broker/admin/config/import", text)
    assert status == 200 and len(answer["changes"]) == 2
    assert paths(node) == ["/double", "/triple"]
    assert node.components[("feature", "scheduler")].section.jobs == ()


def test_a_bad_import_changes_nothing_and_says_why(node):
    tree = yaml.safe_load(call(node, "GET", "/broker/admin/config/export")[1])
    tree["security"][0]["password"] = PASSWORD
    tree["channels"].append({"name": "a", "type": "http", "path": "/a", "service": "test.double"})
    tree["channels"].append({"name": "b", "type": "http", "path": "/b", "service": "missing"})
    before = dict(node.components)
    status, answer = call(node, "POST", "/broker/admin/config/import", yaml.safe_dump(tree))
    assert status == 400 and 'no such service "missing"' in answer["details"]
    assert answer["errors"][0]["field"] == "service"
    assert node.components == before and paths(node) == ["/double"]
    status, answer = call(node, "POST", "/broker/admin/config/import", "channels: [: bad")
    assert status == 400 and "YAML" in answer["details"]
    laughs = "a: &a [x, x]\nb: &b [*a, *a]\nchannels: [*b]\n"
    status, answer = call(node, "POST", "/broker/admin/config/import", laughs)
    assert status == 400 and "aliases" in answer["details"]
    assert node.components == before


# -- persistence ------------------------------------------------------------------------------

def test_a_change_survives_a_restart_through_the_state_file(tmp_path):
    node = _build(tmp_path)
    call(node, "POST", "/broker/admin/config/channels",
         {"name": "triple", "type": "http", "path": "/triple", "service": "test.double"})
    call(node, "DELETE", "/broker/admin/config/jobs/tick")
    node.stopService()
    state = tmp_path / "broker.state.json"
    entries = json.loads(state.read_text())["entries"]
    assert entries["channels/triple"]["who"] == "ops:ops" and entries["jobs/tick"]["raw"] is None
    assert state.stat().st_mode & 0o077 == 0
    again = _build(tmp_path)
    try:
        assert paths(again) == ["/double", "/triple"]
        assert again.components[("feature", "scheduler")].section.jobs == ()
    finally:
        again.stopService()


def test_without_persist_changes_last_until_the_node_stops(tmp_path):
    node = _build(tmp_path, CONFIG + "live: {persist: false}\n")
    call(node, "DELETE", "/broker/admin/config/channels/double")
    node.stopService()
    assert not (tmp_path / "broker.state.json").exists()
    again = _build(tmp_path, CONFIG + "live: {persist: false}\n")
    assert paths(again) == ["/double"]
    again.stopService()


def test_an_unreadable_state_file_stops_startup_naming_it(tmp_path):
    (tmp_path / "broker.state.json").write_text("{not json")
    from broker.config import ConfigError
    with pytest.raises(ConfigError, match="broker.state.json: not a readable state file"):
        _build(tmp_path)


def test_a_change_that_cannot_be_stored_says_so(node):
    from twisted.internet import defer

    def broken(key, raw, who):
        return defer.fail(OSError("disk full"))
    node.live.state.save = broken
    status, answer = call(node, "DELETE", "/broker/admin/config/channels/double")
    assert status == 503 and "applied on this node but could not be stored (disk full)" in \
        answer["details"]
    assert node.live.counters["save_failures"] == 1
