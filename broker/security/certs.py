"""TLS client certificates as callers: the ``tls_client`` security definition.

A connection over a listener asking for client certificates (``http.client_ca``) has a
:class:`TLSPeer` as its peer: the address, as a ``str``, that can also show the certificate
the client presented and the TLS layer verified against that CA.  A ``tls_client``
definition accepts a caller whose certificate's subject common name it lists (any verified
one when it lists none); the caller is that name.  Nothing a client sends in a header can
stand in for the certificate.
"""

from broker.security.auth import SecurityDefinition
from broker.security.roles import Principal

__all__ = ["ClientCertificate", "TLSPeer"]


class TLSPeer(str):
    """A TLS connection's peer address that also knows the connection."""

    __slots__ = ("_transport",)

    def __new__(cls, address, transport):
        peer = super().__new__(cls, address)
        peer._transport = transport
        return peer

    @property
    def common_name(self):
        """The verified client certificate's subject CN, or None without one."""
        try:
            certificate = self._transport.getPeerCertificate()
        except Exception:  # the handshake is not done, or the connection is gone
            return None
        if certificate is None:
            return None
        common_name = certificate.get_subject().commonName
        return common_name if common_name else None


class ClientCertificate(SecurityDefinition):
    """Accepts callers by their verified client certificate.

    :param subjects: ``{common name: caller}``; empty: any certificate the CA signed, the
        caller being its common name.
    """

    type = "tls_client"
    credential_headers = frozenset()

    def __init__(self, name, subjects=None, roles=()):
        super().__init__(name)
        self.subjects = dict(subjects or {})
        self.roles = tuple(roles)
        self.caller = None
        self.challenge = "TLS"
        self.scheme = {"type": "mutualTLS"}

    @property
    def usable(self):
        return True

    def offers(self, credentials):
        return getattr(credentials.peer, "common_name", None) is not None

    def authenticate(self, credentials):
        common_name = getattr(credentials.peer, "common_name", None)
        if common_name is None:
            raise self._reject("no verified client certificate", credentials)
        if self.subjects:
            caller = self.subjects.get(common_name)
            if caller is None:
                raise self._reject(f"certificate subject {common_name!r} not listed", credentials)
        else:
            caller = common_name
        caller = self.caller = Principal(caller, self.roles) if self.roles else caller
        return self._accept(caller)

    def __repr__(self):
        return f"ClientCertificate({self.name!r})"
