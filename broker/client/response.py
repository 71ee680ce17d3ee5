"""The answer to one call: ``ok``, ``data``, ``details``, ``cid``, ``status``."""

__all__ = ["Inner", "Response"]


class Inner:
    """The raw HTTP answer, shaped like the ``requests.Response`` Zato's client exposed."""

    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code, headers, content):
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self):
        return self.content.decode("utf-8", "replace")

    def __repr__(self):
        return f"<Inner {self.status_code} {len(self.content)} bytes>"


class Response:
    """One call's result.

    :ivar ok: True when the call succeeded.
    :ivar data: the service's output (decoded JSON), or the error body on failure.
    :ivar details: a human message on failure (``""`` or None on success).
    :ivar cid: the correlation id the broker gave the call (its log uses it too).
    :ivar status: the HTTP status.
    :ivar headers: the answer's headers, names lower-cased.
    :ivar inner: the raw answer (:class:`Inner`: ``status_code``, ``headers``, ``content``, ``text``).
    """

    __slots__ = ("ok", "data", "details", "cid", "status", "headers", "inner", "meta")

    def __init__(self, ok, data, details, cid, status, headers, inner, meta=None):
        self.ok = ok
        self.data = data
        self.details = details
        self.cid = cid
        self.status = status
        self.headers = headers
        self.inner = inner
        self.meta = meta

    @property
    def has_data(self):
        return bool(self.data)

    def __bool__(self):
        return bool(self.ok)

    def __repr__(self):
        return (f"<Response ok={self.ok} status={self.status} cid={self.cid!r} "
                f"data={_short(self.data)} details={_short(self.details)}>")


def _short(value, limit=200):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
