"""``context`` is read inside the sandbox from the read-only mount, never sent over the channel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox import SandboxError
from tests.sandbox.helpers import OpenSession, no_subcalls


def test_ten_million_character_context_never_crosses_the_channel(
    open_docker: OpenSession, tmp_path: Path
) -> None:
    path = tmp_path / "context.txt"
    path.write_text("".join(f"line {i:07d}\n" for i in range(769_231))[:10_000_000])
    session = open_docker(context_path=path)
    assert session.context_info == {"type": "str", "length": 10_000_000}
    result = session.execute("print(type(context).__name__, len(context), context[:12].strip())", no_subcalls)
    assert result.stdout == "str 10000000 line 0000000\n"
    assert session.bytes_sent + session.bytes_received < 100_000
    assert b"line 00" not in (result.snapshot or b"")
    mount = session.execute(
        "print([l.split()[3][:2] for l in open('/proc/self/mounts') if ' /context/context.txt ' in l])",
        no_subcalls,
    )
    assert mount.stdout == "['ro']\n"


def test_json_file_becomes_its_value(open_docker: OpenSession, tmp_path: Path) -> None:
    path = tmp_path / "facts.json"
    path.write_text(json.dumps({"docs": ["a", "b"], "n": 2}))
    result = open_docker(context_path=path).execute("print(context['n'], context['docs'])", no_subcalls)
    assert result.stdout == "2 ['a', 'b']\n"


def test_directory_becomes_a_list_of_documents_in_path_order(open_any: OpenSession, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)  # pytest makes it private; the sandbox user reads it as "other"
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.md").write_text("third")
    result = open_any(context_path=tmp_path).execute("print(context)", no_subcalls)
    assert result.stdout == "['first', 'second', 'third']\n"


def test_no_context_is_none(open_process: OpenSession) -> None:
    assert open_process().execute("print(context)", no_subcalls).stdout == "None\n"


def test_invalid_json_context_fails_to_open_with_the_reason(open_docker: OpenSession, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(SandboxError, match="runtime refused to start: JSONDecodeError"):
        open_docker(context_path=path)


def test_missing_context_path_is_a_clear_error(open_docker: OpenSession, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"context_path .*missing.txt does not exist"):
        open_docker(context_path=tmp_path / "missing.txt")


def test_context_unreadable_by_the_sandbox_user_is_a_clear_error(
    open_docker: OpenSession, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)
    (tmp_path / "ok.txt").write_text("fine")
    secret = tmp_path / "private.txt"
    secret.write_text("no")
    secret.chmod(0o600)
    with pytest.raises(ValueError, match=r"private.txt is not readable by the sandbox user .*chmod -R o\+rX"):
        open_docker(context_path=tmp_path)


def test_context_too_large_for_the_memory_cap_fails_with_the_reason(
    open_docker: OpenSession, tmp_path: Path
) -> None:
    from sandbox import SandboxLimits

    path = tmp_path / "huge.txt"
    path.write_text("é" * 30_000_000)  # decoded, ~60 MB of UTF-8 becomes far more than 48 MiB of str + bytes
    path.chmod(0o644)
    tmp_path.chmod(0o755)
    with pytest.raises(SandboxError, match=r"failed while loading the context \(killed by the out-of-memory"):
        open_docker(context_path=path, limits=SandboxLimits(memory_bytes=48 << 20))
