"""Security definitions that authenticate a request: HTTP Basic and API keys.

A definition without a secret accepts nobody (there are no default
passwords) and says so at startup.  Secrets are compared in constant time
and never logged; every failure gets the same 401 message, the reason goes
to the log only.
"""

import binascii
from base64 import b64decode, b64encode
from hmac import compare_digest

from twisted.logger import Logger

from broker.errors import Unauthorized

__all__ = ["APIKey", "BasicAuth", "SecurityDefinition"]

log = Logger()


class SecurityDefinition:
    """Base of the definitions a channel can point at.

    :ivar name: the definition's name in config.
    :ivar counters: ``accepted`` and ``rejected`` totals.
    """

    type = None
    secret_key = None  # the config key holding the secret
    scheme = None  # the OpenAPI securityScheme this definition maps to
    key_header = None  # the lower-cased header an API key comes in, for key-based definitions

    def __init__(self, name):
        self.name = name
        self.counters = {"accepted": 0, "rejected": 0}

    @property
    def usable(self):
        """False when the definition has no secret and so accepts nobody."""
        raise NotImplementedError

    def authenticate(self, request):
        """Return the caller's identity or raise :class:`~broker.errors.Unauthorized`."""
        raise NotImplementedError

    def _reject(self, reason, request):
        self.counters["rejected"] += 1
        log.info("authentication failed on {definition} for {peer}: {reason} (cid {cid})",
                 definition=self.name, peer=request.peer, reason=reason, cid=request.cid)
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
        self.username = username
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

    def authenticate(self, request):
        header = request.headers.get("authorization")
        if not header:
            raise self._reject("no credentials", request)
        if self._password and compare_digest(header.encode("latin-1", "replace"), self._expected):
            self.counters["accepted"] += 1
            return self.username
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            raise self._reject("not basic credentials", request)
        try:
            username, sep, password = b64decode(encoded.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            raise self._reject("malformed credentials", request) from None
        if not self._password:
            raise self._reject("the definition has no password", request)
        # Both comparisons always run: the time taken tells nothing.
        ok = compare_digest(username, self._username) & compare_digest(password, self._password)
        if not (ok and sep):
            raise self._reject("wrong username or password", request)
        return self._accept(self.username)

    def __repr__(self):
        return f"BasicAuth({self.name!r}, username={self.username!r}, password=<hidden>)"


class APIKey(SecurityDefinition):
    """An API key sent in a header (``X-API-Key`` by default)."""

    type = "apikey"
    secret_key = "key"

    def __init__(self, name, key, header="X-API-Key", caller=None):
        super().__init__(name)
        self.header = header
        self.key_header = header.lower()
        self._key = (key or "").encode()
        self.caller = caller or name
        self.challenge = f'APIKey header="{header}"'
        self.scheme = {"type": "apiKey", "in": "header", "name": header}

    @property
    def usable(self):
        return bool(self._key)

    def authenticate(self, request):
        value = request.headers.get(self.key_header)
        if not value:
            raise self._reject("no API key", request)
        if not self._key:
            raise self._reject("the definition has no key", request)
        if not compare_digest(value.encode(), self._key):
            raise self._reject("wrong API key", request)
        return self._accept(self.caller)

    def __repr__(self):
        return f"APIKey({self.name!r}, header={self.header!r}, key=<hidden>)"
