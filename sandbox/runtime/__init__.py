"""The in-container REPL runtime: standard library only.

The image copies this directory to ``/opt/rlm`` and the sandbox starts it as the package ``rlm``; the
``process`` backend starts it as the package ``runtime`` from this directory. Modules here import each other
only relatively, and never import anything outside the standard library, so that the same files run in
the container and are importable on the host (``sandbox.runtime.wire`` is the host's codec too).
"""
