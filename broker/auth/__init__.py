"""The node as the auth service of a system: token endpoints, roles, shared limits.

The ``auth:`` section (:mod:`broker.auth.feature`) makes one :class:`~broker.auth.feature.Auth`
per node: the token issuer and the node's verifier, the revocation store, the rate-limit
buckets, the trusted proxies and the RBAC policy; the ``jwt`` definitions, guarded
definitions and channels use it.
"""

from broker.auth.feature import AUTH_SECTION, FEATURE, Auth

__all__ = ["AUTH_SECTION", "Auth", "FEATURE"]
