"""``logging.format``: the node's log lines as text (twistd's) or as JSON lines.

A JSON line has ``time`` (ISO 8601 UTC), ``level``, ``namespace``, ``cid``,
``service``, ``channel`` and ``message`` (the event's text, then a failure's
traceback).  ``cid``, ``service`` and ``channel`` come from the event's own
fields, else from the call running when it was logged
(:data:`broker.services.tracing.CURRENT`), so every line a request causes
names its correlation id.  Only those keys are written: an event's other
fields never reach the line unless its format puts them in the message, and
credentials that a message may quote (``Authorization`` values, URL
passwords, ``password=``) are masked.
"""

import json
import re
import sys
from datetime import datetime, timezone

from twisted.logger import FileLogObserver, formatEvent

from broker.components import ComponentType
from broker.config.schema import Choice, Field, Schema
from broker.services.tracing import CURRENT

__all__ = ["LOGGING", "LOGGING_SECTION", "json_line", "json_observer", "mask_secrets",
           "twistd_json_observer"]

_SECRETS = (
    (re.compile(r"(?i)\b(basic|bearer|digest)\s+[A-Za-z0-9._~+/=-]{4,}"), r"\1 ***"),
    (re.compile(r"(?i)(://[^/\s:@]*:)[^@\s/]+@"), r"\1***@"),
    (re.compile(r"(?i)\b(password|passwd|secret|api[_-]?key|token)(\"?\s*[=:]\s*\"?)[^\s\"&,;}]+"),
     r"\1\2***"),
)


def mask_secrets(text):
    """``text`` with credentials it may quote replaced by ``***``."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _call_fields(event):
    cid, service, channel = event.get("cid"), event.get("service"), event.get("channel")
    call = CURRENT.get()
    if call is not None:
        name, request = call
        cid = cid or request.cid
        service = service or name
        channel = channel or request.channel.name
    if channel is not None and not isinstance(channel, str):
        channel = getattr(channel, "name", str(channel))
    return cid, service, channel


def json_line(event):
    """One event as a JSON line (with its newline)."""
    cid, service, channel = _call_fields(event)
    level = event.get("log_level")
    message = formatEvent(event) or ""
    failure = event.get("log_failure")
    if failure is not None:
        try:
            message = f"{message}\n{failure.getTraceback()}"
        except Exception:  # a failure that cannot render still leaves its line
            message = f"{message}\n{failure.getErrorMessage()}"
    record = {
        "time": datetime.fromtimestamp(event.get("log_time") or 0, timezone.utc).isoformat(
            timespec="milliseconds"),
        "level": level.name if level is not None else "info",
        "namespace": event.get("log_namespace"),
        "cid": cid if cid is None else str(cid),
        "service": service if service is None else str(service),
        "channel": channel,
        "message": mask_secrets(message),
    }
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


def json_observer(out=None):
    """An ``ILogObserver`` writing :func:`json_line` lines to ``out`` (stdout by default)."""
    return FileLogObserver(out if out is not None else sys.stdout, json_line)


#: Where :func:`twistd_json_observer` writes: twistd's ``--logfile`` (``broker.tap`` sets it).
TWISTD_LOGFILE = None


def twistd_json_observer():
    """For twistd's ``logger`` option (a name it imports): JSON lines to where its text
    would go (stdout for ``-`` or none, under ``--nodaemon``; else the log file)."""
    logfile = TWISTD_LOGFILE
    if not logfile or logfile == "-":
        return json_observer(sys.stdout)
    from twisted.python.logfile import LogFile  # noqa: PLC0415
    return json_observer(LogFile.fromFullPath(logfile))


LOGGING_SECTION = Schema("logging", {
    "format": Field(Choice("text", "json"), default="text",
                    doc="json: one JSON object a line (time, level, namespace, cid, service, "
                        "channel, message)"),
})

#: The ``logging:`` section; twistd reads it (``broker.tap``) before logging starts.
LOGGING = ComponentType(LOGGING_SECTION, lambda section, ctx: None)
