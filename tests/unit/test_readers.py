"""Bad inputs are reported by file and line, never crashed on."""

import pytest

from minitron.data.readers import read_documents
from minitron.errors import DataError


def fails(path, *args) -> str:
    with pytest.raises(DataError) as e:
        list(read_documents(path, *args))
    return str(e.value)


def test_empty_file(tmp_path):
    (tmp_path / "e.txt").write_text("  \n\n")
    assert "e.txt: the file is empty" in fails(tmp_path / "e.txt")


def test_binary_file_names_line(tmp_path):
    (tmp_path / "b.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "x\x00y"}\n')
    assert "b.jsonl:2: binary data" in fails(tmp_path / "b.jsonl")


def test_non_utf8_names_line_and_column(tmp_path):
    (tmp_path / "l.txt").write_bytes("line one\ncaf\xe9 au lait\n".encode("latin-1"))
    msg = fails(tmp_path / "l.txt")
    assert "l.txt:2:" in msg and "0xe9" in msg and "column 4" in msg and "UTF-8" in msg


@pytest.mark.parametrize(
    "body,line,text",
    [
        ('{"text": "a"}\n{"text": "b"\n', 2, "invalid JSON"),
        ('{"text": "a"}\n\n{"body": "b"}\n', 3, "no 'text' field (fields: body)"),
        ("[1, 2]\n", 1, "expected a JSON object"),
        ('{"text": 5}\n', 1, "is int, not a string"),
    ],
)
def test_malformed_jsonl(tmp_path, body, line, text):
    (tmp_path / "d.jsonl").write_text(body)
    msg = fails(tmp_path / "d.jsonl")
    assert f"d.jsonl:{line}:" in msg and text in msg


def test_text_units(tmp_path):
    (tmp_path / "t.txt").write_text("a b\nc\n\n\nd e\n")
    assert list(read_documents(tmp_path / "t.txt")) == ["a b\nc\n\n\nd e"]
    assert list(read_documents(tmp_path / "t.txt", "text", "paragraph")) == ["a b\nc", "d e"]
    assert list(read_documents(tmp_path / "t.txt", "text", "line")) == ["a b", "c", "d e"]


def test_jsonl_key(tmp_path):
    (tmp_path / "k.jsonl").write_text('{"body": "x"}\n{"body": "y"}\n')
    assert list(read_documents(tmp_path / "k.jsonl", "body")) == ["x", "y"]
