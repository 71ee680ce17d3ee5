"""Hosting WSGI applications (Flask, Django, any PEP 3333 app) inside the broker.

See :mod:`broker.wsgi.channel` for the config and :mod:`broker.wsgi.gateway`
for the gateway.  Docs: ``docs/wsgi.md``.
"""
