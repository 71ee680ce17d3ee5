"""Settings of the django_rates sample: a Django site that calls the broker's services.

The broker's address and credentials come from the environment:

* ``BROKER_ADDRESS`` (default ``http://127.0.0.1:17010``)
* ``BROKER_USER`` (default ``admin``) and ``BROKER_ADMIN_PASSWORD`` (the variable
  the broker's ``admin`` definition reads; no default there either)
"""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-rates-sample-not-for-production")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = ["rates"]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "broker_client.django.BrokerMiddleware",   # request.broker: a broker_client.Client
]
ROOT_URLCONF = "django_rates.urls"
WSGI_APPLICATION = "django_rates.wsgi.application"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
              "DIRS": [], "OPTIONS": {}}]
DATABASES = {}  # the data comes from the broker
USE_TZ = True

BROKER = {
    "address": os.environ.get("BROKER_ADDRESS", "http://127.0.0.1:17010"),
    "auth": (os.environ.get("BROKER_USER", "admin"), os.environ.get("BROKER_ADMIN_PASSWORD", "")),
    "timeout": 10,
    "retries": 2,
}
# The services the pages call, and the channels of the Zato-style clients on the customer page.
BROKER_RATES_SERVICE = os.environ.get("BROKER_RATES_SERVICE", "rates.get")
# The currencies offered (EUR rates; HRK is gone: Croatia has used the euro since 2023).
RATES_CURRENCIES = ["USD", "GBP", "JPY", "CHF", "PLN", "SEK", "NOK", "CAD"]
BROKER_ZATO_INVOKE_PATH = "/zato/admin/invoke"
BROKER_CUSTOMER_PATH = "/customer/get2"
