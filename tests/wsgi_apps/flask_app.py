"""A Flask app hosted by the broker in the WSGI tests."""

from flask import Flask, Response, request

app = Flask(__name__)


@app.get("/")
def hello():
    return {"hello": "world"}


@app.route("/whoami", methods=["GET", "POST"])
def whoami():
    env = request.environ
    return {"remote_user": env.get("REMOTE_USER"), "script_name": env.get("SCRIPT_NAME"),
            "path_info": env.get("PATH_INFO"), "query": env.get("QUERY_STRING"),
            "url": request.url, "method": request.method, "body": request.get_data(as_text=True),
            "authorization": env.get("HTTP_AUTHORIZATION"), "cid": env.get("broker.cid")}


@app.get("/big/<int:size>")
def big(size):
    def parts():
        chunk = b"x" * 8192
        left = size
        while left > 0:
            yield chunk[:left]
            left -= len(chunk)
    return Response(parts(), mimetype="application/octet-stream")


@app.get("/café")
def cafe():
    return {"path": request.path}


@app.get("/boom")
def boom():
    raise RuntimeError("the app failed on purpose")
