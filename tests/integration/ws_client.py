"""A small synchronous WebSocket client for tests (the ``websockets`` library)."""

import json

from websockets.sync.client import connect


class WSClient:
    """A connection to a broker's ``/ws`` speaking the JSON protocol (``wss://`` when given
    an ``ssl`` context)."""

    def __init__(self, port, path="/ws", headers=None, timeout=10, host="127.0.0.1", **kwargs):
        scheme = "wss" if kwargs.get("ssl") is not None else "ws"
        self.ws = connect(f"{scheme}://{host}:{port}{path}", additional_headers=headers or {},
                          open_timeout=timeout, close_timeout=2, **kwargs)
        self.ws.__enter__()   # closed by close(); websockets >= 17.1 wants it entered
        self.timeout = timeout
        self._next = 0
        self.frames = []    # everything received, in order

    def send(self, frame):
        self.ws.send(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))

    def recv(self, timeout=None):
        frame = json.loads(self.ws.recv(timeout=timeout or self.timeout))
        self.frames.append(frame)
        return frame

    def request(self, op, **fields):
        """Send one op with a fresh id; return the ok/error reply, keeping other frames."""
        self._next += 1
        rid = self._next
        self.send({"op": op, "id": rid, **fields})
        while True:
            frame = self.recv()
            if frame.get("id") == rid and frame["op"] in ("ok", "error"):
                return frame

    def messages(self, count, timeout=None):
        """The next ``count`` message frames (other frames are kept in ``frames``)."""
        while sum(f["op"] == "message" for f in self.frames) < count:
            self.recv(timeout)
        found, rest = [], []
        for frame in self.frames:
            (found if frame["op"] == "message" and len(found) < count else rest).append(frame)
        self.frames = rest
        return found

    def close(self):
        self.ws.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
