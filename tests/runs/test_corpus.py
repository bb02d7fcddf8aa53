"""Corpora as contexts (``orchestrator.corpus``): what becomes a document, the packed blob, the limits and
the refusals, the shape the first prompt tells of, and ``context`` in a (process) sandbox."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator.activities.context import context_shape
from orchestrator.corpus import ContextLimits, CorpusError, Document, pack, read_documents, unpack
from orchestrator.protocol.prompts import first_user_message
from orchestrator.runs import RunError, RunRequest, checked_input
from sandbox import open_session
from tests.sandbox.helpers import no_subcalls


def _tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def _names(docs: list[Document]) -> list[str]:
    return [d.name for d in docs]


def test_a_directory_is_its_files_by_relative_path_hidden_ones_skipped(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "docs",
        {
            "b.txt": "bee",
            "a/z.txt": "zed",
            "a/b/c.txt": "sea",
            "a.txt": "ay",
            "meta.json": '{"k": [1, 2]}',
            ".hidden.txt": "no",
            ".git/config": "no",
        },
    )
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.txt").write_text("outside")
    (root / "linked-dir").symlink_to(tmp_path / "elsewhere")  # not followed
    (root / "same.txt").symlink_to(root / "b.txt")  # a link within the directory is a document
    docs = read_documents([root])
    # Ordered by path parts: "a/b/c.txt" < "a/z.txt" < "a.txt" ("a" sorts before "a.txt" as a part).
    assert _names(docs) == ["a/b/c.txt", "a/z.txt", "a.txt", "b.txt", "meta.json", "same.txt"]
    assert [d.value for d in docs] == ["sea", "zed", "ay", "bee", {"k": [1, 2]}, "bee"]


def test_a_symlink_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "docs", {"a.txt": "ay"})
    (tmp_path / "secret.txt").write_text("not part of the corpus")
    (root / "leak.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(CorpusError, match=r"leak.txt is a symbolic link to .*secret.txt, outside"):
        read_documents([root])


def test_json_lines_are_one_document_each_and_paths_keep_their_order(tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl"
    records.write_text('"first"\r\n\n  \n{"id": 2, "text": "second\u2028line"}\n[3]\n')
    note = tmp_path / "note.txt"
    note.write_text("a note")
    docs = read_documents([note, records])
    assert _names(docs) == ["note.txt", "records.jsonl:1", "records.jsonl:4", "records.jsonl:5"]
    assert [d.value for d in docs] == ["a note", "first", {"id": 2, "text": "second\u2028line"}, [3]]


def test_pack_is_canonical_and_unpacks_to_the_same_documents(tmp_path: Path) -> None:
    docs = [Document("a", "text é"), Document("b", {"z": 1, "a": [True, None]}), Document("c", "\ud800")]
    blob = pack(docs)
    assert blob == pack(list(docs)) and json.loads(blob)["names"] == ["a", "b", "c"]
    assert unpack(blob) == docs
    same = [Document("a", "text é"), Document("b", {"a": [True, None], "z": 1}), Document("c", "\ud800")]
    assert pack(same) == blob
    assert pack(docs[:2]) == '{"documents":["text é",{"a":[true,null],"z":1}],"names":["a","b"]}'.encode()


@pytest.mark.parametrize(
    ("files", "pattern"),
    [
        ({"a.txt": "ok", "b.txt": b"caf\xe9"}, r"context .*b.txt is not UTF-8 text \(byte offset 3\)"),
        ({"a.txt": "ok", "b.bin": b"ab\0cd"}, r"context .*b.bin is a binary file \(a NUL byte at offset 2\)"),
        ({"a.txt": "ok", "b.txt": " \n"}, r"context .*b.txt is empty"),
        ({"a.txt": "ok", "b.json": "{"}, r"context .*b.json is not valid JSON: .* at line 1 column 2"),
        ({".only-hidden": "x"}, r"context .*docs holds no documents \(hidden files are skipped\)"),
    ],
)
def test_a_bad_file_in_a_directory_is_one_clear_error(
    tmp_path: Path, files: dict[str, str | bytes], pattern: str
) -> None:
    root = _tree(tmp_path / "docs", files)
    with pytest.raises(CorpusError, match=pattern):
        read_documents([root])


def test_bad_json_lines_and_duplicate_names_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('"ok"\n{"id": 1,}\n')
    with pytest.raises(CorpusError, match=r"context .*bad.jsonl line 2 is not valid JSON: .* at column 10"):
        read_documents([bad])
    blank = tmp_path / "blank.jsonl"
    blank.write_text('"ok"\n"  "\n')
    with pytest.raises(CorpusError, match=r"blank.jsonl line 2 is an empty document"):
        read_documents([blank])
    one = _tree(tmp_path / "one", {"a.txt": "1"})
    two = _tree(tmp_path / "two", {"a.txt": "2"})
    with pytest.raises(CorpusError, match=r"two documents are named 'a.txt' \(in .*one and .*two\)"):
        read_documents([one, two])
    with pytest.raises(CorpusError, match=r"context .*missing is not a readable file \(it does not exist\)"):
        read_documents([one, tmp_path / "missing"])


def test_limits_refuse_before_reading(tmp_path: Path) -> None:
    # The first file, if it were read, would be refused as binary: a limit's error says it never was.
    root = _tree(tmp_path / "docs", {"a.bin": b"\0", **{f"t{i}.txt": "text" for i in range(4)}})
    with pytest.raises(CorpusError, match=r"more than 3 documents; .*RLM_CONTEXT_MAX_DOCUMENTS"):
        read_documents([root], ContextLimits(max_documents=3))
    big = root / "z.txt"
    with big.open("wb") as handle:
        handle.truncate(64 << 20)  # sparse: 64 MiB the limit refuses unread
    with pytest.raises(CorpusError, match=r"more than 1,048,576 bytes \(reached at .*z.txt\); .*MAX_BYTES"):
        read_documents([root], ContextLimits(max_bytes=1 << 20))
    records = tmp_path / "r.jsonl"
    records.write_text("".join(f'"{i}"\n' for i in range(10)))
    with pytest.raises(CorpusError, match=r"more than 9 documents"):
        read_documents([records], ContextLimits(max_documents=9))
    assert len(read_documents([records], ContextLimits(max_documents=0, max_bytes=0))) == 10


def test_a_single_file_is_stored_as_before_and_anything_else_as_a_corpus(tmp_path: Path) -> None:
    text = tmp_path / "ctx.txt"
    text.write_bytes(b"plain text\r\nkept byte for byte \xc3\xa9")
    value = tmp_path / "ctx.json"
    value.write_text('{"b": 1,  "a": 2}')
    for path, suffix in ((text, ".txt"), (value, ".json")):
        inp = checked_input(RunRequest("q?", path))
        assert (inp.context, inp.context_suffix) == (path.read_bytes(), suffix)
        assert checked_input(RunRequest("q?", (path,))).context == path.read_bytes()
    both = checked_input(RunRequest("q?", (text, value)))
    assert both.context_suffix == ".docs"
    assert unpack(both.context) == [
        Document("ctx.txt", "plain text\r\nkept byte for byte é"),
        Document("ctx.json", {"a": 2, "b": 1}),
    ]
    with pytest.raises(RunError, match=r"context holds more than 10 bytes \(reached at .*ctx.txt\)"):
        checked_input(RunRequest("q?", text), ContextLimits(max_bytes=10))
    with pytest.raises(RunError, match=r"context .*nothing.txt is not a readable file \(it does not exist\)"):
        checked_input(RunRequest("q?", tmp_path / "nothing.txt"))


def test_the_first_prompt_lists_count_lengths_and_names_never_the_text(tmp_path: Path) -> None:
    docs = [Document(f"part-{i:02}.txt", "x" * (i + 1)) for i in range(25)]
    docs.append(Document("r.jsonl:1", {"a": 1}))
    info = context_shape(pack(docs).decode(), ".docs")
    assert (info.kind, info.total_chars, len(info.names)) == ("documents", 325 + 8, 26)
    message = first_user_message("Which part is longest?", info)
    assert message.startswith("`context` is a list of 26 documents, 333 characters in total, of these")
    assert "[1, 2, 3," in message and "... 6 more, from 8 to 25]" in message
    assert "`context.names` holds their names in the same order: 'part-00.txt', 'part-01.txt'," in message
    assert "'part-19.txt', ... and 6 more." in message and "part-20" not in message
    assert "xxx" not in message
    single = first_user_message("q", context_shape(pack(docs[:1]).decode(), ".docs"))
    assert re.match(r"`context` is a list of 1 document, 1 characters in total", single)


def test_the_sandbox_gives_a_list_with_names_that_survives_a_snapshot(tmp_path: Path) -> None:
    corpus = tmp_path / "c.docs"
    corpus.write_bytes(pack([Document("a.txt", "alpha"), Document("r.jsonl:2", {"n": 2})]))
    code = "docs = context\nprint(isinstance(context, list), context.names, context[1]['n'], context[:1])"
    with open_session(backend="process", context_path=corpus) as first:
        done = first.execute(code, no_subcalls)
        assert done.status == "ok", done.traceback
        assert done.stdout.strip() == "True ['a.txt', 'r.jsonl:2'] 2 ['alpha']"
        assert first.context_info == {"type": "Documents", "length": 2}
        assert done.snapshot is not None and done.unpicklable == []
    with open_session(backend="process", context_path=None) as second:
        second.restore(done.snapshot)
        again = second.execute("print(docs.names, list(docs), type(docs).__name__)", no_subcalls)
        assert again.stdout.strip() == "['a.txt', 'r.jsonl:2'] ['alpha', {'n': 2}] Documents", again.traceback
