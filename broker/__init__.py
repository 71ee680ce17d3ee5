"""broker: a Twisted integration broker; services declared with SimpleIO.

The names a service module needs::

    from broker import Service, Int, Float, Bool, List

They are loaded on first use (PEP 562), so ``import broker.client`` (the
Python client, for Django and Flask projects) never imports Twisted.
"""

__version__ = "0.1.0"

__all__ = ["AsIs", "Bool", "Date", "DateTime", "Decimal", "Dict", "Float", "Int", "List",
           "Service", "Text", "UUID", "__version__"]

_LAZY = {"Service": "broker.services.base",
         **{name: "broker.simpleio" for name in ("AsIs", "Bool", "Date", "DateTime", "Decimal",
                                                  "Dict", "Float", "Int", "List", "Text", "UUID")}}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'broker' has no attribute {name!r}")
    from importlib import import_module
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
