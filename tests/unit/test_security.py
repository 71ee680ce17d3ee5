"""Basic Auth and API key definitions."""

from base64 import b64encode

import pytest

from broker.errors import Unauthorized
from broker.security.auth import APIKey, BasicAuth
from broker.services.context import Request


def _basic(user, password):
    return {"authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_accepts_right_credentials():
    """The right username and password give the caller's identity."""
    definition = BasicAuth("admin", "admin", "s3cret")
    assert definition.authenticate(Request(headers=_basic("admin", "s3cret"))) == "admin"
    assert definition.counters["accepted"] == 1


@pytest.mark.parametrize("headers", [
    {},
    _basic("admin", "wrong"),
    _basic("other", "s3cret"),
    {"authorization": "Basic !!!notbase64"},
    {"authorization": "Bearer abc"},
    {"authorization": "Basic " + b64encode(b"admins3cret").decode()},
])
def test_basic_rejects_with_one_uniform_answer(headers):
    """Whatever is wrong, the caller gets the same 401 message and a challenge."""
    definition = BasicAuth("admin", "admin", "s3cret", realm="r")
    with pytest.raises(Unauthorized) as caught:
        definition.authenticate(Request(headers=headers))
    assert caught.value.message == Unauthorized.default_message
    assert caught.value.headers == {"WWW-Authenticate": 'Basic realm="r"'}
    assert definition.counters["rejected"] == 1


def test_basic_without_password_accepts_nobody():
    """No default passwords: an empty secret never matches, even an empty one."""
    definition = BasicAuth("admin", "admin", "")
    assert not definition.usable
    with pytest.raises(Unauthorized):
        definition.authenticate(Request(headers=_basic("admin", "")))


def test_secrets_do_not_appear_in_repr():
    """A definition's repr never shows its secret."""
    assert "s3cret" not in repr(BasicAuth("a", "u", "s3cret"))
    assert "k3y" not in repr(APIKey("a", "k3y"))


def test_apikey_accepts_right_key_in_configured_header():
    """The key is read from the configured header, case-insensitively."""
    definition = APIKey("apps", "k3y", header="X-Token", caller="django")
    assert definition.authenticate(Request(headers={"x-token": "k3y"})) == "django"


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "nope"}, {"x-other": "k3y"}])
def test_apikey_rejects(headers):
    """A missing or wrong key is a 401 with a challenge naming the header."""
    with pytest.raises(Unauthorized) as caught:
        APIKey("apps", "k3y").authenticate(Request(headers=headers))
    assert caught.value.headers["WWW-Authenticate"] == 'APIKey header="X-API-Key"'


def test_apikey_without_key_accepts_nobody():
    """An empty key accepts nobody."""
    definition = APIKey("apps", "")
    assert not definition.usable
    with pytest.raises(Unauthorized):
        definition.authenticate(Request(headers={"x-api-key": ""}))
