"""Named outgoing connections: services reach them as ``self.out.<kind>[name]``.

Each type keeps its schema and builder in its own module and is listed in
:data:`broker.registry.OUTGOING_TYPES`.
"""
