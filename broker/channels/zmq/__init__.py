"""ZeroMQ channels (PULL, SUB, request/reply over ROUTER) and the reactor adapter."""
