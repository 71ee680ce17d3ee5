"""Peer (c): FastAPI with a pydantic model doing the echo's validation, served by uvicorn.

POST ``{"text": str, "repeat": int = 1}`` (extra fields forbidden, no type coercion) -> ``{"text": text * repeat}``;
invalid input gets FastAPI's 422. Run (what http_invoke.py does):

    python -m uvicorn fastapi_app:app --app-dir bench/peers --host 127.0.0.1 --port 8080 \
        --loop uvloop --http httptools --no-access-log --log-level warning
"""

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

app = FastAPI()


class EchoIn(BaseModel):
    """The request body: strict types, no undeclared fields."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: str
    repeat: int = 1


@app.post("/echo")
async def echo(body: EchoIn):
    return {"text": body.text * body.repeat}
