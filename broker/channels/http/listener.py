"""The HTTP listener service: binds an endpoint, says where, stops cleanly."""

from twisted.application.service import Service
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

__all__ = ["Listener"]

log = Logger()


class Listener(Service):
    """Listens on ``endpoint`` (a Twisted endpoint string) with ``factory``.

    It binds in ``privilegedStartService`` so a port below 1024 can be had
    before twistd drops privileges; a port that cannot be had stops startup
    with one line instead of a traceback.

    :ivar port: the listening port once bound (``port.getHost().port`` when
        the endpoint asked for port 0).
    """

    def __init__(self, endpoint, factory, reactor=None):
        self.endpoint = endpoint
        self.factory = factory
        self._reactor = reactor
        self.port = None

    def privilegedStartService(self):
        super().privilegedStartService()
        if self._reactor is None:
            from twisted.internet import reactor
            self._reactor = reactor
        results = []
        serverFromString(self._reactor, self.endpoint).listen(self.factory).addBoth(results.append)
        if not results:  # pragma: no cover - our endpoints listen synchronously
            raise SystemExit(f"broker: listening on {self.endpoint} did not finish at once")
        if hasattr(results[0], "getErrorMessage"):
            raise SystemExit(f"broker: cannot listen on {self.endpoint}: {results[0].getErrorMessage()}")
        self.port = results[0]
        host = self.port.getHost()
        log.info("HTTP listening on {host}:{port}", host=getattr(host, "host", host),
                 port=getattr(host, "port", ""))

    def startService(self):
        if self.port is None:
            self.privilegedStartService()
        super().startService()

    def stopService(self):
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
