"""``POST /broker/auth/token``, ``/broker/auth/refresh`` and ``/broker/auth/revoke``.

* ``token``: credentials any login definition accepts (Basic, an API key...) get an access
  token (and a refresh token when ``auth.tokens.refresh_ttl`` is set) naming the caller and its
  roles.  Failed logins from one address back off (429 with ``Retry-After``).
* ``refresh``: ``{"refresh_token": ...}`` gets a new pair; the old refresh token is revoked.
* ``revoke``: ``{"token": ...}`` revokes that token (access or refresh) by its ``jti``.

Answers carry ``Cache-Control: no-store``; a refused token or login is the uniform 401, the
reason in the log.
"""

import json

from twisted.internet import defer
from twisted.logger import Logger

from broker.errors import BadRequest, Unauthorized
from broker.http.app import json_response
from broker.http.router import Route
from broker.security.addresses import client_address
from broker.security.credentials import Credentials, authenticate
from broker.security.tokens import ACCESS, REFRESH, InvalidToken

__all__ = ["TokenEndpoints", "token_routes"]

log = Logger()

_NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


class TokenEndpoints:
    """The three endpoints over one :class:`~broker.auth.feature.Auth`.

    :param definitions: the node's live ``{name: definition}``.
    """

    def __init__(self, auth, definitions):
        self.auth = auth
        self._definitions = definitions

    def login_definitions(self):
        names = self.auth.login
        return {name: d for name, d in self._definitions.items()
                if (name in names if names else getattr(d, "type", None) != "jwt")}

    def token(self, http_request, cid, params):
        credentials = Credentials(http_request.headers, peer=http_request.peer, cid=cid)
        address = str(client_address(credentials, self.auth.trusted_proxies))
        self.auth.backoff.check(address)
        try:
            definition = authenticate(self.login_definitions(), credentials)
        except Unauthorized:
            self.auth.backoff.failed(address)
            log.info("token refused to {address}: no login definition accepted the credentials "
                     "(cid {cid})", address=address, cid=cid)
            raise
        self.auth.backoff.succeeded(address)
        caller = definition.caller
        return self._pair(caller, getattr(caller, "roles", ()), cid,
                          f"login with {definition.name}")

    def refresh(self, http_request, cid, params):
        claims = self._verified(http_request, "refresh_token", REFRESH, cid)
        done = self.auth.revocations.revoke(claims["jti"], claims["exp"])
        answer = self._pair(claims["sub"], claims.get("roles", ()), cid, "refresh")
        if isinstance(done, defer.Deferred):
            return done.addCallback(lambda _: answer)
        return answer

    def revoke(self, http_request, cid, params):
        claims = self._verified(http_request, "token", None, cid)
        log.info("token {jti} of {sub} revoked (cid {cid})", jti=claims["jti"], sub=claims["sub"],
                 cid=cid)
        done = self.auth.revocations.revoke(claims["jti"], claims["exp"])
        answer = json_response(200, {"revoked": True, "jti": claims["jti"]}, cid, _NO_STORE)
        if isinstance(done, defer.Deferred):
            return done.addCallback(lambda _: answer)
        return answer

    def _pair(self, subject, roles, cid, how):
        issuer = self.auth.issuer
        token, claims = issuer.issue(subject, roles)
        answer = {"access_token": token, "token_type": "Bearer", "expires_in": int(issuer.ttl),
                  "roles": claims["roles"]}
        if issuer.refresh_ttl:
            answer["refresh_token"] = issuer.issue(subject, roles, REFRESH)[0]
            answer["refresh_expires_in"] = int(issuer.refresh_ttl)
        log.info("token {jti} issued to {sub} ({how}, cid {cid})", jti=claims["jti"],
                 sub=str(subject), how=how, cid=cid)
        return json_response(200, answer, cid, _NO_STORE)

    def _verified(self, http_request, key, kind, cid):
        try:
            body = json.loads(http_request.body or b"null")
        except ValueError:
            raise BadRequest("The body must be a JSON object") from None
        if not isinstance(body, dict) or not isinstance(body.get(key), str) or not body[key]:
            raise BadRequest(f"{key}: required, a token (string)",
                             errors=[{"field": key, "problem": "required, a token (string)"}])
        verifier = self.auth.verifier
        reasons = []
        for each in ((kind,) if kind else (ACCESS, REFRESH)):
            try:
                return verifier.verify(body[key], each)
            except InvalidToken as exc:
                reasons.append(str(exc))
        log.info("{key} refused: {reason} (cid {cid})", key=key, reason="; ".join(reasons), cid=cid)
        raise Unauthorized(headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def token_routes(auth, definitions):
    endpoints = TokenEndpoints(auth, definitions)
    return [Route("broker.auth.token", "/broker/auth/token", ("POST",), endpoints.token,
                  kind="builtin"),
            Route("broker.auth.refresh", "/broker/auth/refresh", ("POST",), endpoints.refresh,
                  kind="builtin"),
            Route("broker.auth.revoke", "/broker/auth/revoke", ("POST",), endpoints.revoke,
                  kind="builtin")]
