"""The command line that starts the runtime package from wherever a backend put it."""

from __future__ import annotations


def runtime_command(python: str, parent_dir: str, package: str, socket_path: str) -> list[str]:
    """``python -I``: no environment variables, user site or script directory can change what runs."""
    code = (
        f"import sys; sys.path.insert(0, {parent_dir!r}); "
        f"from {package} import repl; sys.exit(repl.main(sys.argv))"
    )
    return [python, "-I", "-B", "-c", code, socket_path]
