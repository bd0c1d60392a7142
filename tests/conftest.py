import os
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", message=".*(Apex|Transformer Engine).*not installed.*")
# Every process the suite starts inherits this mark; `no_process_left_behind` looks for it.
SESSION_MARK = f"MINITRON_TEST_SESSION={os.getpid()}"
os.environ["MINITRON_TEST_SESSION"] = str(os.getpid())


def _marked_processes() -> dict[int, str]:
    """{pid: command line} of the live processes (not this one) that carry this session's mark."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if SESSION_MARK.encode() not in (d / "environ").read_bytes().split(b"\0"):
                continue
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                found[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
    return found


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    """The suite fails when a process it started (directly or through a child that has since
    died) is still alive at its end; the survivors are killed and listed."""
    import signal
    import time

    yield
    if "minitron.checkpoint.dist_save" in sys.modules:  # this process's own results manager
        sys.modules["minitron.checkpoint.dist_save"].shutdown()
    from multiprocessing import resource_tracker  # started by spawn; ends with this process

    resource_tracker._resource_tracker._stop()
    if not Path("/proc/self/environ").exists():
        return
    deadline = time.time() + 15
    while (left := _marked_processes()) and time.time() < deadline:
        time.sleep(0.5)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not left, "processes left behind by the suite: " + "; ".join(
        f"{pid}: {cmd[:200]}" for pid, cmd in left.items()
    )


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tiny_tokenizer):
    """{variant: HF directory} for every tiny variant, each with the tiny tokenizer."""
    import shutil

    from helpers import VARIANTS, make_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    out = {}
    for v in VARIANTS:
        out[v] = make_tiny_model(root / v, v)
        for f in tiny_tokenizer.iterdir():
            shutil.copy2(f, out[v] / f.name)
    return out


@pytest.fixture(scope="session")
def smollm2_dir():
    """The embedded SmolLM2-135M as a HF directory (converted once per machine)."""
    from minitron.models.sources import resolve_model

    return resolve_model("smollm2-135m")


@pytest.fixture(scope="session")
def world():
    """A one-process torch.distributed + megatron-core world (TP=1, PP=1) for in-process tests."""
    from minitron.cli import quiet_megatron
    from minitron.parallel import runtime

    quiet_megatron()
    return runtime.init(1, 1)


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    from helpers import make_tiny_tokenizer

    return make_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session")
def calib(tiny_tokenizer, tmp_path_factory):
    """A small prepared corpus in the tiny tokenizer (calibration and held-out text)."""
    import json

    from helpers import minitron

    root = tmp_path_factory.mktemp("calib")
    rows = [
        json.dumps({"text": f"Story {i}: the quick brown fox jumps over {i} lazy dogs."})
        for i in range(300)
    ]
    (root / "c.jsonl").write_text("\n".join(rows))
    minitron(
        [
            "data",
            "prepare",
            "--input",
            str(root / "c.jsonl"),
            "--tokenizer",
            str(tiny_tokenizer),
            "--out",
            str(root / "data"),
        ]
    )
    return root / "data"
