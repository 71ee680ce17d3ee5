"""A published message and its id.

A message id is ``"<epoch>-<seq>"``: ``seq`` grows by one for every message
published anywhere in the cluster (a counter in Redis, or in the process
when there is no Redis), and ``epoch`` names the counter's lifetime (the
time it was created).  Ids therefore compare across topics, which lets one
``since`` resume a wildcard subscription exactly; an id from another epoch
means the history it refers to is gone.
"""

import json
import re
from datetime import datetime, timezone

__all__ = ["Message", "parse_msg_id", "encode_data", "utc_now"]

_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")


def parse_msg_id(text):
    """``"epoch-seq"`` → ``(epoch, seq)``; ValueError if it is not a message id."""
    found = _ID.match(text) if isinstance(text, str) else None
    if found is None:
        raise ValueError("is not a message id (expected \"<epoch>-<seq>\" as sent in msg_id)")
    return int(found.group(1)), int(found.group(2))


def encode_data(data):
    """The JSON text of a message's data; TypeError/ValueError if it cannot be JSON."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


_SECOND = [None, ""]


def utc_now(seconds):
    """An ISO 8601 UTC timestamp with milliseconds for ``seconds`` since the epoch."""
    whole = int(seconds)
    if _SECOND[0] != whole:  # formatted once a second
        _SECOND[0] = whole
        _SECOND[1] = datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return "%s.%03dZ" % (_SECOND[1], int((seconds - whole) * 1000))


class Message:
    """One message on one topic; its wire frame is built once, on first use.

    :ivar key: ``(epoch, seq)``, ordered as published.
    :ivar data_json: the data as JSON text (never re-encoded per subscriber).
    """

    __slots__ = ("topic", "msg_id", "key", "published_at", "data_json", "publisher", "_frame",
                 "prepared")

    def __init__(self, topic, msg_id, published_at, data_json, publisher="", key=None):
        self.topic = topic
        self.msg_id = msg_id
        self.key = key or parse_msg_id(msg_id)
        self.published_at = published_at
        self.data_json = data_json
        self.publisher = publisher or ""
        self._frame = None
        self.prepared = None  # the WebSocket layer's prepared frame, cached here

    @property
    def frame(self):
        """The ``message`` frame as UTF-8 JSON bytes."""
        if self._frame is None:
            self._frame = (
                '{"op":"message","topic":"%s","msg_id":"%s","published_at":"%s","data":%s}'
                % (self.topic, self.msg_id, self.published_at, self.data_json)  # names need no escaping
            ).encode()
        return self._frame

    def __repr__(self):
        return f"Message({self.topic!r}, {self.msg_id!r})"
