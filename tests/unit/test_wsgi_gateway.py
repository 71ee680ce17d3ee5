"""The WSGI gateway's own logic: a full pool, the start timeout, close(); fake reactor, real threads."""

import threading

import pytest

from broker.http.protocol import HTTPRequest, HTTPResponse
from broker.errors import ServiceUnavailable, Unauthorized
from broker.security.auth import BasicAuth
from broker.wsgi.gateway import WSGIGateway
from broker.wsgi.loading import load_callable
from broker.wsgi.pool import WorkerPool
from tests.unit.fake_reactor import ThreadedClock


def _request(path="/app/x", headers=None):
    return HTTPRequest("GET", path, "", "1.1", headers or {"host": "h:81"}, b"", True, "10.0.0.1", b"")


@pytest.fixture
def setup():
    made = []

    def make(app, threads=1, queue_size=0, **kwargs):
        clock = ThreadedClock()
        pool = WorkerPool(clock, threads, queue_size, "t")
        pool.startService()
        made.append(pool)
        return clock, pool, WSGIGateway("t", "/app", app, pool, clock, **kwargs)

    yield make
    for pool in made:
        pool.stopService()


def test_a_full_pool_refuses_and_counts(setup):
    release = threading.Event()

    def app(environ, start_response):
        release.wait(30)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    clock, pool, gateway = setup(app, threads=1, queue_size=0)
    first = gateway.handle(_request(), "cid-1", {})
    with pytest.raises(ServiceUnavailable):
        gateway.handle(_request(), "cid-2", {})
    assert gateway.metrics()["rejected"] == 1 and pool.pending == 1
    release.set()
    clock.run_next()
    answers = []
    first.addCallback(answers.append)
    response, = answers
    assert (response.status, response.body) == (200, b"ok")
    assert ("Content-Length", "2") not in response.headers  # the server frames the answer
    assert ("X-Broker-CID", "cid-1") in response.headers
    assert pool.pending == 0


def test_an_app_slow_to_start_gets_a_504_and_its_late_answer_is_dropped(setup):
    release = threading.Event()
    closed = []

    class Body(list):
        def close(self):
            closed.append(True)

    def app(environ, start_response):
        release.wait(30)
        start_response("200 OK", [])
        return Body([b"late"])

    clock, pool, gateway = setup(app, timeout=5)
    answers = []
    gateway.handle(_request(), "cid-1", {}).addCallback(answers.append)
    clock.advance(4.9)
    gateway.sweep()
    assert answers == []
    clock.advance(0.1)
    gateway.sweep()
    assert answers[0].status == 504 and gateway.counters["timeouts"] == 1
    assert pool.pending == 1  # the thread is still busy
    release.set()
    clock.run_next()
    assert len(answers) == 1 and closed == [True] and pool.pending == 0


def test_environ_script_name_path_info_and_server(setup):
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("204 No Content", [])
        return []

    clock, pool, gateway = setup(app)
    gateway.handle(_request("/app"), "c", {})
    clock.run_next()
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/app", "")
    assert (seen["SERVER_NAME"], seen["SERVER_PORT"]) == ("h", "81")
    assert seen["REMOTE_ADDR"] == "10.0.0.1" and seen["CONTENT_LENGTH"] == ""


def test_security_runs_before_the_app_and_sets_remote_user(setup):
    calls = []

    def app(environ, start_response):
        calls.append(environ.get("REMOTE_USER"))
        start_response("200 OK", [])
        return [b""]

    security = BasicAuth("s", "alice", "secret")
    clock, pool, gateway = setup(app, security=security)
    with pytest.raises(Unauthorized):
        gateway.handle(_request(), "c", {})
    assert calls == [] and pool.pending == 0
    gateway.handle(_request(headers={"authorization": "Basic YWxpY2U6c2VjcmV0"}), "c", {})
    clock.run_next()
    assert calls == ["alice"]


def test_start_response_twice_is_an_error_answered_500(setup):
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b"x"]

    clock, pool, gateway = setup(app)
    answers = []
    gateway.handle(_request(), "c", {}).addCallback(answers.append)
    clock.run_next()
    assert isinstance(answers[0], HTTPResponse) and answers[0].status == 500
    assert gateway.counters["errors"] == 1


def test_load_callable_messages():
    assert load_callable("os.path:join") is not None
    with pytest.raises(ValueError, match="cannot import"):
        load_callable("no_such_module_xyz:app")
    with pytest.raises(ValueError, match='has no "nothing"'):
        load_callable("os.path:nothing")
    with pytest.raises(ValueError, match="not callable"):
        load_callable("os.path:sep")
