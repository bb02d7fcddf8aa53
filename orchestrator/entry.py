"""The ``rlm`` console script: the warm CLI first, else the Typer app in this process."""

from __future__ import annotations

import os
import sys

from orchestrator.warmcli import DISABLE, HANDED


def main() -> None:
    args = sys.argv[1:]
    if args[:1] and args[0] in HANDED and os.environ.get(DISABLE) != "0":
        from orchestrator.warmcli.client import hand_off

        code = hand_off(args)
        if code is not None:
            sys.exit(code)
    from orchestrator.cli import main as cli_main

    cli_main()
