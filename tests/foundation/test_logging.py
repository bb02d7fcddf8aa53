"""Logging set up by a command run in-process must not outlive the stream that command was given."""

from __future__ import annotations

import io
import json
import logging
import sys
import warnings

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


RUNNING_UPDATE = "Workflow finished while update handlers are still running"


def test_a_python_warning_is_one_json_line_of_the_log_stream() -> None:
    stream = io.StringIO()  # not a terminal: JSON lines
    logging.captureWarnings(False)  # an earlier test's configure_logging captured pytest's own hook
    configure_logging("warning", stream=stream)
    root = logging.getLogger()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn(
                "Workflow finished while update handlers are still running", UserWarning, stacklevel=1
            )
    finally:
        structlog.reset_defaults()
        logging.captureWarnings(False)
        for handler in [h for h in root.handlers if getattr(h, "stream", None) is stream]:
            root.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    event = json.loads(lines[0])
    assert event["logger"] == "py.warnings" and event["level"] == "warning"
    assert f"UserWarning: {RUNNING_UPDATE}" in event["event"]
