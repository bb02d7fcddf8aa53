"""Logging set up by a command run in-process must not outlive the stream that command was given."""

from __future__ import annotations

import io
import sys

import pytest
import structlog

from orchestrator.logs import configure_logging


def test_a_closed_stderr_from_an_in_process_command_does_not_break_later_logs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    real, borrowed = sys.stderr, io.StringIO()
    sys.stderr = borrowed
    try:
        configure_logging("warning")
        structlog.get_logger().warning("during.command")
    finally:
        sys.stderr = real
        borrowed.close()
    try:
        structlog.get_logger().warning("after.command", node_id="r/0")
    finally:
        structlog.reset_defaults()
    assert '"event": "after.command"' in capsys.readouterr().err
