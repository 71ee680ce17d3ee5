"""Tokens: issued by POST /broker/auth/token for any definition's credentials, accepted by a
``jwt`` definition on HTTP; expiry on a driven clock, revocation, refresh, and the algorithm
attacks (``none``, HS/RS confusion, a foreign key) refused."""

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from twisted.internet import task

from broker.config import ConfigError
from broker.security.credentials import Credentials
from broker.security.tokens import InvalidToken, MemoryRevocations, TokenIssuer, TokenVerifier
from tests.unit.security_support import SECRET, Node, basic, bearer

SERVICES = '''
from broker import Service


class WhoAmI(Service):
    name = "test.whoami"

    def handle(self):
        caller = self.request.caller
        self.response.payload = {"caller": caller,
                                 "roles": sorted(getattr(caller, "roles", ()))}
'''

CONFIG = f'''
services: {{paths: [services.py]}}
auth:
  tokens:
    secret: "{SECRET}"
    issuer: test-broker
    audience: test-system
    ttl: 60s
    refresh_ttl: 1h
    leeway: 5s
security:
  - {{name: people, type: basic_auth, username: alice, password: pw, roles: [reader]}}
  - {{name: apps, type: apikey, key: k3y, caller: billing}}
  - {{name: tokens, type: jwt}}
channels:
  - {{name: who, type: http, path: /who, service: test.whoami, methods: [GET], security: tokens}}
'''


@pytest.fixture
def node(tmp_path):
    return Node(tmp_path, CONFIG, SERVICES)


def _claims(token):
    return jwt.decode(token, options={"verify_signature": False})


def test_any_definitions_credentials_get_a_token_the_jwt_definition_accepts(node):
    for headers, caller, roles in ((basic("alice", "pw"), "alice", ["reader"]),
                                   ({"X-API-Key": "k3y"}, "billing", [])):
        answer = node.token(headers)
        assert answer["token_type"] == "Bearer" and answer["expires_in"] == 60
        claims = _claims(answer["access_token"])
        assert (claims["sub"], claims["roles"], claims["iss"], claims["aud"]) == \
            (caller, roles, "test-broker", "test-system")
        assert claims["exp"] - claims["iat"] == 60 and len(claims["jti"]) == 32
        status, _, body = node.request("GET", "/who", bearer(answer["access_token"]))
        assert (status, body) == (200, {"caller": caller, "roles": roles})


def test_wrong_credentials_get_no_token_and_back_off_per_address(node):
    for _ in range(5):
        status, _, body = node.request("POST", "/broker/auth/token", basic("alice", "nope"))
        assert status == 401 and "access_token" not in body
    status, headers, _ = node.request("POST", "/broker/auth/token", basic("alice", "pw"))
    assert status == 429 and headers["Retry-After"] == "1"
    # another address is not held back
    assert node.request("POST", "/broker/auth/token", basic("alice", "pw"), peer="10.0.0.9")[0] == 200
    node.clock.advance(1)
    assert node.request("POST", "/broker/auth/token", basic("alice", "pw"))[0] == 200


def test_a_token_expires_on_the_clock_with_the_leeway(node):
    token = node.token(basic("alice", "pw"))["access_token"]
    assert node.request("GET", "/who", bearer(token))[0] == 200
    node.clock.advance(60 + 5)  # exp + leeway: still good
    assert node.request("GET", "/who", bearer(token))[0] == 200
    node.clock.advance(1)
    status, headers, body = node.request("GET", "/who", bearer(token))
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert "expired" not in json.dumps(body)  # the reason stays in the log


def test_a_revoked_token_is_refused_even_when_cached(node):
    token = node.token(basic("alice", "pw"))["access_token"]
    assert node.request("GET", "/who", bearer(token))[0] == 200
    status, _, body = node.request("POST", "/broker/auth/revoke", body={"token": token})
    assert status == 200 and body["jti"] == _claims(token)["jti"]
    assert node.request("GET", "/who", bearer(token))[0] == 401


def test_refresh_gives_a_new_pair_and_the_old_refresh_token_is_spent(node):
    first = node.token(basic("alice", "pw"))
    # a refresh token is not an access token
    assert node.request("GET", "/who", bearer(first["refresh_token"]))[0] == 401
    node.clock.advance(120)  # the access token is gone, the refresh token is not
    status, _, second = node.request("POST", "/broker/auth/refresh",
                                     body={"refresh_token": first["refresh_token"]})
    assert status == 200
    assert _claims(second["access_token"])["roles"] == ["reader"]
    assert node.request("GET", "/who", bearer(second["access_token"]))[0] == 200
    again = node.request("POST", "/broker/auth/refresh", body={"refresh_token": first["refresh_token"]})
    assert again[0] == 401
    status, _, body = node.request("POST", "/broker/auth/refresh", body={"token": "x"})
    assert status == 400 and body["errors"][0]["field"] == "refresh_token"


def test_a_token_cannot_log_in_for_another_token(node):
    token = node.token(basic("alice", "pw"))["access_token"]
    assert node.request("POST", "/broker/auth/token", bearer(token))[0] == 401


def _forged(node, **overrides):
    claims = {"sub": "mallory", "iat": int(node.clock.seconds()), "exp": int(node.clock.seconds()) + 60,
              "jti": "f" * 32, "iss": "test-broker", "aud": "test-system", "roles": ["admin"]}
    claims.update(overrides)
    return claims


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_unsigned_and_foreign_tokens_are_refused(node):
    claims = _forged(node)
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for token in (f"{header}.{body}.",
                  jwt.encode(claims, "another-secret-of-at-least-32-bytes!!", algorithm="HS256"),
                  jwt.encode(claims, SECRET, algorithm="HS512"),  # not in the allow-list
                  jwt.encode({**claims, "aud": "other"}, SECRET, algorithm="HS256"),
                  jwt.encode({**claims, "iss": "other"}, SECRET, algorithm="HS256"),
                  jwt.encode({k: v for k, v in claims.items() if k != "exp"}, SECRET, algorithm="HS256")):
        assert node.request("GET", "/who", bearer(token))[0] == 401, token
    good = jwt.encode(claims, SECRET, algorithm="HS256")
    assert node.request("GET", "/who", bearer(good))[0] == 200


def _rsa():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def test_hs_rs_confusion_is_refused():
    """A token signed with HS256 using the RSA public key as the secret must not pass a verifier
    holding that public key (the classic confusion); nor can a verifier mix the families."""
    private, public = _rsa()
    clock = task.Clock()
    clock.advance(1_800_000_000)
    verifier = TokenVerifier(["RS256"], public_key=public, clock=clock)
    issuer = TokenIssuer("RS256", private_key=private, issuer="b", clock=clock)
    token, _ = issuer.issue("alice", ["reader"])
    assert verifier.verify(token)["sub"] == "alice"
    now = int(clock.seconds())
    claims = {"sub": "mallory", "iat": now, "exp": now + 60, "jti": "x" * 32}
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    signature = base64.urlsafe_b64encode(
        hmac.new(public.encode(), header + b"." + payload, hashlib.sha256).digest()).rstrip(b"=")
    forged = b".".join((header, payload, signature)).decode()
    with pytest.raises(InvalidToken, match="allow-list"):
        verifier.verify(forged)
    with pytest.raises(ValueError, match="cannot be mixed"):
        TokenVerifier(["RS256", "HS256"], public_key=public, clock=clock)
    with pytest.raises(ValueError, match="not allowed"):
        TokenVerifier(["none"], secret=SECRET, clock=clock)


def test_eddsa_tokens_and_the_verification_cache():
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    clock = task.Clock()
    clock.advance(1_800_000_000)
    revocations = MemoryRevocations(clock)
    verifier = TokenVerifier(["EdDSA"], public_key=public, clock=clock, revocations=revocations,
                             cache_size=2)
    issuer = TokenIssuer("EdDSA", private_key=private, issuer="b", ttl=60, clock=clock)
    tokens = [issuer.issue(f"user{i}")[0] for i in range(3)]
    for _ in range(3):
        assert verifier.verify(tokens[0])["sub"] == "user0"
    assert (verifier.counters["verified"], verifier.counters["cache_hits"]) == (1, 2)
    for token in tokens:
        verifier.verify(token)
    assert len(verifier._cache) == 2  # bounded
    claims = verifier.verify(tokens[2])
    revocations.revoke(claims["jti"], claims["exp"])
    with pytest.raises(InvalidToken, match="revoked"):
        verifier.verify(tokens[2])
    clock.advance(200)
    revocations.prune()
    assert len(revocations) == 0


def test_a_jwt_definition_with_a_foreign_key_checks_its_own_algorithms(tmp_path):
    private, public = _rsa()
    config = f'''
    services: {{paths: [services.py]}}
    security:
      - name: partner
        type: jwt
        algorithms: [RS256]
        issuer: partner-idp
        public_key: {json.dumps(public)}
    channels:
      - {{name: who, type: http, path: /who, service: test.whoami, methods: [GET], security: partner}}
    '''
    node = Node(tmp_path, config, SERVICES)
    now = int(node.clock.seconds())
    claims = {"sub": "p1", "iat": now, "exp": now + 60, "jti": "j" * 32, "iss": "partner-idp",
              "roles": ["x"]}
    status, _, body = node.request("GET", "/who", bearer(jwt.encode(claims, private, algorithm="RS256")))
    assert (status, body) == (200, {"caller": "p1", "roles": ["x"]})
    assert node.request("GET", "/who", bearer(jwt.encode({**claims, "iss": "me"}, private,
                                                         algorithm="RS256")))[0] == 401


def test_config_mistakes_name_the_key(tmp_path):
    for text, match in (
            ("security: [{name: t, type: jwt}]", "auth.tokens is not configured"),
            ('auth: {tokens: {secret: short}}', "32 bytes"),
            ('auth: {tokens: {algorithm: RS256}}', "private_key"),
            ('security: [{name: t, type: jwt, algorithms: [none], secret: "' + SECRET + '"}]',
             "not allowed")):
        (tmp_path / "broker.yaml").write_text(text)
        from broker.node import build_node
        with pytest.raises(ConfigError, match=match):
            build_node(str(tmp_path / "broker.yaml"))


def test_the_jwt_definition_offers_only_for_token_shaped_bearers(node):
    definition = node.node.security["tokens"]
    assert definition.offers(Credentials({"authorization": "Bearer a.b.c"}))
    assert not definition.offers(Credentials({"authorization": "Bearer apikey"}))
    assert not definition.offers(Credentials({"authorization": "Basic eDp5"}))


def test_shared_stores_are_built_from_redis_urls(tmp_path):
    """auth.revocation.redis and auth.rate_limits.redis make the node's one revocation store
    and one set of buckets Redis-backed (tests/integration/test_rate_limit_redis.py runs them)."""
    from broker.node import build_node
    from broker.redis.ratelimit import SharedBuckets
    from broker.redis.revocations import RedisRevocations

    (tmp_path / "broker.yaml").write_text(f'''
auth:
  tokens: {{secret: "{SECRET}"}}
  revocation: {{redis: "redis://127.0.0.1:6379/0"}}
  rate_limits: {{redis: "redis://127.0.0.1:6379/0", sync_interval: 250ms}}
security: [{{name: t, type: jwt}}]
''')
    node = build_node(str(tmp_path / "broker.yaml"))
    auth = node.components[("feature", "auth")].value
    assert isinstance(auth.revocations, RedisRevocations)
    assert isinstance(auth.buckets, SharedBuckets) and auth.buckets.interval == 0.25
    assert auth.verifier.revocations is auth.revocations
    assert node.security["t"].verifier is auth.verifier
