#!/usr/bin/env python3
"""Django's command-line utility for the django_rates sample."""

import importlib.util
import os
import sys
from pathlib import Path

if __name__ == "__main__":
    if importlib.util.find_spec("broker_client") is None:  # not installed: use the checkout's copy
        sys.path.append(str(Path(__file__).resolve().parents[2] / "client"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_rates.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
