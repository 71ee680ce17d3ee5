"""The HTTP listener service: binds an endpoint, knows its URLs, stops cleanly."""

import os

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import serverFromString
from twisted.protocols.tls import TLSMemoryBIOFactory

__all__ = ["Listener"]


class Listener(Service):
    """Listens on ``endpoint`` (a Twisted endpoint string) with ``factory``.

    It binds in ``privilegedStartService`` so a port below 1024 can be had
    before twistd drops privileges; a port that cannot be had stops startup
    with one line instead of a traceback.  Twisted's port logs the line saying
    where it listens; the node's ready line gives the URLs (:meth:`url`).

    :ivar port: the listening port once bound (``port.getHost().port`` when
        the endpoint asked for port 0).
    """

    def __init__(self, endpoint, factory, reactor=None, client_ca=None, require_client_certificate=False,
                 adopt=None):
        self.endpoint = endpoint
        self.client_ca = client_ca
        self.require_client_certificate = require_client_certificate
        self.factory = factory
        self._reactor = reactor
        self._adopt = adopt
        self.port = None

    def privilegedStartService(self):
        super().privilegedStartService()
        if self._reactor is None:
            from twisted.internet import reactor
            self._reactor = reactor
        if self._adopt is not None:
            self.port = self._adopted(*self._adopt)
            return
        results = []
        endpoint = serverFromString(self._reactor, self.endpoint)
        if self.client_ca:
            _ask_client_certificates(endpoint, self.client_ca, self.require_client_certificate)
        endpoint.listen(self.factory).addBoth(results.append)
        if not results:  # pragma: no cover - our endpoints listen synchronously
            raise SystemExit(f"broker: listening on {self.endpoint} did not finish at once")
        if hasattr(results[0], "getErrorMessage"):
            raise SystemExit(f"broker: cannot listen on {self.endpoint}: {results[0].getErrorMessage()}")
        self.port = results[0]

    def _adopted(self, fd, family):
        """Serve on the listening socket ``fd`` a worker inherited (TLS as the endpoint says)."""
        factory = self.factory
        endpoint = serverFromString(self._reactor, self.endpoint)
        if self.client_ca:
            _ask_client_certificates(endpoint, self.client_ca, self.require_client_certificate)
        context = getattr(endpoint, "_sslContextFactory", None)  # an ssl: endpoint's
        if context is not None:
            factory = TLSMemoryBIOFactory(context, False, factory)
        port = self._reactor.adoptStreamPort(fd, family, factory)
        os.close(fd)  # the port holds its own copy
        return port

    def url(self, path="/", websocket=False):
        """The URL of ``path`` on this listener once bound; None when it has no IP address."""
        host = self.port.getHost() if self.port is not None else None
        if not isinstance(host, (IPv4Address, IPv6Address)):
            return None
        scheme = "ws" if websocket else "http"
        if self.endpoint.partition(":")[0].lower() == "ssl":
            scheme += "s"
        address = f"[{host.host}]" if isinstance(host, IPv6Address) else host.host
        return f"{scheme}://{address}:{host.port}{path}"

    def own_address(self):
        """``http://host:port`` to reach this listener from this machine, or None before it
        listens (a wildcard address answers on loopback)."""
        host = self.port.getHost() if self.port is not None else None
        if getattr(host, "port", None) is None:
            return None
        address = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host.host, host.host)
        return f"http://[{address}]:{host.port}" if ":" in address else f"http://{address}:{host.port}"

    def startService(self):
        if self.port is None:
            self.privilegedStartService()
        super().startService()

    def stopService(self):
        """Stop accepting, then let the connections finish what they took (see
        ``HTTPServerFactory.drain``); a Deferred firing once both are done."""
        super().stopService()
        stopped = []
        if self.port is not None:
            port, self.port = self.port, None
            accept = getattr(port, "doRead", None)
            if accept is not None and port.connected:
                accept()  # take what the kernel already queued: closing would reset it
            stopped.append(defer.maybeDeferred(port.stopListening))
        drain = getattr(self.factory, "drain", None)
        if drain is not None:
            stopped.append(drain())
        return defer.gatherResults(stopped) if stopped else None


def _ask_client_certificates(endpoint, ca_path, required):
    """Make an ``ssl:`` endpoint ask clients for a certificate signed by the CA at ``ca_path``
    (and refuse those without one when ``required``)."""
    from twisted.internet import ssl

    options = getattr(endpoint, "_sslContextFactory", None)
    if options is None:
        raise SystemExit(f"broker: http.client_ca needs an ssl: listener, not {endpoint!r}")
    try:
        with open(ca_path, encoding="ascii") as handle:
            ca = ssl.Certificate.loadPEM(handle.read())
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise SystemExit(f"broker: cannot read http.client_ca {ca_path}: {error}") from None
    endpoint._sslContextFactory = ssl.CertificateOptions(
        privateKey=options.privateKey, certificate=options.certificate,
        extraCertChain=options.extraCertChain, verify=True, caCerts=[ca.original],
        requireCertificate=required)
