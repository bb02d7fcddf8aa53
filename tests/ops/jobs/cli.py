"""Running ``rlm`` as a subprocess from async tests (several at once, since each start costs seconds)."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RLM = str(Path(sys.executable).parent / "rlm")


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def rlm(env: dict[str, str], *args: str, timeout_s: float = 120.0) -> Done:
    proc = await asyncio.create_subprocess_exec(
        RLM, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return Done(proc.returncode, out.decode(), err.decode())
