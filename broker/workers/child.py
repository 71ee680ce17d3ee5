"""A worker process: one node built from the config, serving on the listening socket it inherits.

The main process (:mod:`broker.workers.supervisor`) starts it as
``python -m broker.workers.child`` with the listening socket as fd 3 and its
end of the link as fd 4.  It logs JSON lines on stdout (the main process
logs them again, saying which worker), stops cleanly on SIGTERM within
``limits.shutdown_timeout`` and stops at once when the main process is gone.
"""

import argparse
import os
import socket
import sys

__all__ = ["main"]

_FAMILIES = {"inet": socket.AF_INET, "inet6": socket.AF_INET6, "unix": socket.AF_UNIX}


def _arguments(argv):
    parser = argparse.ArgumentParser(prog="broker-worker", description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--primary", action="store_true")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--pickup", default=None)
    parser.add_argument("--endpoint", required=True, help="the listening endpoint string (TLS)")
    parser.add_argument("--family", choices=sorted(_FAMILIES), required=True)
    parser.add_argument("--listen-fd", type=int, default=3)
    parser.add_argument("--link-fd", type=int, default=4)
    return parser.parse_args(argv)


def main(argv=None):
    args = _arguments(sys.argv[1:] if argv is None else argv)
    from twisted.internet import reactor
    from twisted.logger import Logger, globalLogBeginner, jsonFileLogObserver

    globalLogBeginner.beginLoggingTo([jsonFileLogObserver(sys.stdout)], redirectStandardIO=False)
    log = Logger(namespace="broker.workers.child")

    from broker.config import ConfigError
    from broker.node import build_node
    from broker.workers.link import Link, LinkFactory
    from broker.workers.shared import WorkerRole

    link = Link({}, {}, reactor)
    role = WorkerRole(args.id, link, args.primary, args.count)
    try:
        node = build_node(args.config, reactor=reactor, worker=role, pickup=args.pickup,
                          adopt=(args.listen_fd, _FAMILIES[args.family], args.endpoint))
    except ConfigError as error:
        print(f"broker worker {args.id}: {error}", file=sys.stderr, flush=True)
        return 2
    link.handlers["report"] = lambda: _report(node, role)
    stopping = []

    def stop():
        stopping.append(True)
        return node.stopService()  # within limits.shutdown_timeout

    def main_gone(_link):
        if not stopping:
            log.warn("worker {id}: the main process is gone; stopping", id=args.id)
            reactor.stop()

    link.on_lost = main_gone
    reactor.adoptStreamConnection(args.link_fd, socket.AF_UNIX, LinkFactory(lambda: link))
    os.close(args.link_fd)

    node.startService()
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.callWhenRunning(lambda: link.notify("ready", args.id, os.getpid()))
    reactor.run()
    return 0


def _report(node, role):
    ok, checks = node.resources.health_report()
    return {"id": role.id, "pid": os.getpid(), "primary": role.primary, "ok": ok,
            "checks": checks, "counters": node.resources.metrics_report()}


if __name__ == "__main__":
    sys.exit(main())
