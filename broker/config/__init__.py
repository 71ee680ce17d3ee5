"""Configuration machinery: a located YAML loader and a declarative schema.

The broker's own schema lives in :mod:`broker.node.model`; this package
only re-exports the generic pieces.
"""

from broker.config.loader import (ConfigError, Located, LocatedList, load_yaml, parse_yaml, substitute,
                                  to_plain)
from broker.config.schema import (NOTHING, Any, Bool, Choice, Duration, Endpoint, Field, Float, Int,
                                  ListOf, MapOf, Name, Path, Schema, Section, Size, Str, Tagged, Type,
                                  config_error)

__all__ = ["NOTHING", "Any", "Bool", "Choice", "ConfigError", "Duration", "Endpoint", "Field", "Float",
           "Int", "ListOf", "Located", "LocatedList", "MapOf", "Name", "Path", "Schema", "Section", "Size",
           "Str", "Tagged", "Type", "config_error", "load_yaml", "parse_yaml", "substitute", "to_plain"]
