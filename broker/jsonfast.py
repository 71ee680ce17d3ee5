"""When orjson may parse a JSON document in place of the stdlib.

orjson is several times faster than ``json`` but differs on two inputs:
it has no nesting limit, and it reads integers beyond 64 bits as floats
(losing digits).  A document that may hold either goes to the stdlib, which
refuses the first and reads the second exactly.
"""

import re

__all__ = ["orjson_may_read"]

_MAX_CONTAINERS = 256
_LONG_NUMBER = re.compile(rb"\d{19}")  # 19 digits may already be past 64 bits


def orjson_may_read(data):
    """Whether orjson reads ``data`` (bytes) exactly as ``json.loads`` would."""
    return (data.count(b"[") + data.count(b"{") <= _MAX_CONTAINERS
            and _LONG_NUMBER.search(data) is None)
