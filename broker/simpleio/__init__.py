"""SimpleIO: Zato-compatible typed input/output declarations and data formats.

Services declare a nested ``class SimpleIO``; :func:`compile_simpleio` turns
it into a :class:`SimpleIODeclaration` that validates input and filters
output.  :func:`decode`/:func:`encode` convert between request bodies and
payloads for each channel data format.
"""

from broker.simpleio.declaration import (UNDECLARED_POLICIES, DeclarationError, OutputError,
                                         SimpleIODeclaration, compile_simpleio)
from broker.simpleio.elements import (NOT_GIVEN, UUID, AsIs, Bool, Boolean, Date, DateTime,
                                      Decimal, Dict, Elem, Float, Int, Integer, List, Opaque, Text,
                                      elem_from_name, to_jsonable)
from broker.simpleio.formats import (CONTENT_TYPES, FORMATS, PLAIN_MEDIA_TYPES, SOAP11_NS, SOAP12_NS,
                                     check_content_type, decode, encode, parse_query, soap_fault)

__all__ = [
    "AsIs", "Bool", "Boolean", "CONTENT_TYPES", "Date", "DateTime", "Decimal", "DeclarationError",
    "Dict", "Elem", "FORMATS", "Float", "Int", "Integer", "List", "NOT_GIVEN", "Opaque",
    "OutputError", "PLAIN_MEDIA_TYPES", "SOAP11_NS", "SOAP12_NS", "SimpleIODeclaration", "Text",
    "UNDECLARED_POLICIES", "UUID", "check_content_type", "compile_simpleio", "decode",
    "elem_from_name", "encode", "parse_query", "soap_fault", "to_jsonable",
]
