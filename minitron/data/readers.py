"""Documents from text and jsonl files, with errors that name the file and line.

- ``.jsonl``: one JSON object per line; the document is ``obj[key]`` (blank lines skipped).
- anything else is text: one document per file, per paragraph (blank-line separated)
  or per line, as ``text_unit`` says.

Empty files, binary files (NUL bytes) and bytes that are not UTF-8 raise
:class:`DataError` before a single token is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from minitron.choices import TEXT_UNITS  # noqa: F401  (its own list, shared with config)
from minitron.errors import DataError


def _decode_lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: the file is empty; remove it from the inputs")
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise DataError(
            f"{path}:{line}: binary data (a NUL byte); inputs must be UTF-8 text or jsonl"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(
            f"{path}:{line}: byte {raw[e.start]:#04x} at column {col} is not UTF-8; "
            "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    return text.splitlines()


def json_rows(lines: Iterable[str], name: str) -> Iterator[tuple[str, dict]]:
    """``("file:line", object)`` for every non-blank line, each a JSON object."""
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{name}:{n}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{name}:{n}: expected a JSON object, got {type(obj).__name__}")
        yield f"{name}:{n}", obj


def read_jsonl_rows(path: str | Path) -> list[tuple[str, dict]]:
    """Every row of a jsonl file, after the empty/binary/UTF-8 checks."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    return list(json_rows(_decode_lines(p), str(p)))


def read_jsonl(path: Path, key: str = "text") -> Iterator[str]:
    for where, obj in json_rows(_decode_lines(path), str(path)):
        if key not in obj:
            raise DataError(
                f"{where}: no {key!r} field (fields: {', '.join(obj) or 'none'}); "
                "set jsonl_key to the field that holds the text"
            )
        value = obj[key]
        if not isinstance(value, str):
            raise DataError(f"{where}: field {key!r} is {type(value).__name__}, not a string")
        yield value


def read_text(path: Path, unit: str = "file") -> Iterator[str]:
    lines = _decode_lines(path)
    if unit == "file":
        yield "\n".join(lines)
    elif unit == "line":
        yield from (ln for ln in lines if ln.strip())
    else:
        para: list[str] = []
        for ln in lines + [""]:
            if ln.strip():
                para.append(ln)
            elif para:
                yield "\n".join(para)
                para = []


def read_documents(
    path: str | Path, jsonl_key: str = "text", text_unit: str = "file"
) -> Iterator[str]:
    """Documents of one input file; the file's format follows its suffix."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    if p.suffix == ".jsonl":
        return read_jsonl(p, jsonl_key)
    return read_text(p, text_unit)
