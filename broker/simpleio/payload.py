"""``Payload``: the dict services read input from and write output to."""

__all__ = ["Payload"]


class Payload(dict):
    """A dict that also takes attributes: ``payload.text = 'hi'`` (as in Zato)."""

    __slots__ = ()

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    __setattr__ = dict.__setitem__

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None
