"""Peer (d): the Python ceiling -- an httptools (llhttp) parser in a bare Twisted Protocol, keep-alive only.

Any request: ``json.loads`` the body and answer ``{"text": text * repeat}``; no routing, no validation.

    python bench/peers/httptools_echo.py --port 8080
"""

import argparse
import json

import httptools
from twisted.internet import endpoints, protocol, reactor

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


class Echo(protocol.Protocol):
    """Parse requests as they arrive; answer each one when its body is complete."""

    def connectionMade(self):
        self.parser, self.body = httptools.HttpRequestParser(self), []

    def dataReceived(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:  # also wraps errors raised in the callbacks
            self.transport.loseConnection()

    def on_message_begin(self):
        self.body = []

    def on_body(self, chunk):
        self.body.append(chunk)

    def on_message_complete(self):
        req = json.loads(b"".join(self.body))
        out = json.dumps({"text": req["text"] * req.get("repeat", 1)}, separators=(",", ":")).encode()
        self.transport.write(HEAD % len(out) + out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    factory = protocol.Factory.forProtocol(Echo)
    factory.noisy = False
    endpoints.TCP4ServerEndpoint(reactor, args.port, interface=args.host, backlog=1024).listen(factory)
    reactor.run()


if __name__ == "__main__":
    main()
