"""Finding a hosted app: a dotted path, or a Django project (one per process)."""

import importlib
import os
import sys

__all__ = ["DjangoConflict", "load_callable", "load_django", "note_django_app"]

# The Django project this process hosts: (settings module, channel name), once one is mounted.
_django = None


class DjangoConflict(ValueError):
    """A second, different Django project in one process."""


def load_callable(spec, what="app"):
    """``package.module:attribute`` (or ``package.module.attribute``) → the object.

    :raise ValueError: a clear message when the module or attribute is missing
        or the object is not callable.
    """
    module_name, colon, attribute = spec.partition(":")
    if not colon:
        module_name, _, attribute = spec.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f'expected "package.module:{what}", got "{spec}"')
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f'cannot import "{module_name}": {error}') from None
    except Exception as error:
        raise ValueError(f'importing "{module_name}" failed: {type(error).__name__}: {error}') from None
    obj = module
    for name in attribute.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise ValueError(f'"{module_name}" has no "{attribute}"') from None
    if not callable(obj):
        raise ValueError(f'"{spec}" is not callable (a WSGI {what} is)')
    return obj


def load_django(settings_module, channel):
    """The WSGI app of the Django project ``settings_module``.

    Django keeps its settings in process-wide globals, so one process can
    host one Django project (at any number of mount paths).

    :raise DjangoConflict: another project is hosted already.
    """
    _claim(settings_module, channel)
    current = os.environ.get("DJANGO_SETTINGS_MODULE")
    if current and current != settings_module and "django.conf" in sys.modules:
        raise DjangoConflict(f'this process already uses Django settings "{current}"')
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    try:
        importlib.import_module(settings_module)
    except ImportError as error:
        raise ValueError(f'cannot import "{settings_module}": {error}') from None
    try:
        from django.core.wsgi import get_wsgi_application
    except ImportError:
        raise ValueError("Django is not installed (pip install django)") from None
    return get_wsgi_application()


def note_django_app(app, channel):
    """An ``app:`` that turns out to be a Django handler claims the process too."""
    if type(app).__module__.startswith("django.") and os.environ.get("DJANGO_SETTINGS_MODULE"):
        _claim(os.environ["DJANGO_SETTINGS_MODULE"], channel)


def _claim(settings_module, channel):
    global _django
    if _django is not None and _django[0] != settings_module:
        raise DjangoConflict(
            f'only one Django project per process: "{_django[0]}" is already mounted by channel '
            f'"{_django[1]}"; run "{settings_module}" in another broker process')
    if _django is None:
        _django = (settings_module, channel)
