"""Flask: ``Broker(app)`` or ``broker.init_app(app)`` exposes a broker client.

::

    app = Flask(__name__)
    app.config["BROKER"] = {"address": "http://127.0.0.1:17010", "auth": ("admin", password)}
    broker = Broker(app)

    @app.get("/customer/<cust_id>")
    def customer(cust_id):
        return broker.invoke("customer.get2", {"cust_id": cust_id}).data

The client lives in ``app.extensions["broker"]``; ``broker.client`` is the
current app's (so one ``Broker()`` serves an app factory's many apps).
"""

from flask import current_app, has_app_context

from . import client_from_settings

__all__ = ["Broker"]


class Broker:
    """The Flask extension.

    :param app: a Flask app to initialise now, or None (call :meth:`init_app`).
    :param options: defaults merged under ``app.config["BROKER"]``.
    """

    def __init__(self, app=None, **options):
        self.options = options
        self._app = app
        if app is not None:
            self.init_app(app)

    def init_app(self, app):
        """Build the app's client from ``app.config["BROKER"]`` (plus the defaults)."""
        config = {**self.options, **(app.config.get("BROKER") or {})}
        try:
            client = client_from_settings(config)
        except (TypeError, ValueError) as error:
            raise RuntimeError(f'app.config["BROKER"]: {error}') from None
        app.extensions["broker"] = client
        return client

    @property
    def client(self):
        """The current app's client (or the app given to the constructor's)."""
        app = current_app if has_app_context() else self._app
        if app is None or "broker" not in app.extensions:
            raise RuntimeError("Broker: no app initialised (call Broker(app) or init_app(app))")
        return app.extensions["broker"]

    def invoke(self, service, data=None, **kwargs):
        """``client.invoke`` on the current app's client."""
        return self.client.invoke(service, data, **kwargs)

    def publish(self, topic, data, **kwargs):
        """``client.publish`` on the current app's client."""
        return self.client.publish(topic, data, **kwargs)
