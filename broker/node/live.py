"""Live configuration: list, read, create, update and delete what the config file declares.

Each kind the admin API changes is a list in the config file: ``channels``,
``outgoing``, ``connections``, ``security`` (one component each), and the
``jobs`` of the scheduler, the ``caches`` (``cache.named``) and the pub/sub
``topics`` (items of a feature's section: changing one rebuilds the feature).
A section is checked by the same schema as the file and applied with
:meth:`BrokerNode.replace` / :meth:`BrokerNode.remove`: a section that fails
changes nothing and the error names the field.  Every change is recorded in
the node's :class:`~broker.node.livestate.LiveState` and logged with who
made it.

The running configuration is kept as written (``${ENV}`` references left in
place): the file's own text, with every change applied over it.  That is what
:meth:`LiveConfig.export` writes, secrets given as values replaced by
``${ENV}`` references.
"""

import copy
import re

import yaml
from twisted.internet import defer, task
from twisted.logger import Logger

from broker.components import CHANNEL, CONNECTION, FEATURE, OUTGOING, SECURITY
from broker.config import ConfigError
from broker.config.loader import parse_yaml
from broker.errors import BadRequest, BrokerError, NotFound, ServiceUnavailable

__all__ = ["Conflict", "InvalidConfig", "KINDS", "LiveConfig", "mask_secrets"]

log = Logger()


class Kind:
    """One kind of object the admin API changes.

    :param name: its name in URLs (``channels``).
    :param path: where its list sits in the config file (``("scheduler", "jobs")``).
    :param component: the component kind of each item, or None for items of a feature.
    :param feature: the feature whose section holds the list (items of a feature).
    :param id_key: the key naming an item (``name``; ``pattern`` for topics).
    """

    def __init__(self, name, path, component=None, feature=None, id_key="name"):
        self.name, self.path, self.component, self.feature, self.id_key = \
            name, path, component, feature, id_key

    def key(self, item_id):
        return (self.component, item_id) if self.component else (FEATURE, self.feature)


#: Kinds in the order changes are applied (what others need first); deletions go the other way.
KINDS = {kind.name: kind for kind in (
    Kind("security", ("security",), SECURITY),
    Kind("connections", ("connections",), CONNECTION),
    Kind("outgoing", ("outgoing",), OUTGOING),
    Kind("caches", ("cache", "named"), feature="cache"),
    Kind("jobs", ("scheduler", "jobs"), feature="scheduler"),
    Kind("topics", ("pubsub", "topics"), feature="pubsub", id_key="pattern"),
    Kind("channels", ("channels",), CHANNEL),
)}

_SECRET_KEYS = frozenset({"password", "key", "secret", "token", "api_key", "private_key"})
_URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.\-]*://[^/@]*:[^/@]+@", re.I)


class InvalidConfig(BadRequest):
    """A section that fails its checks; ``errors`` names the field."""

    code = "invalid_config"


class Conflict(BrokerError):
    code = "conflict"
    status = 409
    default_message = "Conflict"


class LiveConfig:
    """The node's configuration as it runs, changed one object at a time.

    :param node: the :class:`~broker.node.root.BrokerNode`.
    :param raw: the config file as written (plain values, ``${ENV}`` left in place).
    :param state: the node's :class:`~broker.node.livestate.LiveState`.
    :param file: the config file's path (relative paths in sections are read from there).
    """

    def __init__(self, node, raw, state, file=None, reactor=None):
        self.node = node
        self.raw = copy.deepcopy(raw) if isinstance(raw, dict) else {}
        self.state = state
        self.file = file
        self.reactor = reactor or node.reactor
        self.applied = {}      # "kind/id" -> raw (None: deleted), what this node applied
        self.problems = {}     # "kind/id" -> why a stored change could not be applied here
        self.counters = {"changes": 0, "refused": 0, "synced": 0, "sync_failures": 0,
                         "save_failures": 0}
        self._version = None
        self._poll = None
        self._lock = defer.DeferredLock()

    # -- reading ---------------------------------------------------------------------------

    def items(self, kind):
        """The items of ``kind`` as written (secrets masked)."""
        kind = _kind(kind)
        return [mask_secrets(item, kind.name) for item in self._list(kind)]

    def item(self, kind, item_id):
        kind = _kind(kind)
        found = self._find(kind, item_id)
        if found is None:
            raise NotFound(f"No {kind.name} item {item_id!r}")
        return mask_secrets(found, kind.name)

    def summary(self):
        return {"kinds": {name: len(self._list(kind)) for name, kind in KINDS.items()},
                "state": self.state.where, "problems": dict(self.problems),
                "counters": dict(self.counters)}

    def export(self):
        """The running configuration as YAML, secrets as ``${ENV}`` references."""
        tree = {key: mask_secrets(value, key) for key, value in self.raw.items()}
        for kind in KINDS.values():
            items = [mask_secrets(item, kind.name) for item in self._list(kind)]
            if items or _get(tree, kind.path) is not None:
                _set(tree, kind.path, items)
        return yaml.safe_dump(tree, sort_keys=False, default_flow_style=False, allow_unicode=True)

    # -- changing ----------------------------------------------------------------------------

    def create(self, kind, raw, who):
        kind = _kind(kind)
        raw = _item(raw)
        item_id = raw.get(kind.id_key)
        if not isinstance(item_id, str) or not item_id:
            return defer.fail(InvalidConfig(f"Invalid {kind.name}: {kind.id_key}: is required",
                                            [{"field": kind.id_key, "problem": "is required"}]))
        if self._find(kind, item_id) is not None:
            return defer.fail(Conflict(f"{kind.name} {item_id!r} exists already: update it with PUT"))
        return self.change(kind, item_id, raw, who, "created")

    def update(self, kind, item_id, raw, who):
        kind = _kind(kind)
        raw = _item(raw)
        raw.setdefault(kind.id_key, item_id)
        if raw[kind.id_key] != item_id:
            problem = f"must be {item_id!r}, the {kind.id_key} in the path"
            return defer.fail(InvalidConfig(f"Invalid {kind.name}: {kind.id_key}: {problem}",
                                            [{"field": kind.id_key, "problem": problem}]))
        if self._find(kind, item_id) is None:
            return defer.fail(NotFound(f"No {kind.name} item {item_id!r}: create it with POST"))
        return self.change(kind, item_id, raw, who, "updated")

    def delete(self, kind, item_id, who):
        kind = _kind(kind)
        if self._find(kind, item_id) is None:
            return defer.fail(NotFound(f"No {kind.name} item {item_id!r}"))
        return self.change(kind, item_id, None, who, "deleted")

    def change(self, kind, item_id, raw, who, verb, persist=True):
        """Apply one change (``raw`` None: delete), record it and log who made it.

        One change at a time: a Deferred firing once the new components run.
        """
        return self._lock.run(self._change, kind, item_id, raw, who, verb, persist)

    @defer.inlineCallbacks
    def _change(self, kind, item_id, raw, who, verb, persist):
        try:
            yield self._apply(kind, item_id, raw)
        except BrokerError:
            self.counters["refused"] += 1
            raise
        entry = f"{kind.name}/{item_id}"
        self.applied[entry] = raw
        self.problems.pop(entry, None)
        self.counters["changes"] += 1
        log.info("config {verb}: {kind} {id} by {who}", verb=verb, kind=kind.name, id=item_id, who=who)
        if persist:
            try:
                yield self.state.save(entry, raw, who)
            except Exception as error:
                self.counters["save_failures"] += 1
                log.error("config change to {kind} {id} applied here but not stored in {where}: "
                          "{error}", kind=kind.name, id=item_id, where=self.state.where,
                          error=str(error))
                raise ServiceUnavailable(f"The change to {kind.name} {item_id!r} is applied on this "
                                         f"node but could not be stored ({error}): it will not "
                                         f"survive a restart nor reach other nodes") from None
        return {"kind": kind.name, "id": item_id, "change": verb}

    def _apply(self, kind, item_id, raw):
        """Check ``raw`` and put it in place (or take the item away); nothing changes on error."""
        try:
            return self._replace(kind, item_id, raw)
        except ConfigError as error:
            raise _invalid(error, kind, item_id) from None

    def _replace(self, kind, item_id, raw):
        if kind.component is not None:
            key = kind.key(item_id)
            if raw is None:
                try:
                    d = self.node.remove(key)
                except KeyError:
                    raise NotFound(f"No {kind.name} item {item_id!r}") from None
                except ValueError as error:
                    raise Conflict(f"Cannot delete {kind.name} {item_id!r}: {error}") from None
            else:
                d = self.node.replace(key, self._check_item(kind, raw))
            self._put(kind, item_id, raw)
            return d
        feature_raw = copy.deepcopy(_get(self.raw, kind.path[:-1]) or {})
        items = [i for i in (feature_raw.get(kind.path[-1]) or []) if i.get(kind.id_key) != item_id]
        if raw is not None:
            position = _index(self._list(kind), kind.id_key, item_id)
            items.insert(position if position is not None else len(items), raw)
        feature_raw[kind.path[-1]] = items
        section = self._check({kind.path[0]: feature_raw}, kind, item_id)[kind.path[0]]
        d = self.node.replace(kind.key(item_id), section)
        self._put(kind, item_id, raw)
        return d

    def _check_item(self, kind, raw):
        """The checked section of one list item, or :class:`InvalidConfig` naming the field."""
        return self._check({kind.path[0]: [raw]}, kind, raw.get(kind.id_key))[kind.path[0]][0]

    def _check(self, tree, kind, item_id):
        from broker.node.model import root_schema
        try:
            text = yaml.safe_dump(tree, sort_keys=False)
            return root_schema().check(parse_yaml(text, self.file))
        except ConfigError as error:
            raise _invalid(error, kind, item_id) from None
        except yaml.YAMLError as error:
            raise InvalidConfig(f"Invalid {kind.name}: {error}") from None

    def check(self, kind, raw):
        """Check one item of ``kind`` without applying it; :class:`InvalidConfig` on error."""
        kind = _kind(kind)
        raw = _item(raw)
        if kind.component is not None:
            self._check_item(kind, raw)
        else:
            feature_raw = copy.deepcopy(_get(self.raw, kind.path[:-1]) or {})
            others = [i for i in feature_raw.get(kind.path[-1]) or []
                      if i.get(kind.id_key) != raw.get(kind.id_key)]
            feature_raw[kind.path[-1]] = [*others, raw]
            self._check({kind.path[0]: feature_raw}, kind, raw.get(kind.id_key))

    # -- the stored state --------------------------------------------------------------------

    @defer.inlineCallbacks
    def sync(self):
        """Apply the stored changes this node has not applied yet (at startup; from the
        other nodes when shared).  One that fails is logged and kept in ``problems``."""
        entries = yield self.state.load()
        pending = []
        for entry, record in entries.items():
            kind_name, _, item_id = entry.partition("/")
            kind = KINDS.get(kind_name)
            if kind is None or not item_id:
                continue
            raw = record.get("raw")
            if entry in self.applied and self.applied[entry] == raw:
                continue
            if raw is not None and self._find(kind, item_id) == raw:
                self.applied[entry] = raw
                continue
            if raw is None and self._find(kind, item_id) is None:
                self.applied[entry] = raw
                continue
            pending.append((kind, item_id, raw, record.get("who") or "?"))
        order = list(KINDS)
        puts = sorted((p for p in pending if p[2] is not None), key=lambda p: order.index(p[0].name))
        deletes = sorted((p for p in pending if p[2] is None), key=lambda p: -order.index(p[0].name))
        for kind, item_id, raw, who in deletes + puts:
            verb = "deleted" if raw is None else ("updated" if self._find(kind, item_id) else "created")
            try:
                yield self.change(kind, item_id, raw, f"{who} (stored)", verb, persist=False)
                self.counters["synced"] += 1
            except BrokerError as error:
                self.counters["sync_failures"] += 1
                self.problems[f"{kind.name}/{item_id}"] = error.message
                log.error("stored change to {kind} {id} not applied: {error}", kind=kind.name,
                          id=item_id, error=error.message)

    def start_polling(self):
        """Poll a shared state's version and :meth:`sync` when another node changed it."""
        if not self.state.shared or self._poll is not None:
            return
        self._poll = task.LoopingCall(self._poll_once)
        self._poll.clock = self.reactor
        self._poll.start(self.state.poll_interval, now=True)

    def stop_polling(self):
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        self._poll = None

    @defer.inlineCallbacks
    def _poll_once(self):
        try:
            version = yield self.state.version()
            if version != self._version:
                yield self.sync()
                self._version = version
        except Exception as error:  # Redis down: try again next time
            self.counters["sync_failures"] += 1
            log.warn("live configuration not synced from {where}: {error}", where=self.state.where,
                     error=str(error))

    # -- import ------------------------------------------------------------------------------

    def plan(self, tree):
        """What importing ``tree`` (a config as written) would change, checked.

        Kinds the file lists are made to match it (items it lacks are deleted);
        kinds it does not list are left alone.

        :return: ``[(Kind, id, raw or None, "created"|"updated"|"deleted")]``.
        :raise InvalidConfig: an item fails its checks (naming kind, item and field).
        """
        if not isinstance(tree, dict):
            raise InvalidConfig("Invalid import: the top level must be a mapping")
        changes = []
        for kind in KINDS.values():
            wanted = _get(tree, kind.path)
            if wanted is None:
                continue
            if not isinstance(wanted, list):
                raise InvalidConfig(f"Invalid import: {'.'.join(kind.path)}: expected a list",
                                    [{"field": ".".join(kind.path), "problem": "expected a list"}])
            seen = set()
            for item in wanted:
                item_id = item.get(kind.id_key) if isinstance(item, dict) else None
                if not isinstance(item_id, str) or item_id in seen:
                    problem = "is required" if item_id is None else f"{item_id!r} is used twice"
                    raise InvalidConfig(f"Invalid {kind.name}: {kind.id_key}: {problem}",
                                        [{"field": f"{kind.name}.{kind.id_key}", "problem": problem}])
                seen.add(item_id)
                current = self._find(kind, item_id)
                if current is not None:
                    item = _unmask(item, current, mask_secrets(current, kind.name))
                    if self._same(kind, current, item):
                        continue
                self.check(kind, item)
                changes.append((kind, item_id, item, "updated" if current is not None else "created"))
            for current in self._list(kind):
                if current.get(kind.id_key) not in seen:
                    changes.append((kind, current.get(kind.id_key), None, "deleted"))
        order = list(KINDS)
        puts = [c for c in changes if c[2] is not None]
        deletes = sorted((c for c in changes if c[2] is None), key=lambda c: -order.index(c[0].name))
        return deletes + sorted(puts, key=lambda c: order.index(c[0].name))

    @defer.inlineCallbacks
    def import_tree(self, tree, who, dry_run=False):
        """Import ``tree``; with ``dry_run`` only say what would change.  A change that
        fails undoes those made before it, so a bad file changes nothing."""
        changes = self.plan(tree)
        report = [{"kind": k.name, "id": i, "change": verb} for k, i, _, verb in changes]
        if dry_run:
            return report
        done = []
        try:
            for kind, item_id, raw, verb in changes:
                before = self._find(kind, item_id)
                yield self.change(kind, item_id, raw, who, verb)
                done.append((kind, item_id, before))
        except BrokerError:
            for kind, item_id, before in reversed(done):
                verb = "restored" if before is not None else "deleted"
                yield self.change(kind, item_id, before, f"{who} (import undone)", verb)
            raise
        return report

    def _same(self, kind, current, wanted):
        if current == wanted:
            return True
        try:
            if kind.component is not None:
                return self._check_item(kind, current) == self._check_item(kind, wanted)
        except InvalidConfig:
            return False
        return False

    # -- the tree as written ---------------------------------------------------------------------

    def _list(self, kind):
        return list(_get(self.raw, kind.path) or [])

    def _find(self, kind, item_id):
        for item in self._list(kind):
            if isinstance(item, dict) and item.get(kind.id_key) == item_id:
                return item
        return None

    def _put(self, kind, item_id, raw):
        items = self._list(kind)
        position = _index(items, kind.id_key, item_id)
        if raw is None:
            if position is not None:
                del items[position]
        elif position is None:
            items.append(copy.deepcopy(raw))
        else:
            items[position] = copy.deepcopy(raw)
        _set(self.raw, kind.path, items)


def _kind(kind):
    if isinstance(kind, Kind):
        return kind
    found = KINDS.get(kind)
    if found is None:
        raise NotFound(f"No such kind: {kind} (known: {', '.join(KINDS)})")
    return found


def _item(raw):
    if not isinstance(raw, dict):
        raise InvalidConfig("Invalid body: expected a JSON object")
    return copy.deepcopy(raw)


def _get(tree, path):
    for key in path:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def _set(tree, path, value):
    for key in path[:-1]:
        if not isinstance(tree.get(key), dict):
            tree[key] = {}
        tree = tree[key]
    tree[path[-1]] = value


def _index(items, id_key, item_id):
    for position, item in enumerate(items):
        if isinstance(item, dict) and item.get(id_key) == item_id:
            return position
    return None


def _invalid(error, kind, item_id):
    """:class:`InvalidConfig` from a :class:`ConfigError`, the field named inside its item."""
    key = error.key or ""
    prefix = ".".join(kind.path)
    if key.startswith(prefix + "["):
        key = re.sub(r"^\[\d+\]\.?", "", key[len(prefix):])
    field = key or None
    problem = error.problem
    message = f"Invalid {kind.name} {item_id!r}: " + (f"{field}: {problem}" if field else problem)
    return InvalidConfig(message, [{"field": field or kind.id_key, "problem": problem}])


def _unmask(wanted, current, masked):
    """``wanted`` with the ``${ENV}`` references an export wrote for ``current``'s secrets
    put back to their values (a file exported from this node says "unchanged" there)."""
    if isinstance(wanted, dict) and isinstance(current, dict) and isinstance(masked, dict):
        return {k: _unmask(v, current.get(k), masked.get(k)) for k, v in wanted.items()}
    if isinstance(wanted, list) and isinstance(current, list) and isinstance(masked, list) \
            and len(wanted) == len(current) == len(masked):
        return [_unmask(w, c, m) for w, c, m in zip(wanted, current, masked)]
    if isinstance(wanted, str) and wanted == masked and masked != current:
        return current
    return wanted


def mask_secrets(value, where, key=None):
    """``value`` with every secret given as a value replaced by a ``${ENV}`` reference.

    A secret is the value of a key such as ``password`` or ``key``, or a URL
    carrying a password; one already written as ``${NAME}`` stays as it is.
    """
    if isinstance(value, dict):
        name = value.get("name") or value.get("pattern") or ""
        here = f"{where}_{name}" if name else where
        return {k: mask_secrets(v, here, k) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, where, key) for v in value]
    if isinstance(value, str) and value and "${" not in value and (
            key in _SECRET_KEYS or _URL_PASSWORD.match(value)):
        return "${" + re.sub(r"[^A-Z0-9]+", "_", f"BROKER_{where}_{key}".upper()).strip("_") + "}"
    return value
