"""The HTTP routing table."""

import pytest

from broker.http.router import Route, Router, compile_path
from broker.errors import MethodNotAllowed, NotFound


def _router(*routes):
    router = Router()
    for route in routes:
        router.add(route)
    return router


def test_static_path_matches_its_method():
    """A static path answers the methods it was given."""
    route = Route("a", "/a", ["POST"], "svc.a")
    assert _router(route).match("POST", "/a") == (route, {})


def test_template_extracts_params():
    """``{name}`` segments become path params."""
    route = Route("c", "/customer/{cust_id}/orders/{order_id}", ["GET"], "svc")
    found, params = _router(route).match("GET", "/customer/12/orders/x-9")
    assert found is route
    assert params == {"cust_id": "12", "order_id": "x-9"}


def test_template_param_does_not_cross_slashes():
    """A param matches one segment only."""
    router = _router(Route("c", "/customer/{cust_id}", ["GET"], "svc"))
    with pytest.raises(NotFound):
        router.match("GET", "/customer/1/2")


def test_unknown_path_is_not_found():
    """An unknown path raises NotFound."""
    with pytest.raises(NotFound):
        _router(Route("a", "/a", ["GET"], "svc")).match("GET", "/b")


def test_wrong_method_lists_allowed_methods():
    """A known path with another method is a 405 naming what is allowed (HEAD with GET)."""
    router = _router(Route("a", "/a", ["GET", "POST"], "svc"))
    with pytest.raises(MethodNotAllowed) as caught:
        router.match("TRACE", "/a")
    assert caught.value.allowed == ("GET", "HEAD", "POST")
    assert caught.value.headers["Allow"] == "GET, HEAD, POST"


def test_head_is_answered_by_get():
    """HEAD uses the GET route."""
    route = Route("a", "/a", ["GET"], "svc")
    assert _router(route).match("HEAD", "/a")[0] is route


def test_same_path_different_methods_different_routes():
    """One path may route GET and POST to different services."""
    get, post = Route("g", "/x/{id}", ["GET"], "svc.get"), Route("p", "/x/{id}", ["POST"], "svc.post")
    router = _router(get, post)
    assert router.match("GET", "/x/1")[0] is get
    assert router.match("POST", "/x/1")[0] is post


def test_duplicate_path_and_method_is_refused():
    """The same path and method twice is a configuration mistake."""
    router = _router(Route("a", "/a", ["GET"], "svc"))
    with pytest.raises(ValueError, match="GET already routed to a"):
        router.add(Route("b", "/a", ["GET", "POST"], "svc"))


def test_compile_path_escapes_literals():
    """Literal parts of a template are matched literally."""
    regex, names = compile_path("/a.b/{x}")
    assert names == ("x",)
    assert regex.match("/a.b/1") and not regex.match("/aXb/1")


def test_prefix_route_answers_its_path_and_below_for_any_method():
    """A mount owns its path and its subtree, whatever the method."""
    mount = Route("app", "/app", ["GET"], "wsgi", kind="builtin", prefix=True)
    router = _router(mount)
    for method, path in (("GET", "/app"), ("POST", "/app/"), ("DELETE", "/app/a/b?x")):
        assert router.match(method, path) == (mount, {})
    with pytest.raises(NotFound):
        router.match("GET", "/apple")  # a segment boundary, not a string prefix


def test_static_and_template_routes_win_over_mounts_and_longest_mount_wins():
    root = Route("root", "/", ["GET"], "wsgi", kind="builtin", prefix=True)
    deep = Route("deep", "/a/b", ["GET"], "wsgi", kind="builtin", prefix=True)
    static = Route("static", "/a/b/c", ["GET"], "svc")
    template = Route("tpl", "/a/{x}", ["GET"], "svc")
    router = _router(root, deep, static, template)
    assert router.match("GET", "/a/b/c")[0] is static
    assert router.match("GET", "/a/z")[0] is template
    assert router.match("GET", "/a/b/d")[0] is deep
    assert router.match("GET", "/elsewhere")[0] is root


def test_bad_or_duplicate_mounts_are_refused():
    with pytest.raises(ValueError, match="trailing slash"):
        Route("m", "/app/", ["GET"], "wsgi", prefix=True)
    router = _router(Route("m", "/app", ["GET"], "wsgi", prefix=True))
    with pytest.raises(ValueError, match="already mounted"):
        router.add(Route("n", "/app", ["GET"], "wsgi", prefix=True))


def test_removed_routes_answer_no_more_and_others_stay():
    router = Router()
    static = Route("s", "/a", ["GET"], "svc")
    template = Route("t", "/c/{id}", ["GET"], "svc")
    other = Route("o", "/c/{id}", ["POST"], "svc")
    mount = Route("m", "/app", ["GET"], "svc", prefix=True)
    for route in (static, template, other, mount):
        router.add(route)
    for route in (static, template, mount):
        router.remove(route)
    for path in ("/a", "/app/x"):
        with pytest.raises(NotFound):
            router.match("GET", path)
    with pytest.raises(MethodNotAllowed):
        router.match("GET", "/c/1")
    assert router.match("POST", "/c/1") == (other, {"id": "1"})
    router.add(Route("s2", "/a", ["GET"], "svc"))  # the path is free again
    assert router.routes == [other, router.routes[-1]]
