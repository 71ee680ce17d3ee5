"""WSGI entry point: ``gunicorn django_rates.wsgi``, or mount it in the broker itself
(a ``wsgi`` channel with ``django_settings: django_rates.settings``; see docs/wsgi.md)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_rates.settings")
application = get_wsgi_application()
