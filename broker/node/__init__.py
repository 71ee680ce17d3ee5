"""The composition root: the config model, the type registry and node assembly.

The only package that knows every transport and feature; nothing in the
broker imports it but ``tap`` and ``cli``.
"""

from broker.node.model import DEFAULT_LISTEN, load_config
from broker.node.root import BrokerNode, build_node

__all__ = ["DEFAULT_LISTEN", "BrokerNode", "build_node", "load_config"]
