"""broker: a Twisted integration broker in the spirit of Zato."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="broker",
    version="0.1.0",
    description="A Twisted integration broker: HTTP, WebSocket, AMQP and ZeroMQ channels, "
                "SimpleIO services",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    # twisted.plugins holds only broker_plugin.py: no __init__.py is shipped
    # for twisted/ or twisted/plugins/, so Twisted itself is never shadowed.
    packages=find_packages(include=["broker", "broker.*"]) + ["twisted.plugins"],
    package_data={"twisted": ["plugins/broker_plugin.py"], "broker.admin": ["static/*"]},
    include_package_data=True,
    install_requires=[
        "twisted>=24.7",
        "autobahn>=24.4",
        "pika>=1.4.4,<2",  # broker/amqp/_pika.py wraps its Twisted adapter (gone in pika 2)
        "pyzmq>=25",
        "txredisapi>=1.6,<1.7",
        "croniter>=2.0",
        "lxml>=6.1",
        "httptools>=0.6",
        "orjson>=3.10",
        "treq>=23.11",
        "PyYAML>=6.0",
        "swagger-ui-bundle-v2>=5.17,<6",
        "urllib3>=1.26.8",  # broker.client
        "prometheus-client>=0.20",  # GET /metrics
        "PyJWT[crypto]>=2.8",  # tokens (broker/security/tokens.py)
    ],
    extras_require={
        "otel": ["opentelemetry-sdk>=1.20"],  # tracing: export spans when configured
        "subscribe": ["websockets>=13"],  # broker subscribe
        "test": ["pytest>=8", "requests>=2.31", "flask>=2.2", "django>=4.2,<6", "websockets>=13",
                 "opentelemetry-sdk>=1.20",
                 "openapi-spec-validator>=0.7", "jsonschema>=4.18"],
    },
    # The client's command: "broker run" and "broker check" run python -m broker.cli.
    entry_points={"console_scripts": ["broker = broker.client.cli:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: System :: Networking",
    ],
)
