"""Plain WSGI apps: close() accounting, the legacy write(), filters."""

import json
import threading

_lock = threading.Lock()
closed = {"count": 0}


class _Body:
    """An iterable with close(), counted."""

    def __init__(self, parts, fail_after=None):
        self.parts, self.fail_after = parts, fail_after

    def __iter__(self):
        for n, part in enumerate(self.parts):
            if self.fail_after is not None and n == self.fail_after:
                raise RuntimeError("failed mid-body on purpose")
            yield part

    def close(self):
        with _lock:
            closed["count"] += 1


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/closed":
        body = json.dumps(closed).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path.startswith("/path/"):
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"PATH_INFO": path}).encode()]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return _Body([b"then ", b"iterated"])
    if path == "/fail-before":
        return _Body([b"never"], fail_after=0)  # no start_response: fails on first part
    if path == "/fail-mid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Body([b"y" * 70000, b"z" * 70000], fail_after=1)
    if path == "/environ":
        keys = ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REQUEST_METHOD", "SERVER_PROTOCOL",
                "CONTENT_TYPE", "CONTENT_LENGTH", "REMOTE_ADDR", "HTTP_X_CUSTOM", "HTTP_X_USER_ID",
                "REMOTE_USER")
        info = {k: environ.get(k) for k in keys}
        info["input"] = environ["wsgi.input"].read().decode("latin-1")
        info["multithread"] = environ["wsgi.multithread"]
        start_response("200 OK", [("Content-Type", "application/json")])
        return _Body([json.dumps(info).encode()])
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return _Body([b"not here"])


def block_admin(environ):
    """A request filter: /admin/... is refused before the app runs."""
    if environ["PATH_INFO"].startswith("/admin"):
        return "403 Forbidden", [("Content-Type", "text/plain")], b"blocked by filter"
    return None


def tag_response(environ, status, headers):
    """A response filter: every answer says it was filtered."""
    return status, headers + [("X-Filtered", "yes")]
