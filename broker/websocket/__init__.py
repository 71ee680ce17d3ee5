"""The WebSocket channel: autobahn takes over ``/ws`` connections from the HTTP server.

Imported lazily (autobahn/txaio must not pick a reactor while twistd loads
its plugins): :mod:`broker.pubsub.feature` imports it while the node is built.
"""
