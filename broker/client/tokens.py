"""Verify the broker's tokens in any Python program: one login for Django, Flask and the broker.

The broker issues tokens at ``POST /broker/auth/token`` (``auth.tokens`` in its config);
a web app holding the same verification key (the HMAC secret, or the public key of the
broker's private key) trusts them as the broker does::

    from broker.client.tokens import TokenVerifier
    verifier = TokenVerifier(secret=os.environ["BROKER_TOKEN_SECRET"], issuer="broker",
                             audience="my-system")
    user = verifier.verify(token)        # TokenUser("alice", roles={"reader"}) or InvalidToken

Django: ``broker.client.django.BrokerTokenMiddleware`` (``settings.BROKER_TOKENS``); Flask:
``broker.client.flask.token_required``.  The rules are the broker's: an algorithm allow-list
of one key family (never ``none``), ``exp``/``iat``/``sub``/``jti`` required, ``iss`` and
``aud`` checked when given, a clock-skew ``leeway``, refresh tokens refused.  A token revoked
at the broker is refused here only if ``revoked(jti)`` says so (give it one reading the same
Redis, or keep ``ttl`` short).  Needs PyJWT (``pip install broker-client[tokens]``).
"""

import jwt

__all__ = ["InvalidToken", "TokenUser", "TokenVerifier", "bearer_token"]

_HMAC = {"HS256", "HS384", "HS512"}


class InvalidToken(Exception):
    """The token is not accepted; the text says why (for your log, not for the caller)."""


class TokenUser(str):
    """The token's subject (a ``str``) with its ``roles`` and ``claims``."""

    def __new__(cls, subject, roles=(), claims=None):
        user = super().__new__(cls, subject)
        user.roles = frozenset(roles)
        user.claims = dict(claims or {})
        return user

    def has_role(self, role):
        return role in self.roles


def bearer_token(authorization):
    """The token in an ``Authorization: Bearer <token>`` header value, or None."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


class TokenVerifier:
    """Checks the broker's tokens.

    :param secret: the HMAC secret (``auth.tokens.secret``), or
    :param public_key: the PEM public key matching ``auth.tokens.private_key``.
    :param algorithms: the allow-list (default: HS256 with a secret, RS256 with a public key).
    :param revoked: ``callable(jti) -> bool``, or None.
    """

    def __init__(self, *, secret=None, public_key=None, algorithms=None, issuer="broker",
                 audience=None, leeway=30.0, revoked=None):
        if bool(secret) == bool(public_key):
            raise ValueError("give either secret (HS*) or public_key (RS*/ES*/EdDSA)")
        algorithms = list(algorithms or (["HS256"] if secret else ["RS256"]))
        if "none" in algorithms or any((a in _HMAC) != bool(secret) for a in algorithms):
            raise ValueError("algorithms: one key family only, matching the key; never none")
        self._key, self.algorithms = secret or public_key, algorithms
        self.issuer, self.audience, self.leeway, self.revoked = issuer, audience, leeway, revoked

    def verify(self, token):
        """The :class:`TokenUser` of a good access token; :class:`InvalidToken` otherwise."""
        try:
            claims = jwt.decode(token, self._key, algorithms=self.algorithms, issuer=self.issuer,
                                audience=self.audience, leeway=self.leeway,
                                options={"require": ["exp", "iat", "sub", "jti"],
                                         "verify_aud": self.audience is not None,
                                         "verify_iss": self.issuer is not None})
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error) or type(error).__name__) from None
        if claims.get("typ", "access") != "access":
            raise InvalidToken("not an access token")
        if self.revoked is not None and self.revoked(claims["jti"]):
            raise InvalidToken("revoked")
        return TokenUser(claims["sub"], claims.get("roles") or (), claims)
