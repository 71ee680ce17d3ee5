"""The layers of ``broker/`` hold: no module imports a higher layer, lazily or not.

Every import statement of every module is read (function-level ones too),
so a lazy import cannot hide an upward edge.  The table is the one in
``docs/architecture.md``; a new top-level package must be placed in it.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "broker"

#: Lowest first.  A unit is a package or module directly under ``broker/``.
LAYERS = [
    ("foundation", {"errors", "ids", "jsonfast", "xmlsafe", "fastwrite", "config"}),
    ("core", {"services", "simpleio", "runtime", "security", "components", "channels"}),
    ("features", {"redis", "cache", "pubsub", "scheduler", "tasks"}),
    ("transports", {"http", "websocket", "amqp", "zmq", "wsgi", "loopback"}),
    ("root", {"node", "auth", "admin", "fixtures", "tap", "cli", "testing", "workers", "__init__"}),
]
#: Units that stand apart: they import nothing of the broker.
APART = {"client"}

RANK = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}
NAME = {unit: name for name, units in LAYERS for unit in units}


def unit_of(module):
    """``broker.http.app`` → ``http``; ``broker`` itself → ``__init__``; else None."""
    parts = module.split(".")
    if parts[0] != "broker":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path):
    relative = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path, module=None):
    """Every module ``path`` imports, absolute, with the line it does so on."""
    module = module or module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target, node.lineno
            for alias in node.names:  # ``from broker import xmlsafe`` imports broker.xmlsafe
                yield f"{target}.{alias.name}", node.lineno


def edges():
    """``(source unit, target unit, where)`` for every import between two units."""
    for path in sorted(ROOT.rglob("*.py")):
        source = unit_of(module_name(path))
        for target, line in imports(path):
            unit = unit_of(target)
            if unit is None or unit == source:
                continue
            if unit != "__init__" and not ((ROOT / unit).is_dir() or (ROOT / f"{unit}.py").exists()):
                continue  # ``from broker import Service``: a name of the package, not a unit
            yield source, unit, f"{path.relative_to(ROOT.parent)}:{line}"


def test_every_unit_has_a_layer():
    """A new package under broker/ must be placed in the table (and the docs)."""
    units = {p.stem if p.suffix else p.name for p in ROOT.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    missing = units - set(RANK) - APART
    assert not missing, f"place these in LAYERS (and docs/architecture.md): {sorted(missing)}"


def test_no_import_goes_up_a_layer():
    upward = [f"{where}: {source} ({NAME[source]}) imports {target} ({NAME[target]})"
              for source, target, where in edges()
              if source in RANK and target in RANK and RANK[target] > RANK[source]]
    assert not upward, "imports from a lower layer into a higher one:\n" + "\n".join(upward)


def test_units_apart_import_nothing_of_the_broker():
    found = [f"{where}: {source} imports {target}" for source, target, where in edges()
             if source in APART or (target in APART and source != "__init__")]
    assert not found, "\n".join(found)


def test_no_import_cycle_between_units():
    """Within a layer units may use one another, but never round in a circle."""
    graph = {}
    for source, target, _ in edges():
        if source != "__init__" and target != "__init__":
            graph.setdefault(source, set()).add(target)
    cycles = _cycles(graph)
    assert not cycles, f"import cycles between units: {cycles}"


def _cycles(graph):
    """Strongly connected groups of more than one unit (Tarjan)."""
    index, low, stack, on, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_lazy_and_relative_imports_are_read(tmp_path):
    """The scanner sees an import inside a function, and resolves a relative one."""
    module = tmp_path / "feature.py"
    module.write_text("def build():\n    from broker.http import router\n    from ..amqp import x\n")
    found = {target for target, _ in imports(module, "broker.cache.feature")}
    assert {"broker.http", "broker.http.router", "broker.amqp", "broker.amqp.x"} <= found


@pytest.mark.parametrize("source, target, upward", [
    ("http", "pubsub", False), ("pubsub", "http", True), ("errors", "config", False),
    ("services", "amqp", True), ("node", "amqp", False),
])
def test_the_table_orders_what_the_docs_say(source, target, upward):
    """The check itself: a sample of edges the layering allows and forbids."""
    assert (RANK[target] > RANK[source]) is upward
