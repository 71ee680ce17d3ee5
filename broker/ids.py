"""Unique ids, cheaply: a random prefix per process and a counter.

Used for correlation ids and message ids on hot paths; unique across
processes (the prefix) and ordered within one (the counter).
"""

import itertools
import os

__all__ = ["id_maker", "new_cid"]


def id_maker(width=12):
    """A function returning a new id on each call: 12 hex digits of prefix, then
    the counter in hex, zero-padded to ``width`` digits (0: no padding)."""
    prefix = os.urandom(6).hex()
    counter = itertools.count(1).__next__
    template = f"%s%0{width}x" if width else "%s%x"

    def new_id():
        return template % (prefix, counter())

    return new_id


#: Correlation ids, shared by every channel: unique across processes, ordered within one.
new_cid = id_maker()
