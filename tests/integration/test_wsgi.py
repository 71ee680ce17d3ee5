"""WSGI apps hosted by the broker: Flask, Django and plain apps behind the broker's security."""

import http.client
import json
import socket
import textwrap
from base64 import b64encode

import pytest

from tests.integration.broker_process import ROOT, BrokerProcess
from tests.integration.test_startup import _run_broker

APPS = ROOT / "tests" / "wsgi_apps"


@pytest.fixture(scope="module")
def broker():
    process = BrokerProcess(config=APPS / "wsgi.yaml").start()
    yield process
    process.stop()


def _auth(broker, password=None):
    token = b64encode(f"admin:{password or broker.admin_password}".encode()).decode()
    return {"Authorization": "Basic " + token}


def _json(body):
    return json.loads(body)


def test_flask_answers_with_remote_user_after_broker_auth(broker):
    status, headers, body = broker.request("GET", "/flask/whoami?a=1&b=%20", headers=_auth(broker))
    assert status == 200, body
    info = _json(body)
    assert info["remote_user"] == "admin"
    assert (info["script_name"], info["path_info"], info["query"]) == ("/flask", "/whoami", "a=1&b=%20")
    assert info["url"].startswith("http://127.0.0.1:") and "/flask/whoami" in info["url"]
    assert info["authorization"] is None  # the broker's credentials are not passed on
    assert info["cid"] == headers["x-broker-cid"]


@pytest.mark.parametrize("path", ["/flask/whoami", "/django/whoami"])
def test_refused_without_credentials_or_with_wrong_ones(broker, path):
    for headers in ({}, _auth(broker, "wrong")):
        status, answer_headers, body = broker.request("GET", path, headers=headers)
        assert status == 401
        assert answer_headers["www-authenticate"].startswith("Basic")
        assert _json(body)["code"] == "unauthorized"


def test_flask_post_body_and_mount_root(broker):
    status, _, body = broker.request("POST", "/flask/whoami", b"payload=1",
                                     {**_auth(broker), "Content-Type": "text/plain"})
    assert status == 200 and _json(body)["body"] == "payload=1" and _json(body)["method"] == "POST"
    status, _, body = broker.request("GET", "/open/")
    assert (status, _json(body)) == (200, {"hello": "world"})
    status, _, body = broker.request("GET", "/open/whoami")
    assert _json(body)["remote_user"] is None  # no security on this mount


def test_django_answers_with_remote_user_and_script_name(broker):
    status, _, body = broker.request("GET", "/django/whoami", headers=_auth(broker))
    assert status == 200, body
    assert _json(body) == {"remote_user": "admin", "script_name": "/django",
                           "path": "/django/whoami", "path_info": "/whoami"}


def test_environ_per_pep_3333(broker):
    status, headers, body = broker.request(
        "POST", "/raw/environ?x=%2F", b"\xe9t\xe9",
        {"Content-Type": "application/octet-stream", "X-Custom": "v", "X-User_Id": "spoof"})
    info = _json(body)
    assert status == 200 and headers["x-filtered"] == "yes"
    assert info["SCRIPT_NAME"] == "/raw" and info["PATH_INFO"] == "/environ"
    assert info["QUERY_STRING"] == "x=%2F" and info["REQUEST_METHOD"] == "POST"
    assert info["SERVER_PROTOCOL"] == "HTTP/1.1" and info["REMOTE_ADDR"] == "127.0.0.1"
    assert (info["CONTENT_TYPE"], info["CONTENT_LENGTH"]) == ("application/octet-stream", "3")
    assert info["input"] == "\xe9t\xe9" and info["multithread"] is True
    assert info["HTTP_X_CUSTOM"] == "v"
    assert info["HTTP_X_USER_ID"] is None  # a header with "_" is dropped: it could pose as X-User-Id
    assert info["REMOTE_USER"] is None


def test_non_ascii_path_info_is_latin1_of_the_utf8_bytes(broker):
    status, _, body = broker.request("GET", "/raw/path/caf%C3%A9")
    assert _json(body) == {"PATH_INFO": "/path/caf\xc3\xa9"}
    status, _, body = broker.request("GET", "/open/caf%C3%A9")  # Flask decodes it back
    assert (status, _json(body)) == (200, {"path": "/café"})


def test_request_and_response_filters(broker):
    status, headers, body = broker.request("GET", "/raw/admin/x")
    assert (status, body) == (403, b"blocked by filter")
    assert headers["x-filtered"] == "yes"


def test_legacy_write_then_iterable(broker):
    status, _, body = broker.request("GET", "/raw/write")
    assert (status, body) == (200, b"written then iterated")


def test_close_is_always_called(broker):
    def closed():
        return _json(broker.request("GET", "/raw/closed")[2])["count"]
    before = closed()
    broker.request("GET", "/raw/write")            # answered whole
    broker.request("GET", "/raw/nothing-here")     # 404 from the app
    assert broker.request("GET", "/raw/fail-before")[0] == 500
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        broker.request("GET", "/raw/fail-mid")     # streamed, then broken off
    assert closed() - before == 4  # the /closed answers are counted after they are built


def test_app_failure_before_answer_is_a_500_without_traceback(broker):
    status, headers, body = broker.request("GET", "/open/boom")
    assert status == 500
    assert b"Traceback" not in body and b"on purpose" not in body
    assert broker.wait_for_log(headers["x-broker-cid"])
    assert broker.wait_for_log("the app failed on purpose")


def test_large_answer_is_streamed_chunked(broker):
    size = 1_000_000
    conn = http.client.HTTPConnection("127.0.0.1", broker.port, timeout=10)
    try:
        conn.request("GET", f"/open/big/{size}")
        response = conn.getresponse()
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert response.read() == b"x" * size
        conn.request("GET", "/open/")  # the connection goes on after a streamed answer
        assert json.loads(conn.getresponse().read()) == {"hello": "world"}
    finally:
        conn.close()


def test_a_client_that_stops_reading_does_not_hold_a_thread_forever(broker):
    """Back-pressure: the worker waits while the client is not reading, and is freed when it goes."""
    sock = socket.create_connection(("127.0.0.1", broker.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /open/big/50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.recv(1024)  # the answer started
    metrics = lambda: _json(broker.request("GET", "/broker/metrics")[2])["counters"]["wsgi.flask.open"]  # noqa: E731
    assert metrics()["busy"] == 1 and metrics()["streamed"] >= 1
    sock.close()
    for _ in range(400):  # poll: the worker is freed once the broker sees the connection closed
        if metrics()["busy"] == 0:
            break
        broker.wait_for_log("(not a log line: a pause between polls)", timeout=0.05)
    assert metrics()["busy"] == 0
    assert metrics()["client_gone"] >= 1


def test_metrics_count_requests(broker):
    broker.request("GET", "/open/")
    counters = _json(broker.request("GET", "/broker/metrics")[2])["counters"]
    assert counters["wsgi.flask.open"]["requests"] >= 1
    assert set(counters["wsgi.raw"]) >= {"requests", "rejected", "errors", "timeouts", "busy"}


def test_two_django_projects_in_one_process_is_a_config_error(tmp_path):
    config = tmp_path / "two.yaml"
    config.write_text(textwrap.dedent(f"""\
        channels:
          - name: one
            type: wsgi
            path: /one
            django_settings: djsite.settings
            python_path: [{APPS}]
          - name: two
            type: wsgi
            path: /two
            django_settings: djsite.other_settings
            python_path: [{APPS}]
        """))
    status, output = _run_broker(config)
    assert status != 0 and "Traceback" not in output
    assert f"{config}:10: channels[1].django_settings" in output
    assert "only one Django project per process" in output and '"djsite.settings"' in output


def test_bad_app_path_is_a_config_error(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("channels:\n  - name: x\n    type: wsgi\n    path: /x\n"
                      "    app: no_such_module_here:app\n")
    status, output = _run_broker(config)
    assert status != 0 and "Traceback" not in output
    assert f"{config}:5: channels[0].app" in output and "no_such_module_here" in output
