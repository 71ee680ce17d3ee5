"""The Flask hello app in twisted.web.wsgi (WSGIResource on the reactor's thread pool), no access log.

    python bench/peers/twisted_wsgi.py PORT      # serves it at /wsgi/
"""

import os
import sys

from twisted.internet import endpoints, reactor
from twisted.web import resource, server
from twisted.web.wsgi import WSGIResource

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flask_hello import app  # noqa: E402


class QuietSite(server.Site):
    def log(self, request):
        pass


if __name__ == "__main__":
    root = resource.Resource()
    root.putChild(b"wsgi", WSGIResource(reactor, reactor.getThreadPool(), app))
    site = QuietSite(root)
    site.noisy = False
    endpoints.TCP4ServerEndpoint(reactor, int(sys.argv[1]), interface="127.0.0.1",
                                 backlog=1024).listen(site)
    reactor.run()
