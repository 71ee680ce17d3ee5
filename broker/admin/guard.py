"""The guard of everything under ``/broker/admin/``: the definition named by ``admin.security``.

The admin API and the dashboard answer only callers that definition accepts
(401 otherwise).  A node whose config names none serves them to nobody: 403
saying how to enable them, so there is no default password to forget.
"""

from broker.config.schema import config_error
from broker.errors import Forbidden
from broker.security.credentials import Credentials, authenticate

__all__ = ["ADMIN_PREFIX", "admin_guard"]

ADMIN_PREFIX = "/broker/admin/"


def admin_guard(ctx):
    """A decorator for route targets ``(http_request, cid, params)`` under :data:`ADMIN_PREFIX`.

    The definition is read when a caller comes, so a definition replaced while
    the node runs is the one that decides.  A guarded target is called as
    ``target(http_request, cid, params, who)``: ``who`` names the caller
    (``"definition:caller"``), for the log line of every change.
    """
    name = ctx.config.admin.security
    if name is not None and name not in ctx.security:
        raise config_error(ctx.config.admin, "security", f'no security definition "{name}" (known: '
                           f'{", ".join(sorted(ctx.security)) or "none"})')
    definitions = ctx.definitions

    def guard(target):
        def answer(http_request, cid, params):
            if name is None:
                raise Forbidden("The admin API is disabled: name a security definition in admin.security")
            definition = authenticate(definitions[name], Credentials(
                http_request.headers, peer=http_request.peer, cid=cid))
            return target(http_request, cid, params, f"{name}:{definition.caller}")
        return answer
    return guard
