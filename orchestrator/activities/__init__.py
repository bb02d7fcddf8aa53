"""Activities: ``generate`` and ``leaf_call`` (metered model calls), ``execute`` (one sandboxed cell and
its sub-call bridge), ``record_node`` (the store's view of a node)."""
