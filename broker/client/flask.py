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

__all__ = ["Broker", "token_required"]


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


def token_required(verifier, role=None):
    """A view decorator trusting the broker's tokens: ``flask.g.broker_user`` is the
    :class:`~broker.client.tokens.TokenUser`; no token or a bad one is a 401, a missing
    ``role`` a 403::

        verifier = TokenVerifier(secret=os.environ["BROKER_TOKEN_SECRET"])

        @app.get("/me")
        @token_required(verifier)
        def me():
            return {"user": g.broker_user, "roles": sorted(g.broker_user.roles)}
    """
    import functools

    from flask import g, jsonify, request

    from .tokens import InvalidToken, bearer_token

    def decorate(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            token = bearer_token(request.headers.get("Authorization"))
            try:
                if token is None:
                    raise InvalidToken("no bearer token")
                user = verifier.verify(token)
            except InvalidToken as error:
                current_app.logger.info("broker token refused: %s", error)
                return jsonify(code="unauthorized", details="invalid token"), 401
            if role is not None and role not in user.roles:
                return jsonify(code="forbidden", details="not allowed"), 403
            g.broker_user = user
            return view(*args, **kwargs)
        return guarded
    return decorate
