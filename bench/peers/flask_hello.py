"""The Flask hello app both WSGI hosts run in bench/wsgi.py."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return {"hello": "world"}
