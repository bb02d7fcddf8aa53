"""Logging set up by a command run in-process must not outlive the stream that command was given."""

from __future__ import annotations

import io
import json
import logging
import sys
import warnings

import pytest
import structlog

from orchestrator.logs import LocalModelCalls, configure_logging


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


def test_a_run_holding_model_calls_is_expected_until_its_last_call_ended_a_grace_ago(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = LocalModelCalls()
    clock = [100.0]
    monkeypatch.setattr("orchestrator.logs.time.monotonic", lambda: clock[0])
    with calls.held("node"):  # two inline leaves of one node
        with calls.held("node"):
            pass
        clock[0] += calls.GRACE_S + 1
        assert calls.expected("node")  # its other call still runs
    assert calls.expected("node")
    clock[0] += calls.GRACE_S + 1
    assert not calls.expected("node")
    with calls.held("leaf-a"):
        pass
    clock[0] += calls.GRACE_S + 1
    with calls.held("leaf-b"):
        pass
    # A long run of leaves keeps only those of the last grace period.
    assert list(calls._ended) == ["leaf-b"]
    assert not calls.expected("leaf-a") and calls.expected("leaf-b")
    with calls.held(None):  # not inside an activity: nothing to hold
        pass
    assert list(calls._ended) == ["leaf-b"]


def test_a_failed_call_still_ends_its_hold() -> None:
    calls = LocalModelCalls()
    with pytest.raises(RuntimeError), calls.held("leaf"):
        raise RuntimeError("the model failed")
    assert calls.expected("leaf")
    assert "leaf" not in calls._in_flight
