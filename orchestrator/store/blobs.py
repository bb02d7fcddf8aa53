"""Content-addressed blobs: sha256 of the bytes, stored in chunks so that 100 MB texts work on both
backends without one huge value, each chunk zlib-compressed when that makes it smaller.

Functions take the caller's ``Session`` and never commit.
"""

from __future__ import annotations

import codecs
import hashlib
import zlib
from collections.abc import Iterator
from datetime import timedelta
from typing import cast

from sqlalchemy import Table, and_, bindparam, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from orchestrator.store._sql import insert_ignore, run
from orchestrator.store.errors import BlobCorrupt, InvalidValue, NotFound
from orchestrator.store.models import Blob, BlobChunk, utcnow

CHUNK_SIZE = 4 * 1024 * 1024
# Up to this size a blob is packed and inserted in one statement; a bigger one is first looked up, so a
# context submitted again is not compressed again.
SMALL_BYTES = 64 * 1024
# Level 1: most of the gain on text at a fraction of the CPU of the default level.
ZLIB_LEVEL = 1

# Every leaf stores its answer and reads its prompt: built once and executed with parameters (see
# _sql.py).
_BLOBS = cast(Table, Blob.__table__)
_CHUNKS = cast(Table, BlobChunk.__table__)
_BLOB_EXISTS = select(literal(1)).where(_BLOBS.c.sha256 == bindparam("sha"))
_CHUNK_INSERT = insert(_CHUNKS)
# The header with its first chunk: a prompt or an answer (one chunk) is one statement.
_HEAD = (
    select(_BLOBS.c.size, _BLOBS.c.chunk_count, _CHUNKS.c.compressed, _CHUNKS.c.data)
    .select_from(_BLOBS.outerjoin(_CHUNKS, and_(_CHUNKS.c.sha256 == _BLOBS.c.sha256, _CHUNKS.c.seq == 0)))
    .where(_BLOBS.c.sha256 == bindparam("sha"))
)
_CHUNK = select(_CHUNKS.c.compressed, _CHUNKS.c.data).where(
    _CHUNKS.c.sha256 == bindparam("sha"), _CHUNKS.c.seq == bindparam("seq")
)
_BLOB_SIZE = update(_BLOBS).where(_BLOBS.c.sha256 == bindparam("b_sha"))
# Moved at most this often: many leaves storing the same answer at once would otherwise queue on one
# row lock. Retention allows for it (see ``retention``).
TOUCH_EVERY = timedelta(seconds=60)
_BLOB_TOUCH = (
    update(_BLOBS)
    .where(
        _BLOBS.c.sha256 == bindparam("b_sha"),
        or_(_BLOBS.c.last_put_at.is_(None), _BLOBS.c.last_put_at < bindparam("b_stale")),
    )
    .values(last_put_at=bindparam("b_now"))
)


def put_blob(session: Session, data: bytes, *, compress: bool = True) -> str:
    """Store ``data`` (a no-op if the same bytes are stored already) and return its sha256 hex."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidValue(f"blob data must be bytes, got {type(data).__name__}")
    view = memoryview(data)
    sha = hashlib.sha256(view).hexdigest()
    chunk_count = (len(view) + CHUNK_SIZE - 1) // CHUNK_SIZE
    if len(view) <= SMALL_BYTES:
        # Every prompt and answer: pack first, then one header with its final size and one chunk.
        chunks = [_pack(bytes(view), compress)] if chunk_count else []
        header = _header(sha, len(view), sum(len(payload) for payload, _ in chunks), chunk_count)
        if insert_ignore(session, Blob, header, ["sha256"]):
            _insert_chunks(session, sha, chunks)
        else:
            _touch(session, sha)
        return sha
    # Bigger blobs (a context, a snapshot): don't compress what is stored already.
    if run(session, _BLOB_EXISTS, {"sha": sha}).first() is not None:
        _touch(session, sha)
        return sha
    # A concurrent writer of the same bytes makes this a no-op once it commits; both get the same sha.
    if not insert_ignore(session, Blob, _header(sha, len(view), 0, chunk_count), ["sha256"]):
        _touch(session, sha)
        return sha
    stored = 0
    for seq in range(chunk_count):
        payload, compressed = _pack(bytes(view[seq * CHUNK_SIZE : (seq + 1) * CHUNK_SIZE]), compress)
        stored += len(payload)
        _insert_chunks(session, sha, [(payload, compressed)], first_seq=seq)
    run(session, _BLOB_SIZE, {"b_sha": sha, "stored_size": stored})
    return sha


def _touch(session: Session, sha: str) -> None:
    """Stored again: in use now, whoever stored it first (see ``retention``)."""
    now = utcnow()
    run(session, _BLOB_TOUCH, {"b_sha": sha, "b_now": now, "b_stale": now - TOUCH_EVERY})


def _pack(raw: bytes, compress: bool) -> tuple[bytes, bool]:
    """The chunk as stored, and whether it is compressed (only when that makes it smaller)."""
    packed = zlib.compress(raw, ZLIB_LEVEL) if compress else raw
    return (packed, True) if len(packed) < len(raw) else (raw, False)


def _header(sha: str, size: int, stored: int, chunk_count: int) -> dict[str, object]:
    now = utcnow()
    return {
        "sha256": sha,
        "size": size,
        "stored_size": stored,
        "chunk_count": chunk_count,
        "created_at": now,
        "last_put_at": now,
    }


def _insert_chunks(session: Session, sha: str, chunks: list[tuple[bytes, bool]], first_seq: int = 0) -> None:
    for seq, (payload, compressed) in enumerate(chunks, start=first_seq):
        run(session, _CHUNK_INSERT, {"sha256": sha, "seq": seq, "compressed": compressed, "data": payload})


def iter_blob(session: Session, sha256: str) -> Iterator[bytes]:
    """Yield the blob's bytes chunk by chunk (bounded memory), verifying size and hash at the end."""
    head = run(session, _HEAD, {"sha": sha256}).one_or_none()
    if head is None:
        raise NotFound("blob", sha256)
    digest = hashlib.sha256()
    size = 0
    for seq in range(head.chunk_count):
        row = head if seq == 0 else run(session, _CHUNK, {"sha": sha256, "seq": seq}).one_or_none()
        if row is None or row.data is None:
            raise BlobCorrupt(sha256, f"chunk {seq} of {head.chunk_count} is missing")
        chunk = zlib.decompress(row.data) if row.compressed else bytes(row.data)
        digest.update(chunk)
        size += len(chunk)
        yield chunk
    if size != head.size or digest.hexdigest() != sha256:
        raise BlobCorrupt(
            sha256, f"read {size} bytes hashing to {digest.hexdigest()}, expected {head.size} bytes"
        )


def get_blob(session: Session, sha256: str) -> bytes:
    return b"".join(iter_blob(session, sha256))


def blob_exists(session: Session, sha256: str) -> bool:
    return run(session, _BLOB_EXISTS, {"sha": sha256}).first() is not None


def put_text(session: Session, text: str, *, compress: bool = True) -> str:
    """Store a str as UTF-8; returns the sha256 hex of the encoded bytes."""
    return put_blob(session, text.encode("utf-8"), compress=compress)


def get_text(session: Session, sha256: str) -> str:
    return get_blob(session, sha256).decode("utf-8")


def text_head(session: Session, sha256: str, max_bytes: int) -> str:
    """The text at the start of a blob, from at most its first ``max_bytes`` bytes: a listing's preview
    of a query or an answer reads (and inflates) only that much of its first chunk, whatever the text's
    size. Not verified against the hash, which needs the whole blob; a character cut at the end is left
    out."""
    head = run(session, _HEAD, {"sha": sha256}).one_or_none()
    if head is None:
        raise NotFound("blob", sha256)
    if head.chunk_count == 0:
        return ""  # the empty text has no chunk
    if head.data is None:
        raise BlobCorrupt(sha256, f"chunk 0 of {head.chunk_count} is missing")
    data = bytes(head.data)
    start = zlib.decompressobj().decompress(data, max_bytes) if head.compressed else data[:max_bytes]
    return codecs.getincrementaldecoder("utf-8")().decode(start, final=False)
