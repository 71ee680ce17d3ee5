"""The ``broker`` command: ``broker run`` (twistd in the foreground) and ``broker check``."""

import argparse
import sys

__all__ = ["main"]


def main(argv=None):
    """``broker run [--config C] [--listen E]`` or ``broker check [--config C]``."""
    parser = argparse.ArgumentParser(prog="broker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the broker in the foreground (twistd -n broker)")
    check = sub.add_parser("check", help="check a configuration file and its services, then exit")
    for p in (run, check):
        p.add_argument("--config", "-c", default=None)
    run.add_argument("--listen", "-l", default=None)
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
    twistd()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
