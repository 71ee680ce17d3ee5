"""The ``broker`` command on the client side: talk to a running broker over HTTP (no Twisted).

::

    broker invoke demo.echo '{"text": "hi"}'       # or - to read the JSON from stdin
    broker publish demo.hello '{"text": "hi"}'
    broker subscribe 'demo.#'                       # prints messages as they come, resumes
    broker amqp-publish demo '{"text": "hi"}' --routing-key echo.1
    broker deploy plugins/orders.py
    broker config export > running.yaml
    broker config import running.yaml --dry-run
    broker jobs list | broker jobs run NAME | broker jobs enable|disable NAME
    broker status

The address and credentials come from ``--address``/``--user``/``--password``
or ``BROKER_ADDRESS`` (default ``http://127.0.0.1:17010``), ``BROKER_USER``
and ``BROKER_PASSWORD``.  ``--json`` prints the broker's answer as JSON.

Exit codes: 0 done; 1 the broker answered an error (its message is printed);
2 a usage mistake; 3 the broker could not be reached.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import quote

from .errors import ConnectionFailed, Timeout
from .transport import Transport

__all__ = ["main"]

DEFAULT_ADDRESS = "http://127.0.0.1:17010"
OK, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 3
SERVER_COMMANDS = ("run", "check")


class CommandError(Exception):
    """A failure to report in one line, with its exit code."""

    def __init__(self, message, code=FAILED):
        super().__init__(message)
        self.code = code


def main(argv=None, stdin=None, stdout=None, stderr=None):
    """Run one command; the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    if argv[:1] and argv[0] in SERVER_COMMANDS:
        return _run_server(argv, stderr)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:
        return USAGE if exit.code not in (0, None) else OK
    for name, default in _COMMON_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        cli = _CLI(args, stdin, stdout)
        return args.run(cli) or OK
    except CommandError as error:
        print(f"broker: {error}", file=stderr)
        return error.code
    except (ConnectionFailed, Timeout) as error:
        print(f"broker: {error}", file=stderr)
        return UNREACHABLE
    except KeyboardInterrupt:
        return OK


_COMMON_DEFAULTS = {"address": None, "user": None, "password": None, "json": False,
                    "compact": False, "timeout": 30.0}


class _CLI:
    def __init__(self, args, stdin, stdout):
        self.args, self.stdin, self.stdout = args, stdin, stdout
        address = args.address or os.environ.get("BROKER_ADDRESS") or DEFAULT_ADDRESS
        user = args.user or os.environ.get("BROKER_USER")
        password = args.password if args.password is not None else os.environ.get("BROKER_PASSWORD")
        if user and password is None:
            raise CommandError("--user needs a password (--password or BROKER_PASSWORD)", USAGE)
        self.auth = (user, password) if user else None
        try:
            self.transport = Transport(address, self.auth, timeout=args.timeout, retries=1)
        except ValueError as error:
            raise CommandError(f"--address: {error}", USAGE) from None
        self.address = self.transport.address

    def call(self, method, path, body=None, headers=None, expect_json=True):
        """One request; the decoded answer, or :class:`CommandError` with the broker's message."""
        status, headers, content = self.transport.request(method, path, body, headers)
        data = None
        if "json" in headers.get("content-type", ""):
            try:
                data = json.loads(content) if content.strip() else None
            except ValueError:
                data = None
        if status >= 400:
            details = data.get("details") if isinstance(data, dict) else None
            message = f"{status} {details or content[:200].decode('utf-8', 'replace') or 'error'}"
            if isinstance(data, dict) and self.args.json:
                self.print_json(data)
            raise CommandError(message)
        return data if expect_json else content

    def print_json(self, value):
        self.stdout.write(json.dumps(value, indent=None if self.args.compact else 2,
                                     ensure_ascii=False) + "\n")
        self.stdout.flush()

    def say(self, text):
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def data_argument(self, text):
        """The JSON argument, ``-`` for stdin, None for nothing."""
        if text is None:
            return None
        if text == "-":
            text = self.stdin.read()
        try:
            return json.loads(text)
        except ValueError as error:
            raise CommandError(f"data: not JSON: {error}", USAGE) from None


def _run_server(argv, stderr):
    """``broker run`` and ``broker check`` are the server's: run them as ``python -m broker.cli``."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec("broker.cli") is None:
        print(f"broker: {argv[0]} needs the broker package, not only broker-client", file=stderr)
        return USAGE
    try:
        return subprocess.call([sys.executable, "-m", "broker.cli", *argv])
    except KeyboardInterrupt:
        return OK


# -- commands -----------------------------------------------------------------------------

def _invoke(cli):
    data = cli.data_argument(cli.args.data)
    answer = cli.call("POST", "/broker/invoke", {"service": cli.args.service, "data": data})
    cli.print_json(answer)


def _publish(cli):
    data = cli.data_argument(cli.args.data)
    answer = cli.call("POST", f"/broker/publish/{quote(cli.args.topic, safe='')}", data)
    cli.print_json(answer) if cli.args.json else cli.say(answer.get("msg_id", ""))


def _amqp_publish(cli):
    data = {"outgoing": cli.args.outgoing, "data": cli.data_argument(cli.args.data)}
    if cli.args.routing_key:
        data["routing_key"] = cli.args.routing_key
    if cli.args.header:
        headers = {}
        for item in cli.args.header:
            key, equals, value = item.partition("=")
            if not equals or not key:
                raise CommandError(f"--header: expected NAME=VALUE, got {item!r}", USAGE)
            headers[key] = value
        data["headers"] = headers
    answer = cli.call("POST", "/broker/invoke", {"service": "broker.amqp.publish", "data": data})
    cli.print_json(answer) if cli.args.json else cli.say(
        f"{answer.get('status')} {answer.get('message_id')}")


def _deploy(cli):
    path = Path(cli.args.file)
    try:
        source = path.read_bytes()
    except OSError as error:
        raise CommandError(f"{path}: {error.strerror or error}", USAGE) from None
    answer = cli.call("POST", f"/broker/admin/deploy?file={quote(path.name)}", source,
                      {"Content-Type": "text/x-python"})
    cli.print_json(answer) if cli.args.json else cli.say(
        f"deployed {answer['file']}: {', '.join(answer['services']) or 'no services'}")


def _config_export(cli):
    text = cli.call("GET", "/broker/admin/config/export", expect_json=False).decode("utf-8")
    if cli.args.output:
        Path(cli.args.output).write_text(text, encoding="utf-8")
    else:
        cli.stdout.write(text)


def _config_import(cli):
    try:
        body = Path(cli.args.file).read_bytes()
    except OSError as error:
        raise CommandError(f"{cli.args.file}: {error.strerror or error}", USAGE) from None
    query = "?dry_run=true" if cli.args.dry_run else ""
    answer = cli.call("POST", "/broker/admin/config/import" + query, body,
                      {"Content-Type": "application/yaml"})
    if cli.args.json:
        return cli.print_json(answer)
    changes = answer["changes"]
    verb = "would change" if answer["dry_run"] else "changed"
    cli.say(f"{verb} {len(changes)} item(s)" + (":" if changes else " (nothing to do)"))
    for change in changes:
        cli.say(f"  {change['change']:8} {change['kind']} {change['id']}")


def _jobs_list(cli):
    answer = cli.call("GET", "/broker/admin/jobs")
    if cli.args.json:
        return cli.print_json(answer)
    for job in answer.get("jobs", []):
        state = "enabled" if job.get("enabled", True) else "disabled"
        cli.say(f"{job['name']}\t{state}\tlast: {job.get('last_run') or '-'}\t"
                f"next: {job.get('next_run') or '-'}")


def _jobs_run(cli):
    answer = cli.call("POST", f"/broker/admin/jobs/{quote(cli.args.name, safe='')}/run", {})
    cli.print_json(answer) if cli.args.json else cli.say(f"ran {cli.args.name}")


def _jobs_switch(cli):
    action = cli.args.action
    answer = cli.call("POST", f"/broker/admin/jobs/{quote(cli.args.name, safe='')}/{action}", {})
    cli.print_json(answer) if cli.args.json else cli.say(f"{action}d {cli.args.name}")


def _status(cli):
    ping = cli.call("GET", "/broker/ping")
    status, headers, content = cli.transport.request("GET", "/broker/health")
    health = json.loads(content) if "json" in headers.get("content-type", "") else {}
    report = {"address": cli.address, "name": ping.get("name"), "status": health.get("status"),
              "checks": health.get("checks", {})}
    if cli.auth:
        try:
            report["config"] = cli.call("GET", "/broker/admin/config")
        except CommandError:
            pass
    if cli.args.json:
        cli.print_json(report)
    else:
        cli.say(f"{report['name']} at {cli.address}: {report['status']}")
        for name, check in sorted(report["checks"].items()):
            cli.say(f"  {name}: {'ok' if check.get('ok') else 'NOT OK'}")
        if "config" in report:
            counts = ", ".join(f"{k} {v}" for k, v in report["config"]["kinds"].items())
            cli.say(f"  config: {counts} (state: {report['config']['state']})")
    return OK if status == 200 else FAILED


def _subscribe(cli):
    """Print each message as it comes; reconnect and resume from the last one seen."""
    try:
        from websockets.sync.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus
    except ImportError:
        raise CommandError("subscribe needs the websockets package (pip install websockets)",
                           USAGE) from None
    url = "ws" + cli.address[4:] + "/ws"
    headers = {k: v for k, v in cli.transport.headers.items() if k.lower() == "authorization"}
    last, seen, delay = None, 0, 0.2
    while True:
        try:
            with connect(url, additional_headers=headers, open_timeout=cli.args.timeout) as ws:
                request = {"op": "subscribe", "id": 1, "topic": cli.args.pattern}
                if last is not None:
                    request["since"] = last
                ws.send(json.dumps(request))
                for frame in ws:
                    message = json.loads(frame)
                    if message.get("op") == "error":
                        raise CommandError(f"{message.get('code')}: {message.get('details')}")
                    if message.get("op") != "message":
                        delay = 0.2
                        continue
                    last = message.get("msg_id", last)
                    if cli.args.json:
                        cli.say(json.dumps(message, ensure_ascii=False))
                    else:
                        cli.say(f"{message['topic']} {json.dumps(message.get('data'))}")
                    seen += 1
                    if cli.args.count and seen >= cli.args.count:
                        return OK
        except InvalidStatus as error:
            raise CommandError(f"subscribe refused: HTTP {error.response.status_code}") from None
        except (ConnectionClosed, OSError, TimeoutError):
            if cli.args.no_reconnect:
                raise CommandError("the connection closed", UNREACHABLE) from None
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


# -- the parser ------------------------------------------------------------------------------

def _parser():
    # Given before or after the command: defaults are filled in by main(), not here, so a
    # subcommand's parser does not overwrite what the top level read.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--address", "-a", help=f"the broker's URL (BROKER_ADDRESS; default "
                                                f"{DEFAULT_ADDRESS})")
    common.add_argument("--user", "-u", help="Basic Auth user (BROKER_USER)")
    common.add_argument("--password", "-p", help="Basic Auth password (BROKER_PASSWORD)")
    common.add_argument("--json", action="store_true", help="print the answer as JSON")
    common.add_argument("--compact", action="store_true", help="JSON on one line")
    common.add_argument("--timeout", type=float, help="seconds to wait (default 30)")
    parser = argparse.ArgumentParser(
        prog="broker", parents=[common], description="Talk to a running broker.",
        epilog="exit codes: 0 done, 1 the broker answered an error, 2 usage, 3 unreachable; "
               "'broker run' and 'broker check' run the broker itself")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, run, help):
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(run=run)
        return p

    p = command("invoke", _invoke, "invoke a service (through /broker/invoke) and print its answer")
    p.add_argument("service")
    p.add_argument("data", nargs="?", help="the input as JSON, or - to read it from stdin")
    p = command("publish", _publish, "publish a message to a topic")
    p.add_argument("topic")
    p.add_argument("data", nargs="?", help="the message as JSON, or - to read it from stdin")
    p = command("subscribe", _subscribe, "print the messages of topics matching PATTERN as they "
                                         "come; reconnects and resumes where it was")
    p.add_argument("pattern")
    p.add_argument("--count", type=int, default=0, help="stop after this many messages")
    p.add_argument("--no-reconnect", action="store_true", help="stop when the connection closes")
    p = command("amqp-publish", _amqp_publish, "publish to RabbitMQ through a named AMQP outgoing "
                                               "connection (waits for the confirm)")
    p.add_argument("outgoing")
    p.add_argument("data", nargs="?", help="the message as JSON, or - to read it from stdin")
    p.add_argument("--routing-key", "-k")
    p.add_argument("--header", "-H", action="append", help="NAME=VALUE, repeatable")
    p = command("deploy", _deploy, "hot deploy a module of services on the broker")
    p.add_argument("file")
    p = command("config", None, "export or import the running configuration")
    config = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    e = config.add_parser("export", parents=[common], help="write the running configuration as "
                                                           "YAML (secrets as ${ENV} references)")
    e.add_argument("--output", "-o", help="a file (default: stdout)")
    e.set_defaults(run=_config_export)
    i = config.add_parser("import", parents=[common], help="apply a configuration file: the kinds "
                                                           "it lists are made to match it")
    i.add_argument("file")
    i.add_argument("--dry-run", action="store_true", help="only say what would change")
    i.set_defaults(run=_config_import)
    p = command("jobs", None, "list the scheduler's jobs, run one now, enable or disable one")
    jobs = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    jobs.add_parser("list", parents=[common], help="every job, its last and next run").set_defaults(
        run=_jobs_list)
    r = jobs.add_parser("run", parents=[common], help="run a job now")
    r.add_argument("name")
    r.set_defaults(run=_jobs_run)
    for action in ("enable", "disable"):
        a = jobs.add_parser(action, parents=[common], help=f"{action} a job (on every node "
                                                           "sharing the job state)")
        a.add_argument("name")
        a.set_defaults(run=_jobs_switch)
    command("status", _status, "the node's name, health checks and configuration counts")
    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
