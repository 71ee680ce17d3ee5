"""Building components from config sections, in the order their needs give.

The :class:`Assembler` lists every section a config declares (security
definitions, connections, outgoing connections, features, channels), orders
them so that each is built after what it :class:`~broker.components.Needs`,
and builds each into a :class:`~broker.components.Component` attached to the
node's parts.  The same assembler rebuilds one component (and those built on
it) when its section changes while the node runs.
"""

from twisted.logger import Logger

from broker.components import (CHANNEL, CONNECTION, FEATURE, KINDS, OUTGOING, SECURITY,
                               BuildContext, Component)
from broker.config import ConfigError
from broker.config.schema import config_error

__all__ = ["Assembler", "Registry", "URLSection"]

log = Logger()


class Registry:
    """The component types a node knows, by kind, then by config ``type`` or feature key.

    :param types: ``{kind: {type: ComponentType}}``.
    :param url_connections: ``{connection type: (name_of(url), ComponentType)}`` for
        connection types a section may name by URL (``redis://...``) instead of by
        name: one connection per address, built from a :class:`URLSection`.
    """

    def __init__(self, types, url_connections=None):
        self.types = types
        self.url_connections = dict(url_connections or {})

    def type_of(self, key, section):
        kind, name = key
        if isinstance(section, URLSection):
            return self.url_connections[section.type][1]
        return self.types[kind][name if kind == FEATURE else section.type]


class URLSection:
    """The section of a connection a feature named by URL: where it was named, and the URL.

    Errors about it are reported at the key that gave the URL.
    """

    def __init__(self, type, name, url, named_in, key):
        self.type, self.name, self.url, self.named_in, self.key = type, name, url, named_in, key

    def get(self, key, default=None):
        return {"type": self.type, "name": self.name}.get(key, default)


class Assembler:
    """Builds, orders and attaches the components of one node.

    :param parts: the node's :class:`~broker.components.NodeParts`.
    :param registry: the :class:`Registry`.
    """

    def __init__(self, parts, registry):
        self.parts = parts
        self.registry = registry
        self.built = {}  # key -> attached Component, in build order

    # -- a whole config ------------------------------------------------------------------

    def sections(self, config):
        """Every ``(key, section)`` the config declares, kinds in :data:`KINDS` order."""
        found = [((SECURITY, s.name), s) for s in config.security]
        found += [((CONNECTION, s.name), s) for s in config.connections]
        found += [((OUTGOING, s.name), s) for s in config.outgoing]
        for name, ctype in self.registry.types[FEATURE].items():
            found.append(((FEATURE, name), config[ctype.section or name]))
        found += [((CHANNEL, s.name), s) for s in config.channels]
        return found

    def build_all(self, config):
        """Build and attach every component ``config`` declares; the list in build order."""
        for key, section in self.order(self.sections(config), self.built):
            if not self.here(key, section):
                continue
            component = self.build(key, section, self.built)
            component.attach(self.parts)
            self.built[key] = component
        return list(self.built.values())

    def here(self, key, section):
        """Whether this process builds ``key``: every section, but in a node of worker
        processes one that must run once per node is built by the primary worker alone."""
        worker = self.parts.worker
        if worker is None or worker.primary:
            return True
        once = getattr(self.registry.type_of(key, section), "once_per_node", None)
        if once is not None and once(section):
            log.info("{kind} {name} runs in the primary worker only", kind=key[0], name=key[1])
            return False
        return True

    def order(self, declared, built):
        """``declared`` and the connections they name by URL, each after what it needs.

        Kinds keep :data:`~broker.components.KINDS` order and sections their
        config order unless a need says otherwise.

        :param built: ``{key: Component}`` already there (needs they meet are met).
        :raise ConfigError: at the key naming something nobody declares, or for
            needs in a circle.
        """
        declared = list(declared)
        sections = dict(declared)
        needs = {}
        for key, section in list(declared):
            needs[key] = set()
            for need, wanted, where in self._needs(key, section):
                if wanted in built:
                    if not self._fits(need, built[wanted].section):
                        raise self._missing(where, need, wanted, sections, built)
                    continue
                if wanted not in sections:
                    implicit = self._by_url(need, wanted, where)
                    if implicit is None:
                        raise self._missing(where, need, wanted, sections, built)
                    declared.append((wanted, implicit))
                    sections[wanted] = implicit
                    needs[wanted] = set()
                elif not self._fits(need, sections[wanted]):
                    raise self._missing(where, need, wanted, sections, built)
                needs[key].add(wanted)
        pending = sorted(declared, key=lambda item: KINDS.index(item[0][0]))
        ordered, placed = [], set()
        while pending:
            ready = next((item for item in pending if needs[item[0]] <= placed), None)
            if ready is None:
                names = ", ".join(f"{kind} {name}" for (kind, name), _ in pending)
                raise ConfigError(f"these need one another in a circle: {names}")
            ordered.append(ready)
            placed.add(ready[0])
            pending.remove(ready)
        return ordered

    # -- one component --------------------------------------------------------------------

    def build(self, key, section, built):
        """Build one component from its section; nothing of the node changes yet.

        :param built: ``{key: Component}`` its needs are found in.
        """
        ctype = self.registry.type_of(key, section)
        needs = self._needs(key, section)
        for need, wanted, where in needs:
            if wanted[0] == FEATURE and built[wanted].value is None:
                raise config_error(where, need.key, f"{wanted[1]} is not configured on this node")
        component = Component(key, section, [wanted for _, wanted, _ in needs],
                              getattr(ctype, "takes_work", False))
        ctx = BuildContext(self.parts, component, built, self.connection_name)
        if key[0] == CHANNEL:
            ctx.require_service(section)
        value = component.value = ctype.build(section, ctx)
        if value is None:
            return component
        if key[0] == OUTGOING:
            ctx.add_outgoing(ctype.kind, key[1], value)
        if key[0] == CHANNEL and _is_route(value):
            ctx.add_route(value)
        elif hasattr(value, "setServiceParent"):
            ctx.add_service(value)
        return component

    def rebuild(self, key, section):
        """Build ``section`` as component ``key`` and rebuild everything built on ``key``.

        Nothing of the node changes: :meth:`swap` puts them in place.

        :return: the new components in build order.
        :raise ConfigError: the section (or a rebuilt one) fails its checks.
        """
        replaced = [key, *self.dependents(key)]
        sections = [(key, section), *((k, self.built[k].section) for k in replaced[1:])]
        view = {k: c for k, c in self.built.items() if k not in replaced}
        new = []
        for k, s in self.order(sections, view):
            component = view[k] = self.build(k, s, view)
            new.append(component)
        return new

    def swap(self, new):
        """Detach the components ``new`` replaces and attach ``new``, all or nothing.

        :return: the replaced components (to be stopped).
        """
        old = [self.built[c.key] for c in new if c.key in self.built]
        for component in reversed(old):
            component.detach(self.parts)
        attached = []
        try:
            for component in new:
                component.attach(self.parts)
                attached.append(component)
        except Exception:
            for component in reversed(attached):
                component.detach(self.parts)
            for component in old:
                component.attach(self.parts)
            raise
        fresh = {c.key: c for c in new}
        self.built = {k: fresh.pop(k, c) for k, c in self.built.items()}
        self.built.update(fresh)
        return old

    def remove(self, key):
        """Detach component ``key``; refused while others are built on it.

        :return: the component (to be stopped).
        :raise KeyError: no such component.
        :raise ValueError: naming the components that need it.
        """
        component = self.built[key]
        users = self.dependents(key)
        if users:
            raise ValueError(f"{key[0]} {key[1]} is needed by "
                             + ", ".join(f"{kind} {name}" for kind, name in users))
        component.detach(self.parts)
        del self.built[key]
        return component

    def dependents(self, key):
        """Keys of the built components that need ``key``, directly or not, in build order."""
        found = {key}
        for other, component in self.built.items():
            if component.needs & found:
                found.add(other)
        return [other for other in self.built if other in found and other != key]

    def connection_name(self, type, value):
        """The connection a section's value names: itself, or for a URL its address."""
        if "://" in value and type in self.registry.url_connections:
            return self.registry.url_connections[type][0](value)
        return value

    # -- needs ------------------------------------------------------------------------------

    def _needs(self, key, section):
        """``(Needs, wanted key, section naming it)`` for everything ``section`` needs."""
        if isinstance(section, URLSection):
            return []
        found = []
        for need in self.registry.type_of(key, section).needs:
            for wanted, where in need.of(section):
                if wanted[0] == CONNECTION:
                    try:
                        wanted = (CONNECTION, self.connection_name(need.type, wanted[1]))
                    except ValueError as error:
                        raise config_error(where, need.key, str(error)) from None
                found.append((need, wanted, where))
        return found

    def _by_url(self, need, wanted, section):
        """A :class:`URLSection` when ``section`` names this connection by URL, else None."""
        url = section.get(need.key) if need.kind == CONNECTION else None
        if url is None or "://" not in url or need.type not in self.registry.url_connections:
            return None
        return URLSection(need.type, wanted[1], url, section, need.key)

    @staticmethod
    def _fits(need, section):
        return need.kind != CONNECTION or section.get("type") == need.type

    def _missing(self, section, need, wanted, sections, built):
        """The error for a need nobody declares, at the key naming it."""
        kind, name = wanted
        if kind == FEATURE:
            return config_error(section, need.key, f"{name} is not configured on this node")
        declared = {**{k: c.section for k, c in built.items()}, **sections}
        if kind == SECURITY:
            known = sorted(n for k, n in declared if k == SECURITY)
            return config_error(section, need.key, f'no security definition "{name}" '
                                                   f'(known: {", ".join(known) or "none"})')
        known = sorted(n for (k, n), s in declared.items()
                       if k == CONNECTION and s.get("type") == need.type)
        return config_error(section, need.key, f'no {need.type} connection "{name}" in '
                                               f'connections (known: {", ".join(known) or "none"})')


def _is_route(value):
    return hasattr(value, "regex") and hasattr(value, "methods")
