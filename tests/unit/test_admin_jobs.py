"""``/broker/admin/jobs``: list, run now, enable and disable scheduler jobs, behind admin.security."""

import json
import textwrap
from base64 import b64encode
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from twisted.internet import defer, task

from broker.admin.openapi import build_openapi
from broker.http.app import HTTPApp
from broker.http.wire import HTTPRequest
from broker.node import build_node

ADMIN = {"authorization": "Basic " + b64encode(b"ops:s3cret").decode()}
SERVICES = Path(__file__).with_name("loopback_services.py")

CONFIG = """\
    name: jobs
    services: {paths: ["%s"]}
    admin: {security: admin}
    security:
      - {name: admin, type: basic_auth, username: ops, password: s3cret}
    scheduler:
      jobs:
        - {name: tick, service: test.double, interval: 1h, data: {n: 2}}
        - {name: slow, service: test.slow, interval: 1h}
    """


@pytest.fixture
def node(tmp_path):
    path = tmp_path / "broker.yaml"
    path.write_text(textwrap.dedent(CONFIG % SERVICES))
    clock = task.Clock()
    clock.advance(1_800_000_000)
    built = build_node(str(path), reactor=clock)
    built.components[("feature", "scheduler")].value.startService()
    yield built
    slow = _slow(built)
    while slow.waiting:
        slow.waiting.pop().callback(None)


def _slow(node):
    return node.store.get("test.slow").cls


def _invocations(node):
    return node.invoker.counters["invocations"]


def call(node, method, path, headers=ADMIN):
    request = HTTPRequest(method, path, "", "1.1", dict(headers), b"", True, "127.0.0.1", b"")
    answer = HTTPApp(node.router, node.invoker).handle(request)
    results = []
    if isinstance(answer, defer.Deferred):
        answer.addBoth(results.append)
        assert results, "the answer is not ready"
        answer = results[0]
    return answer.status, json.loads(answer.body)


def _jobs(node):
    status, body = call(node, "GET", "/broker/admin/jobs")
    assert status == 200
    return {job["name"]: job for job in body["jobs"]}


def test_the_list_shows_each_job_with_its_state(node):
    jobs = _jobs(node)
    assert set(jobs) == {"tick", "slow"}
    tick = jobs["tick"]
    assert tick["enabled"] is True and tick["service"] == "test.double"
    assert tick["last_run"] is None and tick["next_run"].startswith("2027-01-15T")
    assert tick["runs"] == 0 and tick["running"] == 0 and "is_enabled" not in tick


def test_run_now_invokes_the_service_and_counts_it(node):
    status, body = call(node, "POST", "/broker/admin/jobs/tick/run")
    assert status == 202 and body["job"]["name"] == "tick"
    tick = _jobs(node)["tick"]
    assert _invocations(node) == 1 and tick["failures"] == 0
    assert tick["runs"] == 1 and tick["last_run"] is not None


def test_run_now_while_running_with_overlap_skip_is_409(node):
    assert call(node, "POST", "/broker/admin/jobs/slow/run")[0] == 202
    status, body = call(node, "POST", "/broker/admin/jobs/slow/run")
    assert status == 409 and body["code"] == "job_running" and "overlap" in body["details"]
    assert len(_slow(node).waiting) == 1 and _jobs(node)["slow"]["skipped_overlap"] == 1


def test_disable_and_enable_change_the_job_and_a_disabled_job_skips_its_runs(node):
    status, body = call(node, "POST", "/broker/admin/jobs/tick/disable")
    assert status == 200 and body["job"]["enabled"] is False
    assert _jobs(node)["tick"]["enabled"] is False
    scheduler = node.components[("feature", "scheduler")].value
    scheduler.clock.advance(3600)
    tick = scheduler.jobs["tick"]
    assert tick.counters["runs"] == 0 and tick.counters["skipped_disabled"] == 1
    status, body = call(node, "POST", "/broker/admin/jobs/tick/enable")
    assert status == 200 and body["job"]["enabled"] is True
    scheduler.clock.advance(3600)
    assert tick.counters["runs"] == 1 and tick.counters["failures"] == 0


@pytest.mark.parametrize("method, path", [("POST", "/broker/admin/jobs/nope/run"),
                                          ("POST", "/broker/admin/jobs/nope/enable"),
                                          ("POST", "/broker/admin/jobs/nope/disable")])
def test_an_unknown_job_is_a_404_json_error(node, method, path):
    status, body = call(node, method, path)
    assert status == 404 and body["code"] == "not_found" and "nope" in body["details"]


@pytest.mark.parametrize("method, path", [("GET", "/broker/admin/jobs"),
                                          ("POST", "/broker/admin/jobs/tick/run"),
                                          ("POST", "/broker/admin/jobs/tick/disable")])
def test_the_routes_need_the_admin_definition(node, method, path):
    wrong = {"authorization": "Basic " + b64encode(b"ops:guess").decode()}
    for headers in ({}, wrong):
        assert call(node, method, path, headers)[0] == 401
    assert _invocations(node) == 0 and _jobs(node)["tick"]["enabled"] is True


def test_the_routes_are_in_the_openapi_document(node):
    document = build_openapi(node.router.routes, node.store, "jobs", "1")
    validate(document)
    paths = document["paths"]
    assert set(paths["/broker/admin/jobs"]) == {"get"}
    for action in ("run", "enable", "disable"):
        op = paths[f"/broker/admin/jobs/{{name}}/{action}"]["post"]
        assert {"401", "404"} <= set(op["responses"]) and op["security"] == [{"admin": []}]
    assert "409" in paths["/broker/admin/jobs/{name}/run"]["post"]["responses"]
