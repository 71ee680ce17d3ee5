"""broker: a Twisted integration broker; services declared with SimpleIO.

The names a service module needs::

    from broker import Service, Int, Float, Bool, List
"""

from broker.services.base import Service
from broker.simpleio import (AsIs, Bool, Date, DateTime, Decimal, Dict, Float, Int, List, Text,
                             UUID)

__version__ = "0.1.0"

__all__ = ["AsIs", "Bool", "Date", "DateTime", "Decimal", "Dict", "Float", "Int", "List",
           "Service", "Text", "UUID", "__version__"]
