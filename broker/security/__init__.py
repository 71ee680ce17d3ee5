"""Security definitions: who a caller is (Basic Auth, API keys), checked in constant time.

Every edge asks :func:`~broker.security.credentials.authenticate` with a
:class:`~broker.security.credentials.Credentials` view.
"""
