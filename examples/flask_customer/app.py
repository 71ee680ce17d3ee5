"""A small Flask app that calls the broker's services through the Flask extension.

    pip install flask ./client
    BROKER_ADMIN_PASSWORD=... flask --app examples/flask_customer/app.py run --port 8189
    curl localhost:8189/customer/123

It can also run inside the broker itself as a hosted WSGI app: see etc/examples/wsgi.yaml.
"""

import os

from broker_client import BrokerClientError, ConnectionFailed
from broker_client.flask import Broker
from flask import Flask, jsonify

broker = Broker()


def create_app(config=None):
    app = Flask(__name__)
    app.config["BROKER"] = {
        "address": os.environ.get("BROKER_ADDRESS", "http://127.0.0.1:17010"),
        "auth": (os.environ.get("BROKER_USER", "admin"), os.environ.get("BROKER_ADMIN_PASSWORD", "")),
        "timeout": 10,
    }
    app.config.update(config or {})
    broker.init_app(app)

    @app.get("/customer/<cust_id>")
    def customer(cust_id):
        response = broker.invoke("customer.get2", {"cust_id": cust_id})
        return jsonify(name=response.data["name"], cid=response.cid)

    @app.errorhandler(BrokerClientError)
    def broker_failed(error):
        status = 503 if isinstance(error, ConnectionFailed) else 502
        return jsonify(error=str(error)), status

    return app


app = create_app()
