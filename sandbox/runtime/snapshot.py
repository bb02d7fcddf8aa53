"""Serialise the REPL's user variables to bytes and load them back (runs inside the sandbox only).

Plain ``pickle`` stores functions by reference (``__main__.f``), which cannot be found in a fresh container,
so functions defined in the REPL are stored by value instead: their marshalled code, defaults and closure.
Marshal data is tied to the Python version, which the image pins. Classes defined in the REPL, and their
instances, are reported as unpicklable rather than stored in a form that would fail on restore.

The host never unpickles a snapshot: snapshots are produced and loaded only inside a sandbox.
"""

from __future__ import annotations

import importlib
import io
import marshal
import pickle
import sys
import types
from typing import Any

FORMAT = 1


def _rebuild_function(
    code: bytes,
    name: str,
    qualname: str,
    defaults: tuple[Any, ...] | None,
    kwdefaults: dict[str, Any] | None,
    closure: tuple[Any, ...] | None,
    attributes: dict[str, Any],
) -> types.FunctionType:
    namespace = sys.modules["__main__"].__dict__
    cells = None if closure is None else tuple(types.CellType(value) for value in closure)
    body = marshal.loads(code)  # noqa: S302 - snapshots are loaded only inside a sandbox
    function = types.FunctionType(body, namespace, name, defaults, cells)
    function.__qualname__ = qualname
    function.__kwdefaults__ = kwdefaults
    function.__dict__.update(attributes)
    return function


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, namespace: dict[str, Any]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._namespace = namespace

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.FunctionType) and obj.__globals__ is self._namespace:
            closure = None
            if obj.__closure__ is not None:
                try:
                    closure = tuple(cell.cell_contents for cell in obj.__closure__)
                except ValueError:
                    raise pickle.PicklingError(
                        f"function {obj.__qualname__} closes over a variable that is not set"
                    ) from None
            return _rebuild_function, (
                marshal.dumps(obj.__code__),
                obj.__name__,
                obj.__qualname__,
                obj.__defaults__,
                obj.__kwdefaults__,
                closure,
                dict(obj.__dict__),
            )
        if isinstance(obj, type) and obj.__module__ == "__main__":
            raise pickle.PicklingError(
                f"class {obj.__qualname__} was defined in the REPL; such classes and their instances "
                "are not snapshotted"
            )
        return NotImplemented


def _dumps(value: Any, namespace: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, namespace).dump(value)
    return buffer.getvalue()


def dump(
    variables: dict[str, Any], answer: dict[str, Any], modules: dict[str, str], namespace: dict[str, Any]
) -> tuple[bytes, dict[str, str]]:
    """Pickle what can be pickled; returns the snapshot and, per left-out variable, why it was left out.

    Everything is pickled in one go first, so that objects shared between variables stay shared; only
    when that fails is each variable tried alone to find the culprits.
    """
    state = {"format": FORMAT, "variables": variables, "answer": answer, "modules": modules}
    try:
        return _dumps(state, namespace), {}
    except Exception:  # noqa: S110 - any failure just means: find the culprits one by one
        pass
    left_out: dict[str, str] = {}
    for name, value in variables.items():
        try:
            _dumps(value, namespace)
        except (Exception, RecursionError) as exc:
            left_out[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
    kept = {name: value for name, value in variables.items() if name not in left_out}
    state["variables"] = kept
    return _dumps(state, namespace), left_out


def load(blob: bytes) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Unpickle a snapshot; returns (variables, answer, modules imported again under their names)."""
    state = pickle.loads(blob)  # noqa: S301 - snapshots come from a sandbox and are loaded only in one
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError("not a durable-rlm snapshot of a supported format")
    modules: dict[str, Any] = {}
    for alias, module_name in state["modules"].items():
        try:
            modules[alias] = importlib.import_module(module_name)
        except ImportError:
            continue
    return state["variables"], state["answer"], modules
