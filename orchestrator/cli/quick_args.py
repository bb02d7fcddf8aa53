"""A quick parse of a command's plain arguments, so ``rlm run`` skips Typer's value conversion.

Typer converts every parameter's value through a Pydantic ``TypeAdapter`` it builds per parameter: for
``rlm run``'s 21 parameters, importing Pydantic and building them took about 0.1 s of a warm
``rlm run``'s 0.9 s. ``parse`` reads the command's own Typer declarations (the same option names, flags,
environment variables and defaults Typer derives from its signature) and converts only what it can
convert exactly as Typer would: text, paths, unsigned decimal integers and numbers, flags. Anything else
(``--help``, an unknown or repeated option, a value starting with ``-``, a missing required parameter, a
number in another spelling, a parameter with a callback or a custom parser, ...) returns ``None``, and
Typer parses the command line as always, with its own errors and help.
"""

from __future__ import annotations

import inspect
import os
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from typer.models import ArgumentInfo, OptionInfo, ParameterInfo

_INT = re.compile(r"0|[1-9][0-9]{0,17}")
_FLOAT = re.compile(r"(0|[1-9][0-9]{0,17})(\.[0-9]{1,17})?")
# Declarations that make Typer do more than convert the value; a parameter with any of them set is
# left to Typer.
_SPECIAL = (
    "callback",
    "parser",
    "click_type",
    "default_factory",
    "is_eager",
    "min",
    "max",
    "exists",
    "resolve_path",
    "path_type",
    "prompt",
    "count",
)


class Unsupported(Exception):
    """The command line (or the command) is not one ``parse`` converts exactly as Typer would."""


class _Param(NamedTuple):  # NamedTuples, not dataclasses: a tenth of the import time
    name: str
    kind: type  # str, int, float, bool or Path
    many: bool  # a list: the option may be given more than once
    default: Any  # inspect.Parameter.empty: required
    envvar: str | None


class _Spec(NamedTuple):
    arguments: tuple[_Param, ...]
    # option string -> (parameter, the value of a flag: True/False, or None for an option with a value)
    options: Mapping[str, tuple[_Param, bool | None]]
    params: tuple[_Param, ...]


def parse(command: Callable[..., Any], argv: Sequence[str]) -> dict[str, Any] | None:
    """``command``'s keyword arguments for ``argv`` (what follows the command's name), as Typer would
    pass them, or ``None`` when Typer has to parse this command line."""
    try:
        return _parse(_spec(command), argv)
    except Unsupported:
        return None


def _spec(command: Callable[..., Any]) -> _Spec:
    hints = typing.get_type_hints(command, include_extras=True)
    arguments: list[_Param] = []
    options: dict[str, tuple[_Param, bool | None]] = {}
    params: list[_Param] = []
    for name, sig in inspect.signature(command).parameters.items():
        infos = [m for m in getattr(hints.get(name), "__metadata__", ()) if isinstance(m, ParameterInfo)]
        if len(infos) != 1:
            raise Unsupported(f"parameter {name} has no Typer declaration")
        info = infos[0]
        if any(getattr(info, attr, None) for attr in _SPECIAL) or not info.expose_value:
            raise Unsupported(f"parameter {name} asks Typer for more than a conversion")
        kind, many = _kind(typing.get_args(hints[name])[0])
        envvar = info.envvar
        if envvar is not None and (many or not isinstance(envvar, str)):
            raise Unsupported(f"parameter {name} reads a list or several variables from the environment")
        param = _Param(name, kind, many, sig.default, envvar)
        params.append(param)
        if isinstance(info, ArgumentInfo):
            if many or envvar is not None:
                raise Unsupported(f"argument {name} is not a single value")
            arguments.append(param)
        elif isinstance(info, OptionInfo):
            # Inside ``Annotated``, Typer reads Option's first positional (its ``default``) as a declaration.
            decls = [*([] if info.default is ... else [str(info.default)]), *(info.param_decls or ())]
            options.update(_option_strings(param, decls))
        else:
            raise Unsupported(f"parameter {name} is neither an argument nor an option")
    return _Spec(tuple(arguments), options, tuple(params))


def _kind(annotation: Any) -> tuple[type, bool]:
    """The value type of an annotation (``X``, ``X | None``, ``list[X]``) and whether it is a list."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (types.UnionType, typing.Union) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise Unsupported(f"{annotation} is a union")
        annotation, args = rest[0], typing.get_args(rest[0])
    if typing.get_origin(annotation) is list:
        kind, _ = _kind(args[0])
        if kind is bool:
            raise Unsupported("a list of flags")
        return kind, True
    if annotation in (str, int, float, bool, Path):
        return annotation, False
    raise Unsupported(f"{annotation} is not converted here")


def _option_strings(param: _Param, decls: Sequence[str] | None) -> dict[str, tuple[_Param, bool | None]]:
    """Typer's option strings for ``param``: its declarations, else ``--name`` (``--name/--no-name`` for
    a flag); a flag's ``--on/--off`` declaration gives both."""
    default_name = param.name.replace("_", "-")
    if not decls:
        decls = [f"--{default_name}/--no-{default_name}" if param.kind is bool else f"--{default_name}"]
    strings: dict[str, tuple[_Param, bool | None]] = {}
    for decl in decls:
        on, _, off = decl.partition("/")
        if not on.startswith("--") or (off and (param.kind is not bool or not off.startswith("--"))):
            raise Unsupported(f"option declaration {decl!r} is not a long option")
        strings[on] = (param, True if param.kind is bool else None)
        if off:
            strings[off] = (param, False)
    return strings


def _parse(spec: _Spec, argv: Sequence[str]) -> dict[str, Any]:
    given: dict[str, Any] = {}
    positional: list[str] = []
    rest = list(argv)
    while rest:
        token = rest.pop(0)
        if not token.startswith("-"):
            positional.append(token)
            continue
        name, has_value, inline = token.partition("=")
        known = spec.options.get(name)
        if known is None:
            raise Unsupported(f"{token!r} is not one of the command's options")
        param, flag = known
        if param.name in given and not param.many:
            raise Unsupported(f"{name} is given twice")
        if flag is not None:
            if has_value:
                raise Unsupported(f"flag {name} has a value")
            given[param.name] = flag
            continue
        if has_value:
            raw = inline
        elif rest and not rest[0].startswith("-"):
            raw = rest.pop(0)
        else:
            raise Unsupported(f"{name} has no value")
        value = _convert(param.kind, raw)
        if param.many:
            given.setdefault(param.name, []).append(value)
        else:
            given[param.name] = value
    if len(positional) != len(spec.arguments):
        raise Unsupported("not one value for each argument")
    for param, raw in zip(spec.arguments, positional, strict=True):
        given[param.name] = _convert(param.kind, raw)
    kwargs: dict[str, Any] = {}
    for param in spec.params:
        if param.name in given:
            kwargs[param.name] = given[param.name]
        elif param.envvar is not None and os.environ.get(param.envvar):
            kwargs[param.name] = _convert(param.kind, os.environ[param.envvar])
        elif param.default is inspect.Parameter.empty:
            raise Unsupported(f"{param.name} is required")
        else:
            kwargs[param.name] = param.default
    return kwargs


def _convert(kind: type, raw: str) -> Any:
    if kind is str:
        return raw
    if kind is Path and raw:
        return Path(raw)
    if kind is int and _INT.fullmatch(raw):
        return int(raw)
    if kind is float and _FLOAT.fullmatch(raw):
        return float(raw)
    raise Unsupported(f"{raw!r} is not converted here as {kind.__name__}")
