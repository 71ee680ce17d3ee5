"""Send a fan-out frame at once when the connection has nothing waiting.

``FileDescriptor.write`` always buffers and sends on the next reactor turn,
which costs two ``epoll_ctl`` calls and a dispatch per write: for one message
going to a hundred sockets that is most of the work.  When the transport's
buffer is empty (the common case for a subscriber that keeps up) we try
``send`` right away and hand only what the kernel did not take to
``transport.write``, which keeps Twisted's buffering, producer pausing and
error handling for the rest.

Only a plain TCP connection (a :class:`twisted.internet.tcp.Connection`
without ``startTLS``) takes this path.  A TLS wrapper
(``TLSMemoryBIOProtocol``, what ``ssl:`` endpoints hand a protocol) forwards
unknown attributes to the TCP transport beneath it, so duck typing would
find that transport's socket and send plaintext past the encryption.  Every
other transport gets ``transport.write`` unchanged, and so does every write
should a Twisted release rename the buffer attributes read here (the
defaults below then say "something waits").
"""

from twisted.internet.tcp import Connection

__all__ = ["write_now"]

#: transport class -> whether it is a plain TCP connection (a handful of classes).
_PLAIN_TCP = {}


def _plain_tcp(cls):
    plain = _PLAIN_TCP[cls] = issubclass(cls, Connection)
    return plain


def write_now(transport, data):
    """Write ``data`` to ``transport``: directly if nothing waits, else buffered."""
    plain = _PLAIN_TCP.get(transport.__class__)
    if plain is None:
        plain = _plain_tcp(transport.__class__)
    if plain and not transport.TLS and transport.connected \
            and not transport.disconnecting and not getattr(transport, "_writeDisconnected", True) \
            and not getattr(transport, "_tempDataLen", 1) \
            and len(getattr(transport, "dataBuffer", b"?")) == getattr(transport, "offset", 0):
        try:
            sent = transport.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = 0  # let Twisted's own write path meet the error and close
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
