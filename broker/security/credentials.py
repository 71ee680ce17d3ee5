"""Who the caller is: the one place every edge authenticates through.

An edge hands :func:`authenticate` what the caller presented, as a
:class:`Credentials` view (a channel's :class:`~broker.services.context.Request`
is one already), and the definitions it accepts: the one a channel or a WSGI
mount names, or several (pub/sub's ``permissions``).  The answer is the
definition that accepted, whose ``caller`` is who the caller is; failures are
the uniform 401 (or a 403 for credentials of a definition not admitted there).
"""

from broker.errors import Forbidden, Unauthorized

__all__ = ["Credentials", "authenticate"]


class Credentials:
    """What a caller presented, whatever carried it: the view definitions read.

    :ivar headers: ``{lower-cased name: value}`` (``authorization``, an API key's header).
    :ivar token: a bearer token from the URL's ``?token=`` (browsers cannot set headers on a
        WebSocket), or None.
    :ivar peer: the caller's address, for the log.
    :ivar cid: the correlation id, for the log.
    """

    __slots__ = ("headers", "token", "peer", "cid")

    def __init__(self, headers, token=None, peer=None, cid=None):
        self.headers, self.token, self.peer, self.cid = headers, token, peer, cid


def authenticate(definitions, credentials, *, admitted=None, anonymous=False,
                 refusal='security definition "{name}" is not admitted here'):
    """The security definition accepting ``credentials``: its ``caller`` is who the caller is.

    :param definitions: the one definition a place names (it must accept), or ``{name:
        definition}``, read now (a live mapping: a definition replaced while the node runs
        counts at once) and tried in order, asking only those the credentials are for.
    :param admitted: the names that may pass here (None: all); credentials only another
        definition accepts get :class:`~broker.errors.Forbidden` with ``refusal`` (``{name}``
        is that definition), so the fix is clear.
    :param anonymous: whether a caller offering no credentials at all passes (as None).
    :raise broker.errors.Unauthorized: the uniform 401; with one definition, its challenge.
    """
    if hasattr(definitions, "authenticate"):  # one definition (or a guarded one)
        definitions.authenticate(credentials)
        return definitions
    offered = [(name, d) for name, d in definitions.items() if d.offers(credentials)]
    if not offered:
        if anonymous and not (credentials.headers.get("authorization")
                              or getattr(credentials, "token", None)):
            return None
        raise Unauthorized()
    others = []
    for name, definition in offered:
        if admitted is not None and name not in admitted:
            others.append((name, definition))
        elif _accepts(definition, credentials):
            return definition
    for name, definition in others:
        if _accepts(definition, credentials):
            raise Forbidden(refusal.format(name=name))
    raise Unauthorized()


def _accepts(definition, credentials):
    try:
        definition.authenticate(credentials)
    except Unauthorized:
        return False
    return True
