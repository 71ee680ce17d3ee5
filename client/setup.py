"""broker-client: the broker's Python client on its own, for Django, Flask and scripts.

It is the code of ``broker/client/`` (``broker_client`` here is a symlink to
it), packaged as the top-level package ``broker_client`` with urllib3 as its
only dependency: no Twisted and none of the server's dependencies.

    pip install ./client            # from the broker's checkout
    python -c "from broker_client import Client"
"""

from setuptools import setup

setup(
    name="broker-client",
    version="0.1.0",
    description="Python client for the broker: invoke services and publish, in plain dicts; "
                "Django middleware and Flask extension",
    license="MIT",
    python_requires=">=3.9",
    packages=["broker_client"],
    install_requires=["urllib3>=1.26.8"],
    extras_require={"django": ["django>=3.2"], "flask": ["flask>=2.0"], "tokens": ["PyJWT[crypto]>=2.8"],
                    "subscribe": ["websockets>=13"]},  # broker subscribe
    entry_points={"console_scripts": ["broker = broker_client.cli:main"]},
    classifiers=["Programming Language :: Python :: 3", "Framework :: Django", "Framework :: Flask"],
)
