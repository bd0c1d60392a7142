"""One (model, backend) measurement in its own process, so its memory peak is its own.

    python -m minitron.bench.worker '{"backend": "transformers", "path": "hf/student", ...}'

Prints one line ``MINITRON_BENCH_RESULT <json>``.
"""

import json
import sys

from minitron.bench.backends import RUNNERS

if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    if spec.get("threads"):
        import torch

        torch.set_num_threads(int(spec["threads"]))
    runner = RUNNERS[spec.pop("backend")]
    spec.pop("threads", None)
    result = runner(**spec)
    result["results"] = {str(k): v for k, v in result["results"].items()}
    print("MINITRON_BENCH_RESULT " + json.dumps(result), flush=True)
