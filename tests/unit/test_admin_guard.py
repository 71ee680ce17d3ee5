"""``/broker/admin/`` answers only the definition named by ``admin.security``; none named: 403."""

import base64
import textwrap
from types import SimpleNamespace

import pytest

from broker.admin.guard import admin_guard
from broker.config import ConfigError
from broker.errors import Forbidden, Unauthorized
from broker.http.wire import HTTPRequest
from broker.node import build_node
from broker.security.auth import BasicAuth


def _ctx(name, definitions):
    return SimpleNamespace(config=SimpleNamespace(admin=SimpleNamespace(security=name)),
                           security=dict(definitions), definitions=definitions)


def _request(headers):
    return HTTPRequest("GET", "/broker/admin/x", "", "1.1", headers, b"", True, "127.0.0.1", b"")


def _basic(user, password):
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _target(request, cid, params, who):
    return who


def test_guard_passes_the_definitions_caller_and_names_it():
    ctx = _ctx("admin", {"admin": BasicAuth("admin", "ops", "s3cret")})
    guarded = admin_guard(ctx)(_target)
    assert guarded(_request(_basic("ops", "s3cret")), "cid", {}) == "admin:ops"
    with pytest.raises(Unauthorized):
        guarded(_request(_basic("ops", "wrong")), "cid", {})
    with pytest.raises(Unauthorized):
        guarded(_request({}), "cid", {})


def test_a_replaced_definition_decides_at_once():
    definitions = {"admin": BasicAuth("admin", "ops", "old")}
    guarded = admin_guard(_ctx("admin", definitions))(_target)
    definitions["admin"] = BasicAuth("admin", "ops", "new")
    with pytest.raises(Unauthorized):
        guarded(_request(_basic("ops", "old")), "cid", {})
    assert guarded(_request(_basic("ops", "new")), "cid", {}) == "admin:ops"


def test_no_definition_named_serves_nobody():
    guarded = admin_guard(_ctx(None, {}))(_target)
    with pytest.raises(Forbidden, match="admin.security"):
        guarded(_request(_basic("ops", "s3cret")), "cid", {})


def test_an_unknown_definition_is_a_config_error(tmp_path):
    path = tmp_path / "broker.yaml"
    path.write_text(textwrap.dedent("""
        admin: {security: nobody}
        security:
          - {name: ops, type: basic_auth, username: ops, password: x}
    """))
    with pytest.raises(ConfigError, match='admin.security.*no security definition "nobody"'):
        build_node(str(path))
