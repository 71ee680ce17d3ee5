"""Send a fan-out frame at once when the connection has nothing waiting.

``FileDescriptor.write`` always buffers and sends on the next reactor turn,
which costs two ``epoll_ctl`` calls and a dispatch per write: for one message
going to a hundred sockets that is most of the work.  When the transport's
buffer is empty (the common case for a subscriber that keeps up) we try
``send`` right away and hand only what the kernel did not take to
``transport.write``, which keeps Twisted's buffering, producer pausing and
error handling for the rest.  Anything that is not a plain TCP transport
goes through ``transport.write`` unchanged, and so does every write should a
Twisted release rename the buffer attributes read here (the defaults below
then say "something waits").
"""

__all__ = ["write_now"]


def write_now(transport, data):
    """Write ``data`` to ``transport``: directly if nothing waits, else buffered."""
    sock = getattr(transport, "socket", None)
    if sock is not None and not getattr(transport, "TLS", True) and transport.connected \
            and not transport.disconnecting and not getattr(transport, "_writeDisconnected", True) \
            and not getattr(transport, "_tempDataLen", 1) \
            and len(getattr(transport, "dataBuffer", b"?")) == getattr(transport, "offset", 0):
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = 0  # let Twisted's own write path meet the error and close
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
