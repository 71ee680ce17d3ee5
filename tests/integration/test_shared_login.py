"""One login for the broker, Django and Flask: a token from the broker's POST /broker/auth/token
is trusted by a Django view (BrokerTokenMiddleware) and a Flask view (token_required) holding
the same key, with the same rules (expired, foreign and refresh tokens refused)."""

import base64
import json
import os
import subprocess
import sys
import textwrap

import jwt
import pytest

from tests.integration.broker_process import ROOT, BrokerProcess

SECRET = "shared-login-secret-6a0c9d1e2f3b4a5c6d7e"

CONFIG = f'''
name: shared-login
auth:
  tokens: {{secret: "{SECRET}", issuer: broker, audience: shop, ttl: 5m, refresh_ttl: 1h}}
security:
  - {{name: people, type: basic_auth, username: alice, password: pw, roles: [staff]}}
'''

DJANGO_CHECK = '''
import json, sys
import django
from django.conf import settings

settings.configure(
    DEBUG=False, SECRET_KEY="test-only", ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"],
    MIDDLEWARE=["broker.client.django.BrokerTokenMiddleware"],
    BROKER_TOKENS={"secret": sys.argv[1], "issuer": "broker", "audience": "shop"})
django.setup()

from django.http import JsonResponse
from django.test import Client
from django.urls import path


def me(request):
    user = request.broker_user
    if user is None:
        return JsonResponse({"user": None}, status=401)
    return JsonResponse({"user": user, "roles": sorted(user.roles)})


urlpatterns = [path("me", me)]
client = Client()
answers = {}
for name, token in json.loads(sys.argv[2]).items():
    response = client.get("/me", HTTP_AUTHORIZATION=f"Bearer {token}")
    answers[name] = [response.status_code, json.loads(response.content)]
print(json.dumps(answers))
'''


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shared-login")
    (folder / "broker.yaml").write_text(textwrap.dedent(CONFIG))
    process = BrokerProcess(config=folder / "broker.yaml").start()
    try:
        basic = "Basic " + base64.b64encode(b"alice:pw").decode()
        status, _, body = process.request("POST", "/broker/auth/token",
                                          headers={"Authorization": basic})
        assert status == 200, body
        answer = json.loads(body)
    finally:
        process.stop()
    claims = jwt.decode(answer["access_token"], options={"verify_signature": False})
    expired = jwt.encode({**claims, "exp": claims["iat"] - 3600, "iat": claims["iat"] - 7200},
                         SECRET, algorithm="HS256")
    foreign = jwt.encode(claims, "another-secret-of-32-bytes-or-more!!", algorithm="HS256")
    return {"good": answer["access_token"], "refresh": answer["refresh_token"],
            "expired": expired, "foreign": foreign}


def test_a_django_view_accepts_the_brokers_token(tokens):
    pytest.importorskip("django")
    result = subprocess.run([sys.executable, "-c", DJANGO_CHECK, SECRET, json.dumps(tokens)],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers["good"] == [200, {"user": "alice", "roles": ["staff"]}]
    for name in ("refresh", "expired", "foreign"):
        assert answers[name][0] == 401, name


def test_a_flask_view_accepts_the_brokers_token(tokens):
    flask = pytest.importorskip("flask")
    from broker.client.flask import token_required
    from broker.client.tokens import TokenVerifier

    app = flask.Flask("shared-login")
    verifier = TokenVerifier(secret=SECRET, issuer="broker", audience="shop")

    @app.get("/me")
    @token_required(verifier)
    def me():
        return {"user": flask.g.broker_user, "roles": sorted(flask.g.broker_user.roles)}

    @app.get("/staff-only")
    @token_required(verifier, role="admin")
    def admin():
        return {}

    client = app.test_client()
    good = client.get("/me", headers={"Authorization": f"Bearer {tokens['good']}"})
    assert (good.status_code, good.get_json()) == (200, {"user": "alice", "roles": ["staff"]})
    assert client.get("/staff-only", headers={"Authorization": f"Bearer {tokens['good']}"}) \
        .status_code == 403
    for name in ("refresh", "expired", "foreign"):
        assert client.get("/me", headers={"Authorization": f"Bearer {tokens[name]}"}) \
            .status_code == 401, name
    assert client.get("/me").status_code == 401
