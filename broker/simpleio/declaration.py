"""A service's ``SimpleIO`` declaration, compiled once and used per request.

:func:`compile_simpleio` reads the nested ``class SimpleIO`` of a service
(Zato's attribute names, including 3.2's ``input = ('a', '-b')``
shorthand) into a :class:`SimpleIODeclaration`, which validates input
(collecting every problem into one :class:`~broker.errors.ValidationError`),
keeps only declared output, and describes both as JSON Schema for the
OpenAPI document.
"""

import weakref
from collections.abc import Mapping

from broker.errors import ServiceError, ValidationError
from broker.simpleio.payload import Payload
from broker.simpleio.elements import NOT_GIVEN, Elem, elem_from_name

__all__ = ["DeclarationError", "OutputError", "SimpleIODeclaration", "UNDECLARED_POLICIES",
           "compile_simpleio"]

#: What to do with input keys the declaration does not name.
UNDECLARED_POLICIES = ("reject", "drop")

_MISSING = object()

_LIST_ATTRS = ("input_required", "input_optional", "output_required", "output_optional",
               "input", "output")
_KNOWN_ATTRS = frozenset(_LIST_ATTRS + (
    "default_value", "default_input_value", "default_output_value", "response_elem",
    "output_repeated", "skip_empty_keys", "force_empty_keys", "undeclared_input",
    # Zato attributes that only matter to its XML/SOAP serialisers; accepted, ignored.
    "request_elem", "namespace", "bytes_to_str",
))

# sio_class → {(service_name, undeclared_input): SimpleIODeclaration}
_cache = weakref.WeakKeyDictionary()


class DeclarationError(ValueError):
    """A ``SimpleIO`` class that cannot be compiled (raised at deploy time)."""


class OutputError(ServiceError):
    """A service's output does not match its declaration.

    :ivar service_name: the service that broke its declaration.
    :ivar errors: ``{"field": ..., "problem": ...}`` for each bad output key.
    """

    def __init__(self, service_name, errors):
        self.service_name = service_name
        details = "; ".join(_describe(e["field"], e["problem"]) for e in errors)
        super().__init__(f"service {service_name} broke its output declaration: {details}",
                         errors=errors)


def _describe(field, problem):
    return f"{field} {problem}" if problem.startswith("is ") else f"{field}: {problem}"


def compile_simpleio(sio_class, service_name, undeclared_input="reject"):
    """Compile a service's ``SimpleIO`` class (cached per class, name and policy).

    :param sio_class: the nested ``SimpleIO`` class, or None.
    :param service_name: the service's name, used in error messages.
    :param undeclared_input: ``"reject"`` or ``"drop"``; the class's own
        ``undeclared_input`` attribute wins.
    :return: a :class:`SimpleIODeclaration`, or None if ``sio_class`` is None.
    :raise DeclarationError: the declaration is inconsistent.
    """
    if sio_class is None:
        return None
    key = (service_name, undeclared_input)
    try:
        per_class = _cache[sio_class]
    except KeyError:
        per_class = _cache[sio_class] = {}
    except TypeError:  # not weak-referenceable: compile without caching
        return _compile(sio_class, service_name, undeclared_input)
    declaration = per_class.get(key)
    if declaration is None:
        declaration = per_class[key] = _compile(sio_class, service_name, undeclared_input)
    return declaration


def _compile(sio_class, service_name, undeclared_input):
    where = f"SimpleIO of service {service_name}"
    unknown = sorted(n for n in dir(sio_class) if not n.startswith("_") and n not in _KNOWN_ATTRS)
    if unknown:
        raise DeclarationError(f"{where}: unknown attribute(s) {', '.join(unknown)}")
    inputs = (_fields(sio_class, "input_required", True, where)
              + _fields(sio_class, "input_optional", False, where)
              + _shorthand(sio_class, "input", where))
    outputs = (_fields(sio_class, "output_required", True, where)
               + _fields(sio_class, "output_optional", False, where)
               + _shorthand(sio_class, "output", where))
    for kind, fields in (("input", inputs), ("output", outputs)):
        seen = set()
        for elem, _ in fields:
            if elem.name in seen:
                raise DeclarationError(f"{where}: {kind} {elem.name!r} is declared twice")
            seen.add(elem.name)
    policy = getattr(sio_class, "undeclared_input", undeclared_input)
    if policy not in UNDECLARED_POLICIES:
        raise DeclarationError(f"{where}: undeclared_input must be 'reject' or 'drop', not {policy!r}")
    response_elem = getattr(sio_class, "response_elem", None)
    if response_elem is not None and (not isinstance(response_elem, str) or not response_elem):
        raise DeclarationError(f"{where}: response_elem must be a non-empty string or None")
    default = getattr(sio_class, "default_value", NOT_GIVEN)
    return SimpleIODeclaration(
        service_name, inputs, outputs,
        default_input=getattr(sio_class, "default_input_value", default),
        default_output=getattr(sio_class, "default_output_value", default),
        response_elem=response_elem,
        output_repeated=bool(getattr(sio_class, "output_repeated", False)),
        skip_empty_keys=getattr(sio_class, "skip_empty_keys", False),
        force_empty_keys=getattr(sio_class, "force_empty_keys", ()),
        undeclared_input=policy)


def _items(value, attr, where):
    if value is None:
        return ()
    if isinstance(value, (str, Elem)):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise DeclarationError(f"{where}: {attr} must be a name, an element or a tuple of them")


def _to_elem(item, attr, where):
    if isinstance(item, Elem):
        return item
    if isinstance(item, str) and item:
        return elem_from_name(item)
    raise DeclarationError(f"{where}: {attr} holds {item!r}, not a name or an element")


def _fields(sio_class, attr, required, where):
    """``(element, required)`` pairs from an ``input_required``-style attribute."""
    fields = []
    for item in _items(getattr(sio_class, attr, None), attr, where):
        elem = _to_elem(item, attr, where)
        if elem.name.startswith("-"):
            raise DeclarationError(f"{where}: the '-' prefix ({elem.name!r}) is only allowed "
                                   f"in 'input'/'output'; use {attr.split('_')[0]}_optional")
        fields.append((elem, required))
    return fields


def _shorthand(sio_class, attr, where):
    """``(element, required)`` pairs from Zato 3.2's ``input = ('a', '-b')``."""
    fields = []
    for item in _items(getattr(sio_class, attr, None), attr, where):
        elem = _to_elem(item.lstrip("-") if isinstance(item, str) else item, attr, where)
        optional = (item if isinstance(item, str) else elem.name).startswith("-")
        if isinstance(item, Elem) and optional:
            name = elem.name.lstrip("-")
            if not name:
                raise DeclarationError(f"{where}: {attr} holds an element named only '-'")
            elem = elem.renamed(name)
        fields.append((elem, not optional))
    return fields


class SimpleIODeclaration:
    """One service's compiled input and output declaration.

    :ivar service_name: the service it belongs to.
    :ivar inputs: ``(element, required)`` pairs in declaration order.
    :ivar outputs: ``(element, required)`` pairs in declaration order.
    :ivar response_elem: the key wrapping the output, or None.
    :ivar output_repeated: whether the output is a list of objects.
    :ivar undeclared_input: ``"reject"`` or ``"drop"``.
    """

    __slots__ = ("service_name", "inputs", "outputs", "response_elem", "output_repeated",
                 "undeclared_input", "input_names", "output_names", "_input_names_set",
                 "_default_input", "_default_output", "_skip_all", "_skip", "_force",
                 "has_input", "has_output")

    def __init__(self, service_name, inputs, outputs, *, default_input=NOT_GIVEN,
                 default_output=NOT_GIVEN, response_elem=None, output_repeated=False,
                 skip_empty_keys=False, force_empty_keys=(), undeclared_input="reject"):
        self.service_name = service_name
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.has_input = bool(self.inputs)     # whether any input is declared
        self.has_output = bool(self.outputs)   # whether any output is declared
        self.response_elem = response_elem
        self.output_repeated = output_repeated
        self.undeclared_input = undeclared_input
        self.input_names = tuple(elem.name for elem, _ in self.inputs)
        self.output_names = tuple(elem.name for elem, _ in self.outputs)
        self._input_names_set = frozenset(self.input_names)
        self._default_input = None if default_input is NOT_GIVEN else default_input
        self._default_output = None if default_output is NOT_GIVEN else default_output
        if isinstance(skip_empty_keys, (list, tuple, set, frozenset)):
            self._skip_all, self._skip = False, frozenset(skip_empty_keys)
        else:
            self._skip_all, self._skip = bool(skip_empty_keys), frozenset()
        self._force = frozenset((force_empty_keys,) if isinstance(force_empty_keys, str)
                                else force_empty_keys or ())

    def __repr__(self):
        return (f"SimpleIODeclaration({self.service_name!r}, input={self.input_names}, "
                f"output={self.output_names})")

    # -- input ------------------------------------------------------------------

    def parse_input(self, data):
        """Validate and convert a request's input.

        A missing or null optional input gets the element's default, else the
        declaration's ``default_input_value``/``default_value``, else None.

        :param data: a mapping, or None for no input.
        :return: a new dict with a value for every declared input.
        :raise ValidationError: naming every missing, malformed or undeclared field.
        """
        if data is None:
            data = {}
        elif data.__class__ is not dict and not isinstance(data, Mapping):
            raise ValidationError.of([{"field": "(body)", "problem": "expected an object"}])
        errors = []
        result = Payload()
        for elem, required in self.inputs:
            name = elem.name
            value = data.get(name)
            if value is None:
                if required:
                    errors.append({"field": name, "problem": "is required"})
                else:
                    result[name] = (elem.get_default() if elem.has_default
                                    else _copy(self._default_input))
                continue
            try:
                result[name] = elem.parse(value)
            except (ValueError, TypeError) as exc:
                errors.append({"field": name, "problem": str(exc) or elem.problem})
        if self.undeclared_input == "reject" and not self._input_names_set.issuperset(data):
            known = self._input_names_set
            errors.extend({"field": str(key), "problem": "is not a declared input"}
                          for key in data if key not in known)
        if errors:
            raise ValidationError.of(errors)
        return result

    # -- output -----------------------------------------------------------------

    def render_output(self, payload):
        """Keep only declared output, rendered JSON-able.

        :param payload: a mapping or an object with attributes; for
            ``output_repeated`` a list of those.
        :return: a dict (a list of dicts for ``output_repeated``), wrapped as
            ``{response_elem: ...}`` if ``response_elem`` is set.
        :raise OutputError: a required key is missing or a value does not fit.
        """
        if self.output_repeated:
            if payload is None or (isinstance(payload, Mapping) and not payload):
                payload = []
            if not isinstance(payload, (list, tuple)):
                raise OutputError(self.service_name, [{"field": "(output)",
                                                       "problem": "expected a list"}])
            result = [self._render_one(item, f"[{index}].") for index, item in enumerate(payload)]
        else:
            result = self._render_one(payload, "")
        if self.response_elem is not None:
            return {self.response_elem: result}
        return result

    def _render_one(self, item, prefix):
        if item is None:
            get = _none_getter
        elif item.__class__ is Payload or item.__class__ is dict or isinstance(item, Mapping):
            get = item.get
        elif isinstance(item, (str, bytes, bytearray, list, tuple)):
            raise OutputError(self.service_name, [{"field": prefix.rstrip(".") or "(output)",
                                                   "problem": "expected an object"}])
        else:
            get = lambda name, default=None: getattr(item, name, default)  # noqa: E731
        errors = []
        result = {}
        for elem, required in self.outputs:
            name = elem.name
            value = get(name)
            if value is None:
                if required:
                    errors.append({"field": prefix + name, "problem": "is required"})
                    continue
                value = elem.get_default() if elem.has_default else _copy(self._default_output)
                if value is None:
                    if name not in self._force and (self._skip_all or name in self._skip):
                        continue
                    result[name] = None
                    continue
            try:
                result[name] = elem.render(value)
            except (ValueError, TypeError) as exc:
                errors.append({"field": prefix + name, "problem": str(exc) or elem.problem})
        if errors:
            raise OutputError(self.service_name, errors)
        return result

    # -- schemas ----------------------------------------------------------------

    def input_schema(self, json_body=False):
        """The input as a JSON Schema object (``properties``, ``required``, ...).

        :param json_body: describe it as a JSON body may give it: an optional field may be
            null (taken as missing), a text field a number or boolean (taken as its text).
        """
        properties = {}
        for elem, required in self.inputs:
            fragment = properties[elem.name] = elem.json_schema()
            if json_body and "type" in fragment:
                types = list(elem.json_input_types or (fragment["type"],))
                types += [] if required else ["null"]
                fragment["type"] = types if len(types) > 1 else types[0]
        schema = {
            "type": "object",
            "properties": properties,
            "required": [elem.name for elem, required in self.inputs if required],
        }
        if self.undeclared_input == "reject":
            schema["additionalProperties"] = False
        return schema

    def output_schema(self):
        """The output as a JSON Schema, honouring ``output_repeated`` and ``response_elem``."""
        properties = {}
        for elem, required in self.outputs:
            fragment = elem.json_schema()
            if not required and not self._never_null(elem) and "type" in fragment:
                fragment["type"] = [fragment["type"], "null"]
            properties[elem.name] = fragment
        schema = {
            "type": "object",
            "properties": properties,
            "required": [elem.name for elem, required in self.outputs if required],
            "additionalProperties": False,
        }
        if self.output_repeated:
            schema = {"type": "array", "items": schema}
        if self.response_elem is not None:
            schema = {"type": "object", "properties": {self.response_elem: schema},
                      "required": [self.response_elem], "additionalProperties": False}
        return schema

    def _never_null(self, elem):
        """Whether a missing optional output is always given a non-null value or dropped."""
        if elem.has_default:
            return elem.default is not None
        if self._default_output is not None:
            return True
        return elem.name not in self._force and (self._skip_all or elem.name in self._skip)


def _none_getter(name, default=None):
    return default


def _copy(value):
    """A fresh copy of a mutable declaration-wide default."""
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value
