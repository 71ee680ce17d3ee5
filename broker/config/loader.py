"""Reading a YAML configuration file into plain values that remember where they came from.

:func:`load_yaml` returns a tree of dicts, lists and scalars in which every
mapping is a :class:`Located` and every list a :class:`LocatedList`: each
knows its file and the line of each key or item, so that the schema (and
any later check) can report a mistake as one line::

    etc/broker.yaml:12: channels[2].path: must start with "/"

Scalars follow the YAML 1.2 core schema, not PyYAML's YAML 1.1 default:
only ``true``/``false`` are booleans (``yes``, ``on`` and ``NO`` stay
text), ``010`` is ten, ``1:30`` is text and dates stay text.  Duplicate
keys are an error rather than a silent overwrite.

Every string value may refer to the environment: ``${NAME}`` (an error if
``NAME`` is unset), ``${NAME:default}`` (``${NAME:}`` is the empty string)
and ``$${`` for a literal ``${``.  ``${file:PATH}`` is the content of the file at
``PATH`` (a secret mounted as a file; one trailing newline dropped; an error naming the
path, never the content, if it cannot be read).  When an unquoted value is exactly one
reference, the result is typed as YAML would type it (``${PORT:17010}`` is
an int); otherwise it stays text.  Keys are never substituted.

A checked mapping is a :class:`Section` (built by :mod:`broker.config.schema`):
read-only, with attribute access, still knowing its file and lines so that
:func:`config_error` can report a later problem the same way.
"""

import os
import re
from collections.abc import Mapping

import yaml

__all__ = ["ConfigError", "Located", "LocatedList", "Section", "config_error", "load_raw_yaml", "load_yaml",
           "parse_yaml",
           "substitute", "to_plain"]


class ConfigError(Exception):
    """A mistake in the configuration, reported as one line.

    ``str()`` is ``file:line: key: problem``, leaving out the parts that are
    not known (``ConfigError("--listen: bad endpoint")`` is just the problem;
    a line without a file reads ``line 3``).

    :ivar file: the file as it was given, or None.
    :ivar line: the 1-based line, or None.
    :ivar key: the dotted key path such as ``channels[2].path``, or None.
    :ivar problem: what is wrong, without location.
    """

    def __init__(self, problem, file=None, line=None, key=None):
        self.problem = problem
        self.file = file
        self.line = line
        self.key = key
        super().__init__(str(self))

    def __str__(self):
        parts = []
        if self.file is not None:
            parts.append(f"{self.file}:{self.line}" if self.line is not None else str(self.file))
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.key:
            parts.append(self.key)
        parts.append(self.problem)
        return ": ".join(parts)


class _Origin:
    """Where a loaded mapping or list came from: its file and the line of each key or item."""

    def __init__(self, items=(), file=None, line=None, lines=None, texts=None, variables=None):
        super().__init__(items)
        self.file = file
        self.line = line
        self._lines = dict(lines or {})
        self._texts = dict(texts or {})
        self._variables = dict(variables or {})

    def line_of(self, key):
        """The line of ``key`` (a key or an index), or this container's own line when it has none."""
        return self._lines.get(key, self.line)

    def text_of(self, key):
        """The text ``${...}`` substituted into ``key``'s value when that typed it (e.g. an int), else None."""
        return self._texts.get(key)

    def variables_of(self, key):
        """The environment variables ``key``'s value refers to (``${NAME...}``), in order; ``()``."""
        return self._variables.get(key, ())


class Located(_Origin, dict):
    """A loaded mapping.

    :ivar file: the source file as given, or None.
    :ivar line: the line where the mapping starts, or None.
    """


class LocatedList(_Origin, list):
    """A loaded list (see :class:`Located`)."""


class _Meta:
    """A read-only attribute of every section, hidden by a field of the same name."""

    def __init__(self, slot):
        self._slot = slot

    def __get__(self, section, owner=None):
        return self if section is None else section.__dict__[self._slot]


class Section:
    """A checked mapping: read-only, its keys as attributes.

    ``section.key``, ``section["key"]``, ``section.get("key", default)``,
    ``"key" in section``, iteration over keys and :meth:`to_dict` all read
    it.  ``file`` and ``line`` tell where it was written (a field of the same
    name wins over them); :func:`config_error` reports a problem with one of
    its keys.
    """

    file = _Meta("_file")
    line = _Meta("_line")

    def __init__(self, name, values, file=None, line=None, lines=None, path="", variables=None):
        state = self.__dict__
        state.update(values)
        state.update(_name=name, _values=dict(values), _file=file, _line=line,
                     _lines=dict(lines or {}), _path=path, _variables=dict(variables or {}))

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(f"{self._name} has no key {name!r} (keys: {', '.join(self._values)})")

    def __setattr__(self, name, value):
        raise AttributeError("a configuration section is read-only")

    __delattr__ = __setattr__

    def __getitem__(self, key):
        return self._values[key]

    def __contains__(self, key):
        return key in self._values

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def __eq__(self, other):
        return isinstance(other, Section) and self._values == other._values

    __hash__ = None

    def __repr__(self):
        return f"Section({self._name!r}, {self._values!r})"

    def keys(self):
        """The keys, in schema order."""
        return self._values.keys()

    def get(self, key, default=None):
        """The value of ``key``, or ``default`` when this section has no such key."""
        return self._values.get(key, default)

    def line_of(self, key):
        """The line where ``key`` was written, or the section's own line."""
        return self._lines.get(key, self._line)

    def variables_of(self, key):
        """The environment variables ``key``'s value was written with (``${NAME...}``); ``()``."""
        return self._variables.get(key, ())

    def to_dict(self):
        """Plain dicts, lists and scalars, for export."""
        return {key: to_plain(value) for key, value in self._values.items()}


def to_plain(value):
    """``value`` as plain dicts, lists and scalars: a :class:`Section`, located tree or anything."""
    if isinstance(value, Section):
        return Section.to_dict(value)  # not value.to_dict: a key of that name would hide it
    if isinstance(value, Mapping):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    return value


def config_error(section, key, problem):
    """A :class:`ConfigError` about ``key`` of the checked ``section``, at that key's line.

    ``config_error(channel, "service", 'no such service "x"')`` reads
    ``etc/broker.yaml:30: channels[0].service: no such service "x"``.  A key
    that was not written (a default) is reported at the section's line; a
    ``key`` of None reports the section itself.
    """
    state = section.__dict__
    path = state["_path"]
    if key:
        path = f"{path}.{key}" if path else key
    first = re.match(r"[^.\[]*", key).group(0) if key else None
    line = state["_lines"].get(first, state["_line"])
    return ConfigError(problem, state["_file"], line, path or None)


_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_BOOL, _INT, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_NULL = "tag:yaml.org,2002:null"


class _Loader(_Base):
    """A safe loader with YAML 1.2 core scalars; nodes are built by :class:`_Builder`."""


def _construct_int(loader, node):
    value = loader.construct_scalar(node)
    if value[:2] in ("0o", "0x"):
        return int(value[2:], 8 if value[1] == "o" else 16)
    return int(value, 10)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in (_BOOL, _INT, _FLOAT, "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                              list("-+0123456789"))
_Loader.add_implicit_resolver(_FLOAT, re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))
_Loader.add_constructor(_INT, _construct_int)

_REFERENCE = re.compile(r"\$\$\{|\$\{([^{}]*)\}|\$\{")
_WHOLE = re.compile(r"\$\{[^{}]*\}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def substitute(text, environ=None):
    """``text`` with its ``${NAME}``, ``${NAME:default}`` and ``$${`` replaced.

    :param environ: the variables, :data:`os.environ` by default.
    :raises ValueError: naming the unset variable or the malformed reference.
    """
    environ = os.environ if environ is None else environ

    def replace(match):
        if match.group(0) == "$${":
            return "${"
        if match.group(1) is None:
            raise ValueError('"${" without a closing "}" (write "$${" for a literal "${")')
        name, colon, default = match.group(1).partition(":")
        if name == "file" and colon:
            return _read_secret_file(default)
        if not _VARIABLE.fullmatch(name):
            raise ValueError(f'bad variable name in "{match.group(0)}"')
        value = environ.get(name)
        if value is None:
            if not colon:
                raise ValueError(f"environment variable {name} is not set "
                                 f"(write ${{{name}:}} to default to empty)")
            value = default
        return value

    return _REFERENCE.sub(replace, text)


def _read_secret_file(path):
    if not path:
        raise ValueError("${file:PATH} needs a path")
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as handle:
            value = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not UTF-8 text"
        raise ValueError(f"cannot read the file in ${{file:{path}}}: {reason}") from None
    return value[:-2] if value.endswith("\r\n") else value[:-1] if value.endswith("\n") else value


def _references(text):
    """The names of the variables ``text`` refers to with ``${NAME}`` or ``${NAME:default}``."""
    return tuple(match.group(1).partition(":")[0] for match in _REFERENCE.finditer(text)
                 if match.group(1) is not None
                 and not match.group(1).startswith("file:"))


class _Builder:
    """Turns composed YAML nodes into located plain values."""

    def __init__(self, loader, file):
        self._loader = loader
        self._file = file
        self._active = set()

    def error(self, problem, node, path):
        return ConfigError(problem, self._file, node.start_mark.line + 1, path or None)

    def build(self, node, path=""):
        """The value of ``node``; the second item is its ``${}`` text when that typed it."""
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if id(node) in self._active:
            raise self.error("an alias refers to the collection that contains it", node, path)
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
                return self._mapping(node, path), None
            if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
                return self._sequence(node, path), None
            raise self.error(f"unsupported tag {node.tag}", node, path)
        finally:
            self._active.discard(id(node))

    def _mapping(self, node, path):
        first = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self._key(key_node, path)
            if key in first:
                raise self.error(f"duplicate key (first on line {first[key]})", key_node,
                                 f"{path}.{key}" if path else str(key))
            first[key] = key_node.start_mark.line + 1
        self._loader.flatten_mapping(node)  # "<<" merges: their keys come first, ours override
        result = Located(file=self._file, line=node.start_mark.line + 1)
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            result[key], text = self.build(value_node, f"{path}.{key}" if path else str(key))
            result._lines[key] = key_node.start_mark.line + 1
            result._texts.pop(key, None)
            if text is not None:
                result._texts[key] = text
            names = _references(value_node.value) if isinstance(value_node, yaml.ScalarNode) else ()
            if names:
                result._variables[key] = names
            else:
                result._variables.pop(key, None)
        return result

    def _key(self, node, path):
        if not isinstance(node, yaml.ScalarNode):
            raise self.error("a key must be a plain value, not a mapping or list", node, path)
        return self._loader.construct_object(node)

    def _sequence(self, node, path):
        result = LocatedList(file=self._file, line=node.start_mark.line + 1)
        for index, item_node in enumerate(node.value):
            value, text = self.build(item_node, f"{path}[{index}]")
            result.append(value)
            result._lines[index] = item_node.start_mark.line + 1
            if text is not None:
                result._texts[index] = text
        return result

    def _scalar(self, node, path):
        if node.tag != _STR or "$" not in node.value:
            try:
                return self._loader.construct_object(node), None
            except ValueError:
                problem = f'"{node.value}" is not a valid {node.tag.replace("tag:yaml.org,2002:", "!!")}'
            except yaml.constructor.ConstructorError as error:
                problem = error.problem
            raise self.error(problem, node, path)
        try:
            text = substitute(node.value)
        except ValueError as error:
            raise self.error(str(error), node, path) from None
        if node.style or text == "" or not _WHOLE.fullmatch(node.value):
            return text, None
        tag = self._loader.resolve(yaml.ScalarNode, text, (True, False))
        if tag == _STR:
            return text, None
        value = self._loader.construct_object(yaml.ScalarNode(tag, text, node.start_mark, node.end_mark))
        return value, text


def parse_yaml(text, file=None):
    """The located tree of the YAML ``text``; ``file`` is only used in messages.

    :raises ConfigError: on a syntax error, an unset variable or a top level that is not a mapping.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None or (node.tag == _NULL and isinstance(node, yaml.ScalarNode)):
            return Located(file=file, line=1)
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError("the top level must be a mapping of keys to values", file,
                              node.start_mark.line + 1)
        return _Builder(loader, file).build(node)[0]
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "invalid YAML"
        if error.context and error.problem and error.context_mark is not None:
            problem = f"{problem} ({error.context} on line {error.context_mark.line + 1})"
        raise ConfigError(problem, file, mark.line + 1 if mark else None) from None
    except yaml.YAMLError as error:
        raise ConfigError(str(error).splitlines()[0], file) from None
    except RecursionError:
        raise ConfigError("nested too deeply", file) from None
    finally:
        loader.dispose()


def load_yaml(path):
    """The located tree of the YAML file at ``path`` (see :func:`parse_yaml`).

    :raises ConfigError: when the file cannot be read, is not UTF-8 or is not a valid config.
    """
    file = os.fspath(path)
    try:
        with open(file, "rb") as stream:
            data = stream.read()
    except FileNotFoundError:
        raise ConfigError("no such file", file) from None
    except OSError as error:
        raise ConfigError((error.strerror or str(error)).lower(), file) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError("not UTF-8 text", file, data[:error.start].count(b"\n") + 1) from None
    return parse_yaml(text, file)


def load_raw_yaml(path):
    """The YAML file at ``path`` as plain values, its ``${NAME}`` references left as written
    (to write a configuration back without the secrets they stand for)."""
    with open(os.fspath(path), encoding="utf-8-sig") as stream:
        return yaml.load(stream, Loader=_Loader) or {}  # noqa: S506 - a safe loader
