"""Pub/sub: topics with wildcards, per-definition permissions, history and resume, a Redis backplane.

Built by :mod:`broker.pubsub.feature` from the ``pubsub:`` config section;
``resources.pubsub`` is the :class:`~broker.pubsub.hub.Hub`.  See docs/websocket.md.
"""
