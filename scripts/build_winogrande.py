"""Rebuild minitron/data/tasks/winogrande_bigbench.jsonl.gz (builtin:winogrande) from BIG-bench.

    pip download --no-deps --no-binary :all: bigbench==1.0.0 -d /tmp/bb   # 358 MB sdist
    python scripts/build_winogrande.py /tmp/bb/bigbench-1.0.0.tar.gz

Parses subtask029_winogrande_full_object with minitron's own parser
(minitron.eval.tasks.winogrande_from_bigbench) and writes the rows, one JSON
object per line, gzip-compressed with a fixed timestamp (reproducible bytes).
"""

import gzip
import io
import json
import sys

from minitron.eval.tasks import BUILTIN_WINOGRANDE, _bigbench_task, winogrande_from_bigbench


def main():
    spec = "bigbench" if len(sys.argv) < 2 else f"bigbench:{sys.argv[1]}"
    rows = winogrande_from_bigbench(_bigbench_task(spec))
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as f:
        f.write(text)
    BUILTIN_WINOGRANDE.write_bytes(buf.getvalue())
    print(f"wrote {len(rows)} items to {BUILTIN_WINOGRANDE}")


if __name__ == "__main__":
    main()
