"""``broker run`` (twistd in the foreground) and ``broker check``.

The installed ``broker`` command is the client's (:mod:`broker.client.cli`, which
needs no Twisted): it runs ``python -m broker.cli`` for these two."""

import argparse
import sys

__all__ = ["main"]


def main(argv=None):
    """``broker run [--config C] [--listen E] [--pickup DIR]`` or ``broker check [--config C]``."""
    parser = argparse.ArgumentParser(prog="broker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the broker in the foreground (twistd -n broker)")
    check = sub.add_parser("check", help="check a configuration file and its services, then exit")
    for p in (run, check):
        p.add_argument("--config", "-c", default=None)
    run.add_argument("--listen", "-l", default=None)
    run.add_argument("--pickup", "-p", default=None, help="hot deploy: a directory of modules")
    args = parser.parse_args(argv)
    if args.command == "check":
        from broker.config import ConfigError
        from broker.node import build_node
        from broker.tap import DEFAULT_CONFIG
        try:
            node = build_node(args.config or DEFAULT_CONFIG)
        except ConfigError as error:
            print(f"broker: {error}", file=sys.stderr)
            return 1
        print(f"broker: {args.config or DEFAULT_CONFIG} is valid ({len(node.store)} services, "
              f"{len(node.router.routes)} routes)")
        return 0
    from twisted.scripts.twistd import run as twistd
    sys.argv = ["twistd", "-n", "--pidfile=", "broker"]
    if args.config:
        sys.argv += ["--config", args.config]
    if args.listen:
        sys.argv += ["--listen", args.listen]
    if args.pickup:
        sys.argv += ["--pickup", args.pickup]
    twistd()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
