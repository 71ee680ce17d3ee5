"""twistd ``Options`` and ``makeService`` for ``twistd broker``. Nothing else."""

import os

from twisted.python import usage

from broker.config import ConfigError
from broker.node.model import DEFAULT_LISTEN, worker_count

__all__ = ["DEFAULT_CONFIG", "DEFAULT_LISTEN", "Options", "makeService"]

DEFAULT_CONFIG = os.path.join("etc", "broker.yaml")


class Options(usage.Options):
    """Command line of ``twistd broker``."""

    synopsis = "[--config etc/broker.yaml] [--listen ENDPOINT] [--pickup DIR] [--workers N|auto]"
    optParameters = [
        ["config", "c", None, f"The configuration file [default: {DEFAULT_CONFIG}, when present]"],
        ["listen", "l", None, f"HTTP listener endpoint, overriding the config [default: {DEFAULT_LISTEN}]"],
        ["pickup", "p", None, "Hot deploy: a directory whose *.py modules are deployed as they "
                              "change, overriding services.pickup"],
        ["workers", "w", None, "Worker processes sharing the listener: a number or auto (one per "
                               "CPU), overriding the config's workers [default: one process]"],
    ]

    def postOptions(self):
        """Load and check everything now, so a bad config stops startup with one line."""
        from broker.node import build_node

        path = self["config"]
        if path is None:
            if not os.path.exists(DEFAULT_CONFIG):
                raise SystemExit(f"broker: no --config given and {DEFAULT_CONFIG} does not exist here")
            path = DEFAULT_CONFIG
        try:
            self.node = build_node(path, listen=self["listen"], pickup=self["pickup"])
        except ConfigError as error:
            raise SystemExit(f"broker: {error}") from None
        if self.node.config.logging.format == "json" and getattr(self, "parent", None) is not None \
                and not self.parent.get("logger"):
            from broker.admin import logs  # noqa: PLC0415
            logs.TWISTD_LOGFILE = self.parent.get("logfile")
            self.parent["logger"] = "broker.admin.logs.twistd_json_observer"
        count = _workers(self["workers"], self.node.config.workers)
        if count is not None:  # the node was built to check it; the workers build their own
            from broker.workers.supervisor import Supervisor
            self.node = Supervisor(os.path.abspath(path), self.node.config, count,
                                   self.node.listener.endpoint, pickup=self["pickup"])


def _workers(option, configured):
    """How many worker processes: ``--workers`` (a number or auto), else the config's; None: one
    process, no workers."""
    if option is None:
        return configured
    try:
        return worker_count(option)
    except ValueError as error:
        raise SystemExit(f"broker: --workers: {error}") from None


def makeService(options):
    """The broker's root service, built by :meth:`Options.postOptions`."""
    return options.node
