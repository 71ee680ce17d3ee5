"""The HTTP channel: a lean HTTP/1.1 server on httptools, routing and the app."""
