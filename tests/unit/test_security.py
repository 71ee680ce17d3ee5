"""Basic Auth and API key definitions, and authenticate(): who the caller is."""

from base64 import b64encode

import pytest

from broker.errors import Forbidden, Unauthorized
from broker.security.auth import APIKey, BasicAuth
from broker.security.credentials import Credentials, authenticate
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


# -- authenticate(): the one way every edge says who the caller is ---------------------------

def _node_definitions():
    return {"admin": BasicAuth("admin", "admin", "s3cret"), "apps": APIKey("apps", "k3y"),
            "ops": APIKey("ops", "0ps", header="X-Ops-Key", caller="ops-team")}


@pytest.mark.parametrize("credentials, name, caller", [
    (Credentials(_basic("admin", "s3cret")), "admin", "admin"),
    (Credentials({"x-api-key": "k3y"}), "apps", "apps"),
    (Credentials({"authorization": "Bearer k3y"}), "apps", "apps"),
    (Credentials({"authorization": "bearer   k3y "}), "apps", "apps"),
    (Credentials({}, token="k3y"), "apps", "apps"),
    (Credentials({"x-ops-key": "0ps"}), "ops", "ops-team"),
    (Credentials({}, token="0ps"), "ops", "ops-team"),
])
def test_several_definitions_the_one_accepting_names_the_caller(credentials, name, caller):
    """Basic, an API key in its header, as a bearer token or as ``?token=``: the definition
    that accepts is answered, and only definitions the credentials are for are asked."""
    definitions = _node_definitions()
    found = authenticate(definitions, credentials)
    assert (found.name, found.caller) == (name, caller)
    assert found.counters == {"accepted": 1, "rejected": 0}
    assert definitions["admin"].counters["rejected"] == 0  # never asked about an API key


def test_one_definition_is_asked_whatever_comes_and_answers_with_its_challenge():
    definition = APIKey("apps", "k3y")
    assert authenticate(definition, Request(headers={"x-api-key": "k3y"})).caller == "apps"
    assert authenticate(definition, Credentials({"authorization": "Bearer k3y"})) is definition
    for credentials in (Credentials({}), Credentials(_basic("admin", "s3cret")),
                        Credentials({"authorization": "Bearer nope"})):
        with pytest.raises(Unauthorized) as caught:
            authenticate(definition, credentials)
        assert caught.value.message == Unauthorized.default_message
        assert caught.value.headers == {"WWW-Authenticate": 'APIKey header="X-API-Key"'}
    assert definition.counters == {"accepted": 2, "rejected": 3}


@pytest.mark.parametrize("credentials", [
    Credentials(_basic("admin", "wrong")),
    Credentials({"x-api-key": "nope"}),
    Credentials({"authorization": "Bearer nope"}),
    Credentials({}, token="nope"),
    Credentials({"authorization": "Digest abc"}),     # a scheme no definition takes
    Credentials({"x-api-key": ""}),
])
def test_wrong_credentials_get_the_uniform_401_never_anonymous(credentials):
    with pytest.raises(Unauthorized) as caught:
        authenticate(_node_definitions(), credentials, anonymous=True)
    assert caught.value.message == Unauthorized.default_message


def test_no_credentials_are_anonymous_only_where_allowed():
    assert authenticate(_node_definitions(), Credentials({"accept": "*/*"}), anonymous=True) is None
    with pytest.raises(Unauthorized):
        authenticate(_node_definitions(), Credentials({}))


def test_a_definition_not_admitted_is_refused_naming_it():
    """Right credentials of a definition not admitted here: 403 naming it; wrong ones stay 401."""
    definitions = _node_definitions()
    with pytest.raises(Forbidden) as caught:
        authenticate(definitions, Credentials({"x-api-key": "k3y"}), admitted={"admin"},
                     refusal='"{name}" may not come in')
    assert caught.value.message == '"apps" may not come in'
    with pytest.raises(Unauthorized):
        authenticate(definitions, Credentials({"x-api-key": "nope"}), admitted={"admin"})
    assert authenticate(definitions, Credentials(_basic("admin", "s3cret")),
                        admitted={"admin"}).name == "admin"


def test_the_mapping_is_read_at_each_call():
    """A live ``{name: definition}``: a definition replaced while the node runs counts at once."""
    definitions = _node_definitions()
    credentials = Credentials({"x-api-key": "new"})
    with pytest.raises(Unauthorized):
        authenticate(definitions, credentials)
    definitions["apps"] = APIKey("apps", "new")
    assert authenticate(definitions, credentials).name == "apps"


def test_credential_headers_are_those_a_definition_reads():
    assert BasicAuth("a", "u", "p").credential_headers == {"authorization"}
    assert APIKey("k", "s", header="X-Token").credential_headers == {"authorization", "x-token"}
