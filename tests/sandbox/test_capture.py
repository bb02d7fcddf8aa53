"""Truncation of a cell's output: head and tail kept, the count of what was cut exact."""

from __future__ import annotations

import pytest

from sandbox import SandboxLimits
from sandbox.runtime.capture import CappedStream, cut_marker
from tests.sandbox.helpers import OpenSession, no_subcalls


def test_short_output_is_kept_whole() -> None:
    stream = CappedStream(10)
    stream.write("hello")
    assert stream.result() == ("hello", 0)


def test_output_exactly_at_the_limit_is_not_cut() -> None:
    stream = CappedStream(10)
    stream.write("0123456789")
    assert stream.result() == ("0123456789", 0)


def test_long_output_keeps_head_and_tail_and_counts_the_cut() -> None:
    stream = CappedStream(10)
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    for start in range(0, 1000, 7):  # many small writes, as print() does
        stream.write(text[start : start + 7])
    kept, cut = stream.result()
    assert cut == 990
    assert kept == text[:5] + cut_marker(990) + text[-5:]


def test_one_huge_write_is_cut_the_same_way() -> None:
    stream = CappedStream(6)
    stream.write("x" * 3 + "y" * 1_000_000 + "z" * 3)
    assert stream.result() == ("xxx" + cut_marker(1_000_000) + "zzz", 1_000_000)


def test_odd_limit_gives_the_extra_character_to_the_head() -> None:
    stream = CappedStream(5)
    stream.write("abcdefghij")
    assert stream.result() == ("abc" + cut_marker(5) + "ij", 5)


def test_zero_limit_cuts_everything() -> None:
    stream = CappedStream(0)
    stream.write("abc")
    assert stream.result() == (cut_marker(3), 3)


def test_write_returns_the_characters_written_and_rejects_bytes() -> None:
    stream = CappedStream(4)
    assert stream.write("abcdefgh") == 8
    with pytest.raises(TypeError, match="must be str"):
        stream.write(b"bytes")  # type: ignore[arg-type]


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        CappedStream(-1)


def test_cell_output_is_truncated_by_the_configured_limit(open_docker: OpenSession) -> None:
    session = open_docker(limits=SandboxLimits(output_chars=100))
    code = "import sys\nprint('a' * 50 + 'b' * 1000 + 'c' * 50, end='')\n_ = sys.stderr.write('e' * 300)"
    result = session.execute(code, no_subcalls)
    assert result.stdout == "a" * 50 + cut_marker(1000) + "c" * 50
    assert result.stdout_cut == 1000
    assert result.stderr_cut == 200
    assert result.stderr.startswith("e" * 50) and result.stderr.endswith("e" * 50)
