"""``beating``: how often a ``generate`` activity heartbeats while its call runs."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from datetime import timedelta
from typing import Any

from structlog.testing import capture_logs
from temporalio.testing import ActivityEnvironment

from orchestrator.activities.heartbeat import HEARTBEAT_EVERY_S, beating


def environment(heartbeat_timeout: timedelta | None, beats: list[float]) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, heartbeat_timeout=heartbeat_timeout)
    loop = asyncio.get_running_loop()
    env.on_heartbeat = lambda *details: beats.append(loop.time())
    return env


async def call(seconds: float) -> str:
    async with beating():
        await asyncio.sleep(seconds)
    return "answer"


async def test_a_short_heartbeat_timeout_gets_three_beats_a_timeout() -> None:
    """A timeout shorter than two beat intervals (RLM_HEARTBEAT_TIMEOUT_S may be 1 s) would otherwise
    pass between two beats, and Temporal would retry a call that was running fine."""
    beats: list[float] = []
    env = environment(timedelta(seconds=1.5), beats)
    assert await env.run(call, 1.8) == "answer"
    assert 2 <= len(beats) <= 3, beats  # at 0.5, 1.0 and 1.5 s (2 s without the timeout)
    assert max(b - a for a, b in itertools.pairwise(beats)) < 1.5


async def test_a_call_shorter_than_one_interval_sends_no_beat_and_beats_stop_with_the_call() -> None:
    beats: list[float] = []
    env = environment(timedelta(seconds=30), beats)
    assert await env.run(call, 0.05) == "answer"
    assert beats == []
    await asyncio.sleep(HEARTBEAT_EVERY_S + 0.2)
    assert beats == []  # the beat task went with the call


async def test_a_failing_beat_is_logged_and_the_call_goes_on() -> None:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, heartbeat_timeout=timedelta(seconds=0.3))
    failures: list[int] = []

    def failing(*details: Any) -> None:
        failures.append(1)
        raise TimeoutError("the heartbeat could not be sent")

    env.on_heartbeat = failing
    with capture_logs() as logs:
        assert await env.run(call, 0.35) == "answer"
    assert len(failures) >= 2  # it went on beating after the first failure
    assert {e["event"] for e in logs} == {"activity.heartbeat_failed"}
