"""Security definitions that authenticate a caller: HTTP Basic and API keys.

A definition reads a credentials view (:class:`~broker.security.credentials.Credentials`,
or a channel's :class:`~broker.services.context.Request`): ``headers``, ``peer``,
``cid`` and maybe a ``token`` from the URL.  A definition without a secret
accepts nobody (there are no default passwords) and says so at startup.
Secrets are compared in constant time and never logged; every failure gets
the same 401 message, the reason goes to the log only.
"""

import binascii
from base64 import b64decode, b64encode
from hmac import compare_digest

from twisted.logger import Logger

from broker.errors import Unauthorized

__all__ = ["APIKey", "BasicAuth", "SecurityDefinition", "bearer_of"]

log = Logger()


class SecurityDefinition:
    """Base of the definitions a channel can point at.

    :ivar name: the definition's name in config.
    :ivar caller: the identity of the one caller it accepts.
    :ivar counters: ``accepted`` and ``rejected`` totals.
    """

    type = None
    secret_key = None  # the config key holding the secret
    scheme = None  # the OpenAPI securityScheme this definition maps to
    key_header = None  # the lower-cased header an API key comes in, for key-based definitions
    #: Lower-cased headers that carry its credentials (not passed on to a WSGI app).
    credential_headers = frozenset(("authorization",))

    def __init__(self, name):
        self.name = name
        self.counters = {"accepted": 0, "rejected": 0}

    @property
    def usable(self):
        """False when the definition has no secret and so accepts nobody."""
        raise NotImplementedError

    def authenticate(self, credentials):
        """Return the caller's identity or raise :class:`~broker.errors.Unauthorized`."""
        raise NotImplementedError

    def offers(self, credentials):
        """Whether ``credentials`` are of this definition's kind: asking one that is not would
        only log a false alarm when several definitions are tried."""
        return bool(credentials.headers.get("authorization"))

    def _reject(self, reason, credentials):
        self.counters["rejected"] += 1
        log.info("authentication failed on {definition} for {peer}: {reason} (cid {cid})",
                 definition=self.name, peer=credentials.peer, reason=reason, cid=credentials.cid)
        return Unauthorized(headers={"WWW-Authenticate": self.challenge})

    def _accept(self, caller):
        self.counters["accepted"] += 1
        return caller


class BasicAuth(SecurityDefinition):
    """HTTP Basic Auth with one username and password."""

    type = "basic_auth"
    secret_key = "password"

    def __init__(self, name, username, password, realm="broker"):
        super().__init__(name)
        self.username = self.caller = username
        self._username = username.encode()
        self._password = (password or "").encode()
        self.realm = realm
        self.challenge = f'Basic realm="{realm}"'
        self.scheme = {"type": "http", "scheme": "basic"}
        # The exact header a client sends for the right credentials: compared in
        # constant time, it settles the common case without decoding anything.
        self._expected = b"Basic " + b64encode(self._username + b":" + self._password)

    @property
    def usable(self):
        return bool(self._password)

    def offers(self, credentials):
        header = credentials.headers.get("authorization", "")
        return header.partition(" ")[0].lower() == "basic"

    def authenticate(self, credentials):
        header = credentials.headers.get("authorization")
        if not header:
            raise self._reject("no credentials", credentials)
        if self._password and compare_digest(header.encode("latin-1", "replace"), self._expected):
            self.counters["accepted"] += 1
            return self.username
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            raise self._reject("not basic credentials", credentials)
        try:
            username, sep, password = b64decode(encoded.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            raise self._reject("malformed credentials", credentials) from None
        if not self._password:
            raise self._reject("the definition has no password", credentials)
        # Both comparisons always run: the time taken tells nothing.
        ok = compare_digest(username, self._username) & compare_digest(password, self._password)
        if not (ok and sep):
            raise self._reject("wrong username or password", credentials)
        return self._accept(self.username)

    def __repr__(self):
        return f"BasicAuth({self.name!r}, username={self.username!r}, password=<hidden>)"


class APIKey(SecurityDefinition):
    """An API key sent in its header (``X-API-Key`` by default), else as a bearer token
    (``Authorization: Bearer <key>``, or ``?token=<key>`` where the view carries one)."""

    type = "apikey"
    secret_key = "key"

    def __init__(self, name, key, header="X-API-Key", caller=None):
        super().__init__(name)
        self.header = header
        self.key_header = header.lower()
        self.credential_headers = frozenset(("authorization", self.key_header))
        self._key = (key or "").encode()
        self.caller = caller or name
        self.challenge = f'APIKey header="{header}"'
        self.scheme = {"type": "apiKey", "in": "header", "name": header}

    @property
    def usable(self):
        return bool(self._key)

    def offers(self, credentials):
        return self.key_header in credentials.headers or bool(bearer_of(credentials))

    def authenticate(self, credentials):
        value = credentials.headers.get(self.key_header) or bearer_of(credentials)
        if not value:
            raise self._reject("no API key", credentials)
        if not self._key:
            raise self._reject("the definition has no key", credentials)
        if not compare_digest(value.encode(), self._key):
            raise self._reject("wrong API key", credentials)
        return self._accept(self.caller)

    def __repr__(self):
        return f"APIKey({self.name!r}, header={self.header!r}, key=<hidden>)"


def bearer_of(credentials):
    """The bearer token offered: ``Authorization: Bearer <t>``, else (no ``Authorization``
    at all) a ``?token=<t>`` the view carries; None."""
    header = credentials.headers.get("authorization")
    if header:
        return header[7:].strip() if header[:7].lower() == "bearer " else None
    return getattr(credentials, "token", None)
