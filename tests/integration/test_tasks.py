"""Tasks over HTTP against a live broker: 202 + Location, polling, failures, expiry, owners."""

import json
from base64 import b64decode, b64encode

import pytest

from tests.integration.broker_process import ROOT, BrokerProcess, wait_for

CONFIG = ROOT / "tests" / "integration" / "configs" / "tasks.yaml"


@pytest.fixture(scope="module")
def broker():
    process = BrokerProcess(CONFIG).start()
    yield process
    process.stop()


def basic(broker):
    return {"Authorization": "Basic " + b64encode(f"admin:{broker.admin_password}".encode()).decode()}


def post(broker, path, body, headers=None):
    status, answer_headers, content = broker.request(
        "POST", path, json.dumps(body), {"Content-Type": "application/json", **(headers or {})})
    return status, answer_headers, json.loads(content) if content else None


def get(broker, path, headers=None):
    status, answer_headers, content = broker.request("GET", path, headers=headers or {})
    return status, json.loads(content) if content else None


def start(broker, service, data=None, headers=None, path="/broker/invoke", **extra):
    status, headers_, body = post(broker, path, {"service": service, "data": data, "async": True,
                                                 **extra}, headers if headers is not None else basic(broker))
    assert status == 202, body
    assert headers_["location"] == f"/broker/tasks/{body['task_id']}"
    return body["task_id"], headers_["location"]


def poll(broker, location, headers=None, until=("done", "failed")):
    """GET the status until it is one of ``until``; the last answer."""
    headers = headers if headers is not None else basic(broker)
    return wait_for(lambda: (lambda s, b: b if s == 200 and b["status"] in until else None)(
        *get(broker, location, headers)), f"task at {location}", timeout=20)


def test_async_invoke_answers_202_and_polling_gets_the_result(broker):
    task_id, location = start(broker, "demo.echo", {"text": "hi", "repeat": 2})
    assert len(task_id) == 32
    view = poll(broker, location)
    assert view["status"] == "done" and view["task_id"] == task_id
    assert view["service"] == "demo.echo"
    assert view["data"] == {"text": "hihi"}


def test_a_slow_task_is_pending_or_running_then_done(broker):
    _, location = start(broker, "tasks.slow", {"seconds": 1.0, "tag": "x"})
    status, view = get(broker, location, basic(broker))
    assert status == 200 and view["status"] in ("pending", "running")
    assert "data" not in view
    view = poll(broker, location)
    assert view["status"] == "done" and view["data"] == {"slept": 1.0, "tag": "x"}


def test_a_failing_task_reports_the_typed_error(broker):
    _, location = start(broker, "tasks.fail")
    view = poll(broker, location)
    assert view["status"] == "failed"
    assert view["error"]["code"] == "service_error" and view["error"]["status"] == 500
    assert "traceback" not in json.dumps(view).lower()


def test_a_task_over_its_expiration_fails_with_timeout(broker):
    _, location = start(broker, "tasks.slow", {"seconds": 5}, expiration=0.3)
    view = poll(broker, location)
    assert view["status"] == "failed" and view["error"]["code"] == "timeout"
    assert view["error"]["status"] == 504


def test_unknown_service_or_bad_expiration_refused_at_once(broker):
    status, _, body = post(broker, "/broker/invoke", {"service": "no.such", "async": True}, basic(broker))
    assert status == 404 and body["code"] == "service_not_found"
    status, _, body = post(broker, "/broker/invoke", {"service": "demo.echo", "async": True,
                                                      "expiration": -1}, basic(broker))
    assert status == 400 and body["errors"][0]["field"] == "expiration"


def test_another_caller_is_refused_the_status(broker):
    _, location = start(broker, "demo.echo", {"text": "mine"})
    poll(broker, location)
    status, body = get(broker, location, {"X-API-Key": broker.api_key})
    assert status == 401  # the apps key is not the admin definition's credentials
    status, body = get(broker, location)
    assert status == 401
    wrong = {"Authorization": "Basic " + b64encode(b"admin:wrong").decode()}
    assert get(broker, location, wrong)[0] == 401


def test_a_caller_of_another_definition_is_refused(broker):
    """A task made through the apps key: the admin (another definition's caller) is refused."""
    _, location = start(broker, "demo.echo", {"text": "apps"}, {"X-API-Key": broker.api_key},
                        path="/apps/invoke")
    view = poll(broker, location, {"X-API-Key": broker.api_key})
    assert view["status"] == "done"
    status, body = get(broker, location, basic(broker))
    assert status == 401


def test_unknown_and_malformed_task_ids_are_404(broker):
    status, body = get(broker, "/broker/tasks/" + "0" * 32, basic(broker))
    assert status == 404 and body["code"] == "not_found"
    status, body = get(broker, "/broker/tasks/nope", basic(broker))
    assert status == 404 and body["errors"][0]["field"] == "task_id"


def test_callback_service_gets_the_result(broker):
    task_id, location = start(broker, "demo.echo", {"text": "cb"}, callback="tasks.recorder")
    poll(broker, location)
    found = wait_for(lambda: post(broker, "/broker/invoke", {"service": "tasks.recorded", "data": {
        "key": task_id}}, basic(broker))[2]["found"], "the callback")
    assert len(found) == 1 and found[0]["task_id"] == task_id and found[0]["status"] == "done"


def test_invoke_async_inside_a_service(broker):
    status, _, body = post(broker, "/broker/invoke", {"service": "tasks.starter", "data": {
        "service": "tasks.slow", "data": {"seconds": 0.1, "tag": "inner"}}}, basic(broker))
    assert status == 200
    view = poll(broker, f"/broker/tasks/{body['task_id']}")
    assert view["data"] == {"slept": 0.1, "tag": "inner"}
    found, = recorded(broker, body["task_id"], 1)   # Zato's implicit <service>-async-callback
    assert found["implicit"] and found["status"] == "done"


def test_zato_is_async_answers_202_with_the_task_id(broker):
    request = {"name": "demo.echo", "payload": b64encode(b'{"text": "z"}').decode(),
               "channel": "invoke", "data_format": "json", "transport": None, "is_async": True,
               "expiration": 15, "pid": None, "all_pids": False, "timeout": None,
               "skip_response_elem": True}
    status, headers, body = post(broker, "/zato/admin/invoke", request, basic(broker))
    assert status == 202 and body["zato_env"]["result"] == "ZATO_OK"
    task_id = b64decode(body["response"]).decode()
    assert task_id == body["task_id"] and headers["location"] == f"/broker/tasks/{task_id}"
    assert poll(broker, headers["location"])["status"] == "done"


# -- pushed over WebSocket ----------------------------------------------------------------

def ws(broker, headers=None):
    from tests.integration.ws_client import WSClient
    return WSClient(broker.port, headers=headers if headers is not None else basic(broker))


def test_results_are_pushed_to_the_callers_websocket(broker):
    with ws(broker) as client:
        assert client.request("subscribe", topic="broker.tasks.*")["op"] == "ok"
        ids = {start(broker, "demo.echo", {"text": f"t{i}"})[0] for i in range(3)}
        ids.add(start(broker, "tasks.fail")[0])
        messages = client.messages(4)
    by_id = {m["data"]["task_id"]: m for m in messages}
    assert set(by_id) == ids
    statuses = sorted(m["data"]["status"] for m in messages)
    assert statuses == ["done", "done", "done", "failed"]
    assert all(m["topic"] == f"broker.tasks.{m['data']['task_id']}" for m in messages)
    assert {m["data"].get("data", {}).get("text") for m in messages} >= {"t0", "t1", "t2"}


def test_subscribing_to_one_task_after_it_finished_answers_its_status(broker):
    task_id, location = start(broker, "demo.echo", {"text": "late"})
    poll(broker, location)
    with ws(broker) as client:
        reply = client.request("subscribe", topic=f"broker.tasks.{task_id}")
    assert reply["op"] == "ok" and reply["task"]["status"] == "done"
    assert reply["task"]["data"] == {"text": "late"}


def test_subscribing_to_one_task_before_it_finished_gets_it_pushed(broker):
    task_id, _ = start(broker, "tasks.slow", {"seconds": 0.5, "tag": "push"})
    with ws(broker) as client:
        reply = client.request("subscribe", topic=f"broker.tasks.{task_id}")
        assert reply["op"] == "ok" and reply["task"]["status"] in ("pending", "running")
        message, = client.messages(1)
    assert message["data"]["status"] == "done" and message["data"]["data"]["tag"] == "push"


def test_another_caller_may_not_subscribe_to_a_task_nor_receive_it(broker):
    apps = {"X-API-Key": broker.api_key}
    with ws(broker, apps) as other:
        assert other.request("subscribe", topic="broker.tasks.#")["op"] == "ok"
        admins, location = start(broker, "demo.echo", {"text": "secret"})
        poll(broker, location)
        refused = other.request("subscribe", topic=f"broker.tasks.{admins}")
        assert refused["op"] == "error" and refused["code"] == "forbidden"
        unknown = other.request("subscribe", topic="broker.tasks." + "f" * 32)
        assert unknown["op"] == "error" and unknown["code"] == "not_found"
        published = other.request("publish", topic=f"broker.tasks.{admins}", data={"fake": 1})
        assert published["op"] == "error" and published["code"] == "forbidden"
        own, _ = start(broker, "demo.echo", {"text": "apps"}, apps, path="/apps/invoke")
        message, = other.messages(1)
    assert message["data"]["task_id"] == own   # the admin's task never reached it


def test_a_service_timeout_is_a_websocket_error_reply(broker):
    with ws(broker) as client:
        reply = client.request("invoke", service="tasks.bounded", data={"seconds": 1})
    assert reply["op"] == "error" and reply["code"] == "timeout"


def test_a_service_timeout_is_http_504(broker):
    status, _, body = post(broker, "/bounded", {"seconds": 1})
    assert status == 504 and body["code"] == "timeout"
    status, _, body = post(broker, "/bounded", {"seconds": 0.01})
    assert status == 200


def test_a_per_call_timeout_is_http_504(broker):
    status, _, body = post(broker, "/broker/invoke", {"service": "tasks.slow", "data": {"seconds": 2},
                                                      "timeout": 0.2}, basic(broker))
    assert status == 504 and body["code"] == "timeout"
    status, _, body = post(broker, "/broker/invoke", {"service": "tasks.slow", "data": {"seconds": 0.05},
                                                      "timeout": 2}, basic(broker))
    assert status == 200 and body["slept"] == 0.05


# -- the Python clients ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(broker):
    from broker.client import Client
    with Client(f"http://127.0.0.1:{broker.port}", auth=("admin", broker.admin_password),
                timeout=10) as c:
        yield c


def test_client_invoke_async_then_result(client):
    task_id = client.invoke_async("tasks.slow", {"seconds": 0.2, "tag": "client"})
    assert isinstance(task_id, str) and len(task_id) == 32
    assert client.status(task_id)["status"] in ("pending", "running", "done")
    assert client.result(task_id, timeout=10) == {"slept": 0.2, "tag": "client"}


def test_client_result_raises_the_typed_error_of_a_failed_task(client):
    from broker.client import GatewayTimeout, ServiceError
    with pytest.raises(ServiceError) as caught:
        client.result(client.invoke_async("tasks.fail"), timeout=10)
    assert caught.value.code == "service_error"
    with pytest.raises(GatewayTimeout):
        client.result(client.invoke_async("tasks.slow", {"seconds": 5}, expiration=0.2), timeout=10)


def test_client_result_times_out_while_the_task_goes_on(client):
    from broker.client import Timeout
    task_id = client.invoke_async("tasks.slow", {"seconds": 1.0})
    with pytest.raises(Timeout, match=task_id):
        client.result(task_id, timeout=0.1)
    assert client.result(task_id, timeout=10) == {"slept": 1.0, "tag": None}


def test_client_status_of_an_unknown_task_is_not_found(client):
    from broker.client import NotFound
    with pytest.raises(NotFound):
        client.status("0" * 32)


def test_zato_any_service_invoker_invoke_async_data_is_the_task_id(broker, client):
    """The call Zato's AnyServiceInvoker makes (is_async, base64 payload): .data is the task id."""
    from broker.client import AnyServiceInvoker
    invoker = AnyServiceInvoker(f"http://127.0.0.1:{broker.port}", "/zato/admin/invoke",
                                ("admin", broker.admin_password))
    response = invoker.invoke_async("demo.echo", {"text": "zato", "repeat": 3})
    assert response.ok and response.status == 202
    assert client.result(response.data, timeout=10) == {"text": "zatozatozato"}


# -- patterns ------------------------------------------------------------------------------

def recorded(broker, key, count):
    def look():
        found = post(broker, "/broker/invoke", {"service": "tasks.recorded", "data": {"key": key}},
                     basic(broker))[2]["found"] or []
        return found if len(found) >= count else None
    return wait_for(look, f"{count} callbacks of {key}")


TARGETS = [["demo.echo", {"text": "ok"}], ["tasks.fail", {}], ["tasks.slow", {"seconds": 5}],
           ["tasks.slow", {"seconds": 0.05, "tag": "quick"}]]


def run_pattern(broker, **data):
    status, _, body = post(broker, "/broker/invoke", {"service": "tasks.pattern", "data": data},
                           basic(broker))
    assert status == 200, body
    return body


def test_fan_out_one_callback_with_every_result_despite_a_failure_and_a_timeout(broker):
    pattern_id = run_pattern(broker, pattern="fan_out", targets=TARGETS, callback="tasks.recorder",
                             timeout=0.5)["pattern_id"]
    final, = recorded(broker, pattern_id, 1)
    results = final["results"]
    assert [r["target"] for r in results] == ["demo.echo", "tasks.fail", "tasks.slow", "tasks.slow"]
    assert results[0]["status"] == "done" and results[0]["data"] == {"text": "ok"}
    assert results[1]["status"] == "failed" and results[1]["error"]["code"] == "service_error"
    assert results[2]["status"] == "failed" and results[2]["error"]["code"] == "timeout"
    assert results[3]["status"] == "done" and results[3]["data"]["tag"] == "quick"


def test_parallel_one_callback_per_target_despite_a_failure_and_a_timeout(broker):
    pattern_id = run_pattern(broker, pattern="parallel", targets=TARGETS, callback="tasks.recorder",
                             timeout=0.5)["pattern_id"]
    results = recorded(broker, pattern_id, 4)
    by = {(r["target"], r["status"], (r.get("error") or {}).get("code")) for r in results}
    assert by == {("demo.echo", "done", None), ("tasks.fail", "failed", "service_error"),
                  ("tasks.slow", "failed", "timeout"), ("tasks.slow", "done", None)}


def test_fan_out_cancelled_still_calls_back_with_what_finished(broker):
    pattern_id = run_pattern(broker, pattern="fan_out_cancel", callback="tasks.recorder",
                             targets=[["tasks.slow", {"seconds": 5}], ["tasks.slow", {"seconds": 6}]],
                             timeout=30)["pattern_id"]
    final, = recorded(broker, pattern_id, 1)
    assert [r["error"]["code"] for r in final["results"]] == ["cancelled", "cancelled"]


def test_invoke_retry_succeeds_after_failures(broker):
    body = run_pattern(broker, pattern="invoke_retry", service="tasks.flaky",
                       data={"key": "r1", "fail_times": 2}, attempts=3)
    assert body["result"] == {"calls": 3}


def test_invoke_retry_gives_up_with_the_typed_error(broker):
    status, _, body = post(broker, "/broker/invoke", {"service": "tasks.pattern", "data": {
        "pattern": "invoke_retry", "service": "tasks.flaky", "data": {"key": "r2", "fail_times": 5},
        "attempts": 2}}, basic(broker))
    assert status == 500 and body["code"] == "service_error"


def test_invoke_retry_attempts_time_out(broker):
    status, _, body = post(broker, "/broker/invoke", {"service": "tasks.pattern", "data": {
        "pattern": "invoke_retry", "service": "tasks.slow", "data": {"seconds": 5},
        "attempts": 2, "timeout": 0.2}}, basic(broker))
    assert status == 504 and body["code"] == "timeout"


def test_patterns_refuse_bad_targets_naming_the_field(broker):
    status, _, body = post(broker, "/broker/invoke", {"service": "tasks.pattern", "data": {
        "pattern": "fan_out", "targets": {}, "callback": "tasks.recorder"}}, basic(broker))
    assert status == 400 and body["errors"][0]["field"] == "targets"


def test_a_task_started_over_websocket_invoke_is_pushed_to_that_connection(broker):
    """A browser holding only an API key: invoke the dispatcher with async over /ws, get the
    result pushed on the same connection; the status answers that key only."""
    apps = {"X-API-Key": broker.api_key}
    with ws(broker, apps) as client:
        assert client.request("subscribe", topic="broker.tasks.*")["op"] == "ok"
        reply = client.request("invoke", service="broker.service.invoke", data={
            "service": "demo.echo", "data": {"text": "ws"}, "async": True})
        assert reply["op"] == "ok", reply
        task_id = reply["data"]["task_id"]
        message, = client.messages(1)
    assert message["data"]["task_id"] == task_id and message["data"]["data"] == {"text": "ws"}
    status, view = get(broker, f"/broker/tasks/{task_id}", apps)
    assert status == 200 and view["status"] == "done"
    assert get(broker, f"/broker/tasks/{task_id}", basic(broker))[0] == 401
