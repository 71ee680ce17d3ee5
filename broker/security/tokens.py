"""Signed tokens (JWT, PyJWT): issued by the node, verified by ``jwt`` definitions.

:class:`TokenVerifier` checks a token: the signature with the configured key, only the
algorithms of the allow-list (never ``none``, never an HMAC algorithm with a public key or the
other way round: one key family per verifier), ``exp``/``nbf`` on the injected clock with a
leeway, ``iss`` and ``aud`` when configured, the kind (an access token is not a refresh
token), and revocation by ``jti``.  A token's signature is checked once: the claims of a good
token are kept in a bounded cache keyed by the token itself, and each later use checks only
the expiry and revocation, which can change.

:class:`TokenIssuer` signs tokens with ``exp``, ``iat``, ``nbf``, ``iss``, ``aud``, ``sub``,
``roles`` and ``jti``.

Revoked ``jti``s live in a :class:`Revocations` store: :class:`MemoryRevocations` here, a
Redis one in :mod:`broker.redis.revocations`; one per node.
"""

import uuid

import jwt

__all__ = ["ACCESS", "REFRESH", "HMAC_ALGORITHMS", "ASYMMETRIC_ALGORITHMS", "InvalidToken",
           "MemoryRevocations", "Revocations", "TokenIssuer", "TokenVerifier", "check_algorithms"]

ACCESS, REFRESH = "access", "refresh"
HMAC_ALGORITHMS = frozenset(("HS256", "HS384", "HS512"))
ASYMMETRIC_ALGORITHMS = frozenset(("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                   "ES256", "ES384", "ES512", "EdDSA"))


class InvalidToken(Exception):
    """A token that is not accepted; the text is the reason, for the log only."""


def check_algorithms(algorithms, secret, public_key):
    """Raise ValueError unless ``algorithms`` is a non-empty allow-list of one key family
    matching the key given (HMAC with ``secret``, asymmetric with ``public_key``)."""
    if not algorithms:
        raise ValueError("algorithms: name at least one")
    unknown = [a for a in algorithms if a not in HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS]
    if unknown:
        raise ValueError(f"algorithms: {', '.join(unknown)} not allowed (allowed: "
                         f"{', '.join(sorted(HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS))})")
    hmac = [a for a in algorithms if a in HMAC_ALGORITHMS]
    if hmac and len(hmac) != len(algorithms):
        raise ValueError("algorithms: HMAC and public-key algorithms cannot be mixed")
    if hmac and not secret:
        raise ValueError("secret: HMAC algorithms need a secret")
    if not hmac and not public_key:
        raise ValueError("public_key: public-key algorithms need a public key (PEM)")
    if hmac and public_key:
        raise ValueError("public_key: not used with HMAC algorithms; give only secret")
    if hmac and len(secret.encode()) < 32:
        raise ValueError("secret: at least 32 bytes for HMAC tokens")


class Revocations:
    """Revoked token ids until their tokens expire; one store per node.

    ``revoke(jti, expires_at)`` may return a Deferred (a shared store); ``is_revoked(jti)``
    answers at once from what this node knows, as does ``jti in revoked`` (the hot path).
    """

    revoked = frozenset()  # a store sets its own mapping of jti -> expiry

    def revoke(self, jti, expires_at):
        raise NotImplementedError

    def is_revoked(self, jti):
        raise NotImplementedError


class MemoryRevocations(Revocations):
    """Revocations kept in this process, pruned as they expire, at most ``max_entries``."""

    def __init__(self, clock, max_entries=100000):
        self._clock = clock
        self.revoked = {}
        self.max_entries = max_entries
        self.counters = {"revoked": 0, "dropped": 0}

    def revoke(self, jti, expires_at):
        self.prune()
        if len(self.revoked) >= self.max_entries:
            # the soonest to expire goes first: bounded, counted
            self.revoked.pop(min(self.revoked, key=self.revoked.get))
            self.counters["dropped"] += 1
        self.revoked[jti] = expires_at
        self.counters["revoked"] += 1

    def add(self, jti, expires_at):
        """Learn a revocation made elsewhere (a shared store's sync)."""
        if jti not in self.revoked:
            if len(self.revoked) >= self.max_entries:
                self.revoked.pop(min(self.revoked, key=self.revoked.get))
                self.counters["dropped"] += 1
            self.revoked[jti] = expires_at

    def is_revoked(self, jti):
        return jti in self.revoked

    def prune(self):
        now = self._clock.seconds()
        for jti in [j for j, until in self.revoked.items() if until < now]:
            del self.revoked[jti]

    def __len__(self):
        return len(self.revoked)


class TokenVerifier:
    """Verifies tokens; :meth:`verify` answers the claims or raises :class:`InvalidToken`.

    :param algorithms: the allow-list (see :func:`check_algorithms`).
    :param secret: the HMAC secret, or None.
    :param public_key: the PEM public key for RS/PS/ES/EdDSA, or None.
    :param issuer: the ``iss`` required, or None.
    :param audience: the ``aud`` required, or None.
    :param leeway: seconds of clock skew allowed on ``exp``/``nbf``/``iat``.
    :param clock: what tells the time (``seconds()``).
    :param revocations: a :class:`Revocations`, or None.
    :param cache_size: how many verified tokens are remembered (0: none).
    """

    def __init__(self, algorithms, *, secret=None, public_key=None, issuer=None, audience=None,
                 leeway=30.0, clock, revocations=None, cache_size=10000):
        check_algorithms(algorithms, secret, public_key)
        self.algorithms = list(algorithms)
        self._key = secret if secret else jwt.algorithms.get_default_algorithms()[
            self.algorithms[0]].prepare_key(public_key)
        self.issuer, self.audience, self.leeway = issuer, audience, leeway
        self._clock = clock
        self.revocations = revocations
        self.cache_size = cache_size
        self._cache = {}
        self.counters = {"verified": 0, "cache_hits": 0, "invalid": 0}

    def verify(self, token, kind=ACCESS):
        """The claims of ``token`` if it is good now, of ``kind`` (access or refresh)."""
        entry = self._cache.get(token)
        if entry is None:
            entry = self._entry(token)
        else:
            self.counters["cache_hits"] += 1
        claims, not_after, not_before, typ, jti = entry
        now = self._clock.seconds()
        if now > not_after:
            self._cache.pop(token, None)
            raise self._invalid("expired")
        if now < not_before:
            raise self._invalid("not valid yet (nbf/iat in the future)")
        if typ != kind:
            raise self._invalid(f"a {typ} token where a {kind} token is needed")
        revocations = self.revocations
        if revocations is not None and jti in revocations.revoked:
            raise self._invalid(f"revoked (jti {jti})")
        return claims

    def _entry(self, token):
        """Verify ``token``'s signature and claims once; what each later use checks, cached."""
        claims = self._decode(token)
        leeway = self.leeway
        entry = (claims, claims["exp"] + leeway,
                 max(claims.get("nbf", 0) if isinstance(claims.get("nbf"), (int, float)) else 0,
                     claims["iat"]) - leeway,
                 claims.get("typ", ACCESS), claims["jti"])
        if self.cache_size:
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[token] = entry
        return entry

    def _decode(self, token):
        self.counters["verified"] += 1
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise self._invalid(f"malformed: {exc}") from None
        if header.get("alg") not in self.algorithms:
            raise self._invalid(f"algorithm {header.get('alg')!r} not in the allow-list")
        try:
            claims = jwt.decode(
                token, self._key, algorithms=self.algorithms, issuer=self.issuer,
                audience=self.audience,
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                         "verify_aud": self.audience is not None,
                         "verify_iss": self.issuer is not None,
                         "require": ["exp", "iat", "sub", "jti"]})
        except jwt.PyJWTError as exc:
            raise self._invalid(str(exc) or type(exc).__name__) from None
        if not isinstance(claims.get("exp"), (int, float)) or \
                not isinstance(claims.get("iat"), (int, float)):
            raise self._invalid("exp and iat must be numbers")
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise self._invalid("roles must be a list of strings")
        return claims

    def _invalid(self, reason):
        self.counters["invalid"] += 1
        return InvalidToken(reason)


class TokenIssuer:
    """Signs access and refresh tokens.

    :param algorithm: one allowed algorithm.
    :param secret: the HMAC secret, or None.
    :param private_key: the PEM private key for asymmetric algorithms, or None.
    :param issuer: ``iss``; :param audience: ``aud`` (or None).
    :param ttl: seconds an access token lives; :param refresh_ttl: a refresh token's (0: none).
    """

    def __init__(self, algorithm, *, secret=None, private_key=None, issuer, audience=None,
                 ttl=900.0, refresh_ttl=0.0, clock):
        if algorithm in HMAC_ALGORITHMS:
            check_algorithms([algorithm], secret, None)
            self._key = secret
        else:
            if not private_key:
                raise ValueError("private_key: public-key algorithms need a private key (PEM)")
            self._key = jwt.algorithms.get_default_algorithms()[algorithm].prepare_key(private_key)
        self.algorithm, self.issuer, self.audience = algorithm, issuer, audience
        self.ttl, self.refresh_ttl = ttl, refresh_ttl
        self._clock = clock
        self.counters = {"issued": 0, "refresh_issued": 0}

    def issue(self, subject, roles=(), kind=ACCESS):
        """``(token, claims)`` for ``subject`` with ``roles``."""
        now = int(self._clock.seconds())
        ttl = self.ttl if kind == ACCESS else self.refresh_ttl
        claims = {"iss": self.issuer, "sub": str(subject), "iat": now, "nbf": now,
                  "exp": now + int(ttl), "jti": uuid.uuid4().hex, "roles": sorted(roles)}
        if self.audience is not None:
            claims["aud"] = self.audience
        if kind != ACCESS:
            claims["typ"] = kind
        self.counters["issued" if kind == ACCESS else "refresh_issued"] += 1
        return jwt.encode(claims, self._key, algorithm=self.algorithm), claims
