"""The ``jwt`` security definition: callers present a signed token (``Authorization: Bearer``).

On HTTP in the header; on the WebSocket handshake in the header or ``?token=``; in AMQP
message headers (``authorization``); in a ZeroMQ credentials frame.  The token is checked by a
:class:`~broker.security.tokens.TokenVerifier` (the node's own, when the definition names no
key of its own); the caller is a :class:`~broker.security.roles.Principal` named by ``sub``
with the token's ``roles``.
"""

from broker.security.auth import SecurityDefinition, bearer_of
from broker.security.roles import Principal
from broker.security.tokens import InvalidToken

__all__ = ["JWTDefinition"]

_PRINCIPAL = "\x00principal"  # where a verified token's claims keep their caller


class JWTDefinition(SecurityDefinition):
    """Accepts bearer JWTs the ``verifier`` accepts.

    :ivar caller: the caller of the last token accepted (read it right after
        ``authenticate``, as :func:`~broker.security.credentials.authenticate`'s callers do).
    """

    type = "jwt"

    def __init__(self, name, verifier, roles=None):
        super().__init__(name)
        self.verifier = verifier
        self.caller = None
        self.challenge = 'Bearer realm="broker"'
        self.scheme = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        self.extra_roles = frozenset(roles or ())

    @property
    def usable(self):
        return True

    def offers(self, credentials):
        token = bearer_of(credentials)
        return bool(token) and token.count(".") == 2

    def authenticate(self, credentials):
        header = credentials.headers.get("authorization")
        token = header[7:] if header is not None and header[:7] == "Bearer " \
            else bearer_of(credentials)
        if not token:
            raise self._reject("no bearer token", credentials)
        try:
            claims = self.verifier.verify(token)
        except InvalidToken as exc:
            raise self._reject(f"token refused: {exc}", credentials) from None
        caller = claims.get(_PRINCIPAL)
        if caller is None:
            caller = claims[_PRINCIPAL] = Principal(claims["sub"],
                                                    (*claims.get("roles", ()), *self.extra_roles))
        self.counters["accepted"] += 1
        self.caller = caller
        return caller

    def __repr__(self):
        return f"JWTDefinition({self.name!r})"
