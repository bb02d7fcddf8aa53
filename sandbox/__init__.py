"""durable-rlm sandbox: run hostile Python in a resource-capped container, keep REPL state across cells.

This package never imports ``orchestrator``: sub-calls are answered by a host-side callback.
"""
