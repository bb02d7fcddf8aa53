"""Content-addressed, chunked blobs round-trip exactly on both backends (0 B, 1 B, 100 MB)."""

from __future__ import annotations

import hashlib
import os

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.store import (
    BlobCorrupt,
    NotFound,
    blobs,
    get_blob,
    get_text,
    iter_blob,
    put_blob,
    put_text,
    text_head,
)
from orchestrator.store.blobs import CHUNK_SIZE
from orchestrator.store.models import Blob, BlobChunk


@pytest.mark.parametrize("data", [b"", b"x"], ids=["0-bytes", "1-byte"])
def test_tiny_blobs_roundtrip(sessions: sessionmaker[Session], data: bytes) -> None:
    with sessions.begin() as s:
        sha = put_blob(s, data)
    assert sha == hashlib.sha256(data).hexdigest()
    with sessions() as s:
        assert get_blob(s, sha) == data


def test_100_mb_roundtrips_with_the_same_hash(sessions: sessionmaker[Session]) -> None:
    # Half incompressible, half text: both chunk paths (stored raw, stored compressed) are exercised.
    half = 50 * 1024 * 1024
    line = b"the quick brown fox jumps over the lazy dog 0123456789\n"
    data = os.urandom(half) + (line * (half // len(line) + 1))[:half]
    expected = hashlib.sha256(data).hexdigest()
    with sessions.begin() as s:
        assert put_blob(s, data) == expected
    del data
    with sessions() as s:
        blob = s.get(Blob, expected)
        assert blob is not None
        assert (blob.size, blob.chunk_count) == (2 * half, 2 * half // CHUNK_SIZE)
        assert blob.stored_size < blob.size  # the text half compressed
        flags = s.execute(select(BlobChunk.compressed).order_by(BlobChunk.seq)).scalars().all()
        assert not flags[0] and flags[-1]
        back = get_blob(s, expected)
    assert len(back) == 2 * half
    assert hashlib.sha256(back).hexdigest() == expected


def test_same_bytes_stored_once(sessions: sessionmaker[Session]) -> None:
    data = b"a" * (CHUNK_SIZE + 10)
    with sessions.begin() as s:
        first = put_blob(s, data)
    with sessions.begin() as s:
        assert put_blob(s, data) == first
        assert s.scalar(select(func.count()).select_from(Blob)) == 1
        assert s.scalar(select(func.count()).select_from(BlobChunk)) == 2
        assert b"".join(iter_blob(s, first)) == data


def test_text_helpers_and_uncompressed_option(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        sha = put_text(s, "héllo " * 1000, compress=False)
        blob = s.get(Blob, sha)
        assert blob is not None and blob.stored_size == blob.size
    with sessions() as s:
        assert get_text(s, sha) == "héllo " * 1000


@pytest.mark.parametrize("compress", [True, False], ids=["compressed", "raw"])
def test_the_head_of_a_big_text_is_read_from_its_first_chunk(
    sessions: sessionmaker[Session], compress: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three chunks; the head's byte limit falls inside a three-byte character ("€" is E2 82 AC).
    text = "ab€" + "€" * (CHUNK_SIZE // 3) + "z" * CHUNK_SIZE
    with sessions.begin() as s:
        sha = put_text(s, text, compress=compress)
    inflated: list[int] = []
    real = blobs.zlib.decompressobj

    class Counting:
        def __init__(self) -> None:
            self._inner = real()

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            out = self._inner.decompress(data, max_length)
            inflated.append(len(out))
            return out

    monkeypatch.setattr(blobs.zlib, "decompressobj", Counting)
    with sessions() as s:
        assert text_head(s, sha, 4) == "ab"  # the cut "€" is left out, not mangled
        assert text_head(s, sha, 5) == "ab€"
        assert text_head(s, sha, 3000) == text[: 2 + (3000 - 2) // 3]
        with pytest.raises(NotFound):
            text_head(s, "0" * 64, 10)
    with sessions.begin() as s:
        empty = put_text(s, "", compress=compress)  # stored without a chunk
    with sessions() as s:
        assert text_head(s, empty, 10) == ""
    # Only the bytes asked for were inflated, never the 4 MB chunk.
    assert all(n <= 3000 for n in inflated) and (inflated != []) == compress


def test_missing_and_corrupt_blobs_are_errors(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, pytest.raises(NotFound):
        get_blob(s, "0" * 64)
    with sessions.begin() as s:
        sha = put_blob(s, b"abc" * 1000, compress=False)
        s.execute(update(BlobChunk).where(BlobChunk.sha256 == sha).values(data=b"xyz" * 1000))
    with sessions() as s, pytest.raises(BlobCorrupt):
        get_blob(s, sha)


@pytest.mark.parametrize("lost", [0, 2], ids=["first-chunk", "later-chunk"])
def test_a_blob_missing_a_chunk_is_corrupt_not_short(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, lost: int
) -> None:
    # The first chunk is read with the header, later ones one by one: both reads must notice a gap.
    piece = 32 * 1024
    monkeypatch.setattr(blobs, "CHUNK_SIZE", piece)
    data = os.urandom(100 * 1024)
    with sessions.begin() as s:
        sha = put_blob(s, data)
        assert s.scalar(select(Blob.chunk_count).where(Blob.sha256 == sha)) == 4
        s.execute(delete(BlobChunk).where(BlobChunk.sha256 == sha, BlobChunk.seq == lost))
    with sessions() as s:
        chunks = iter_blob(s, sha)
        for seq in range(lost):
            assert next(chunks) == data[seq * piece : (seq + 1) * piece]
        with pytest.raises(BlobCorrupt, match=f"chunk {lost} of 4 is missing"):
            next(chunks)
