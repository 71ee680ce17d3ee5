"""Redis: the ``redis`` connection type (txredisapi, imported lazily)."""
