"""Whether a process still runs: the one check the sandbox's and the orchestrator's clean-ups share."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (killed, not yet reaped by its parent) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        stat = ""
    # The state follows the parenthesised command name, which may itself hold spaces or parentheses.
    state = stat.rsplit(")", 1)[-1].split()[:1]
    if state == ["Z"]:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
