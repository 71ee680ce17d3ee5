"""A second Django project's settings: mounting it beside djsite.settings must be refused."""

from djsite.settings import *  # noqa: F401,F403
