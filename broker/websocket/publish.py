"""HTTP edges of pub/sub: ``POST /broker/publish/{topic}`` and the ``/demo/live`` page."""

from twisted.logger import Logger

from broker.errors import (BadRequest, BrokerError, Forbidden, ServiceUnavailable, Unauthorized,
                           error_body)
from broker.http.protocol import HTTPResponse
from broker.http.router import RouteDoc
from broker.jsonfast import JSONInputError, decode_json
from broker.pubsub.hub import PublishError
from broker.pubsub.topics import MAX_TOPIC_LENGTH, OWNED_PREFIX, TopicError, check_topic
from broker.simpleio import check_content_type, parse_query

__all__ = ["HTTPPublisher", "live_page_routes", "publish_doc"]

log = Logger()


def _error(error, cid):
    headers = [("Content-Type", "application/json"), ("X-Broker-CID", cid), *error.headers.items()]
    return HTTPResponse(error.status, headers, error_body(error, cid))


class HTTPPublisher:
    """Publishes a JSON body to the topic in the path; answers ``{"msg_id", "topic"}``.

    The caller is identified like a WebSocket client (Basic, API key, bearer
    token or ``?token=``); anonymous callers may publish where
    ``pubsub.permissions.anonymous`` allows.
    """

    def __init__(self, hub, access):
        self.hub = hub
        self.access = access

    def __call__(self, http_request, cid, params):
        topic = params["topic"]
        try:
            query = parse_query(http_request.query) if http_request.query else {}
            grant = self.access.identify(http_request.headers, query, http_request.peer, cid)
            if not grant.may_publish(topic) or topic.startswith(OWNED_PREFIX):
                check_topic(topic)
                self.access.counters["denied"] += 1
                if grant is self.access.anonymous:
                    raise Unauthorized(f'credentials are needed to publish to "{topic}"')
                raise Forbidden(f'not allowed to publish to "{topic}"')
            body = http_request.body.strip()
            if body:
                check_content_type("json", http_request.headers.get("content-type", ""))
                try:
                    decode_json(body)
                except JSONInputError as error:
                    raise BadRequest(f"the body is not JSON: {error.reason}", errors=error.errors
                                     or [{"field": "body", "problem": "is not JSON"}]) from None
            data_json = body.decode("utf-8-sig") if body else "null"
            result = self.hub.publish_json(topic, data_json, publisher=grant.name)
        except (PublishError, TopicError) as error:
            field, problem = ("topic", str(error)) if isinstance(error, TopicError) \
                else (error.field, error.problem)
            return _error(BadRequest(str(error), errors=[{"field": field, "problem": problem}]), cid)
        except BrokerError as error:
            return _error(error, cid)
        if isinstance(result, str):
            return self._answer(result, topic, cid)
        return result.addCallbacks(self._answer, self._failed, (topic, cid), None, (cid,))

    @staticmethod
    def _answer(msg_id, topic, cid):
        body = b'{"msg_id":"%s","topic":"%s"}' % (msg_id.encode(), topic.encode())
        return HTTPResponse(200, [("Content-Type", "application/json"), ("X-Broker-CID", cid)], body)

    def _failed(self, failure, cid):
        if failure.check(PublishError):
            error = failure.value
            return _error(BadRequest(str(error), errors=[{"field": error.field,
                                                          "problem": error.problem}]), cid)
        log.failure("publish failed (cid {cid})", failure, cid=cid)
        return _error(ServiceUnavailable("pub/sub store unavailable"), cid)


def publish_doc(access):
    """How ``POST /broker/publish/{topic}`` is documented, for the callers ``access`` knows."""
    anonymous = (None,) if access.anonymous.publish.patterns else ()
    return RouteDoc(
        "Publish the JSON body to a topic", {200: ("Published", {"application/json": {
            "type": "object", "required": ["msg_id", "topic"], "additionalProperties": False,
            "properties": {"msg_id": {"type": "string"}, "topic": {"type": "string"}}}})},
        description="Any JSON (none: `null`) goes to the topic's subscribers. Anonymous callers "
                    "may publish where `pubsub.permissions.anonymous` allows (401 elsewhere); a "
                    "caller whose credentials are not allowed the topic gets a 403.",
        errors=(400, 401, 403, 415), body={"application/json": {}}, tag="pubsub",
        parameters=[{"name": "topic", "in": "path", "required": True, "schema": {
            "type": "string", "maxLength": MAX_TOPIC_LENGTH,
            "pattern": r"^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$"}}],
        security=anonymous + tuple(access.definitions.values()))


_LIVE_PAGE = RouteDoc("A page showing the demo.# topics live", {200: ("The page", {
    "text/html": {"type": "string"}})}, tag="demo")
_LIVE_SCRIPT = RouteDoc("The live page's script", {200: ("The script", {
    "text/javascript": {"type": "string"}})}, tag="demo")

_LIVE_HTML = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>broker - live</title>
<style>body{font-family:system-ui,sans-serif;margin:2em}#log li{font-family:monospace}</style>
</head><body>
<h1>Live messages</h1>
<p>Topic <code id="topic"></code> &mdash; status: <span id="status">connecting</span></p>
<ol id="log"></ol>
<script src="/demo/live.js"></script>
</body></html>
"""

_LIVE_JS = b"""(function () {
  var params = new URLSearchParams(location.search);
  var topic = params.get("topic") || "demo.#";
  var token = params.get("token");
  var proto = location.protocol === "https:" ? "wss://" : "ws://";
  var url = proto + location.host + "/ws" + (token ? "?token=" + encodeURIComponent(token) : "");
  var status = document.getElementById("status"), log = document.getElementById("log");
  var last = null, backoff = 500;
  document.getElementById("topic").textContent = topic;
  function connect() {
    var ws = new WebSocket(url);
    ws.onopen = function () {
      backoff = 500;
      var sub = {op: "subscribe", id: 1, topic: topic};
      if (last) { sub.since = last; }
      ws.send(JSON.stringify(sub));
    };
    ws.onmessage = function (event) {
      var frame = JSON.parse(event.data), li = document.createElement("li");
      if (frame.op === "ok" && frame.id === 1) { status.textContent = "subscribed"; return; }
      if (frame.op === "message") {
        last = frame.msg_id;
        li.className = "message";
        li.textContent = frame.published_at + " " + frame.topic + " " + JSON.stringify(frame.data);
      } else if (frame.op === "gap" || frame.op === "error") {
        li.className = frame.op;
        li.textContent = frame.op + ": " + (frame.message || frame.reason || "");
      } else { return; }
      log.appendChild(li);
      while (log.children.length > 200) { log.removeChild(log.firstChild); }
    };
    ws.onclose = function (event) {
      status.textContent = "closed (" + event.code + "), reconnecting";
      setTimeout(connect, backoff); backoff = Math.min(backoff * 2, 10000);
    };
  }
  connect();
})();
"""


def live_page_routes():
    """The ``/demo/live`` page and its script (no inline script: CSP-friendly)."""
    from broker.http.router import Route

    def page(http_request, cid, params):
        return HTTPResponse(200, [("Content-Type", "text/html; charset=utf-8"), ("X-Broker-CID", cid),
                                  ("Content-Security-Policy",
                                   "default-src 'self'; connect-src 'self' ws: wss:; "
                                   "style-src 'self' 'unsafe-inline'")], _LIVE_HTML)

    def script(http_request, cid, params):
        return HTTPResponse(200, [("Content-Type", "text/javascript; charset=utf-8"),
                                  ("X-Broker-CID", cid)], _LIVE_JS)

    return [Route("demo.live", "/demo/live", ("GET",), page, kind="builtin", doc=_LIVE_PAGE),
            Route("demo.live.js", "/demo/live.js", ("GET",), script, kind="builtin", doc=_LIVE_SCRIPT)]
