"""The pickle gate: a checkpoint from a stranger cannot run code on load."""

import io
import json
import os
import pickle
import zipfile

import pytest
import torch

from minitron.checkpoint import atomic
from minitron.checkpoint.gate import check_dist_checkpoint, check_pickle, check_torch_file
from minitron.errors import CheckpointError

from helpers import minitron


class _Payload:
    """Unpickling this runs ``touch <marker>``: what an attacker would put in a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _reseal(ckpt):
    """Update the manifest's sizes and sha256 to match the altered files, as an attacker
    who sends the whole directory would."""
    mf = ckpt / "manifest.json"
    m = json.loads(mf.read_text())
    m["files"] = atomic.checksums(ckpt, skip=("manifest.json",))
    mf.write_text(json.dumps(m))


@pytest.fixture(scope="module")
def imported(tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("gate") / "ck"
    minitron(["import", "--hf", str(tiny_models["llama-untied"]), "--out", str(out)])
    return out


def test_our_checkpoints_pass_the_gate(imported):
    check_dist_checkpoint(imported / "weights")


def test_a_crafted_metadata_is_refused_and_never_runs(imported, calib, tmp_path):
    import shutil

    ckpt = tmp_path / "evil"
    shutil.copytree(imported, ckpt)
    marker = tmp_path / "pwned"
    meta = ckpt / "weights" / ".metadata"
    # a real metadata object with the payload attached: unpickling it would run the payload
    with open(meta, "rb") as f:
        md = pickle.load(f)  # our own file, written by the fixture: safe to read here
    md.planner_data = {"x": _Payload(marker)}
    meta.write_bytes(pickle.dumps(md))
    _reseal(ckpt)
    for args in (
        ["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "hf")],
        ["loss", "--model", str(ckpt), f"data.paths=[{calib}]", "data.seq_length=16"],
    ):
        res = minitron(args, check=False)
        assert res.returncode != 0
        assert "posix.system" in res.stderr and ".metadata" in res.stderr, res.stderr[-2000:]
        assert not marker.exists()
    assert not (tmp_path / "hf").exists()


def _torch_zip_with(obj) -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n in src.namelist():
            z.writestr(n, pickle.dumps(obj) if n.endswith("data.pkl") else src.read(n))
    return out.getvalue()


def test_a_crafted_common_pt_and_byte_item_are_refused(imported, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(CheckpointError, match="posix.system"):
        check_torch_file(_torch_zip_with({"a": _Payload(marker)}), "common.pt")
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2), "n": 3}, buf)
    check_torch_file(buf.getvalue(), "ok.pt")  # what torch.save writes passes
    with pytest.raises(CheckpointError, match="legacy"):
        check_torch_file(pickle.dumps({"a": 1}), "old.pt")
    assert not marker.exists()


@pytest.mark.parametrize(
    "global_",
    [
        "builtins.eval",
        "builtins.getattr",
        "subprocess.Popen",
        "torch.load",
        "numpy.core.multiarray._reconstruct",
    ],
)
def test_only_the_formats_globals_are_admitted(global_):
    module, name = global_.rsplit(".", 1)
    data = b"\x80\x04c" + f"{module}\n{name}\n".encode() + b")R."
    with pytest.raises(CheckpointError, match=name):
        check_pickle(data, "x")


def test_a_crafted_optimizer_checkpoint_is_refused_on_resume(tiny_models, calib, tmp_path):
    import shutil

    from test_train import _distill_args

    teacher = tiny_models["llama-untied"]
    run = tmp_path / "run"
    minitron(_distill_args(teacher, teacher, run, calib, 4))
    # back to step 2: the rerun resumes from there and loads its optimizer state
    shutil.rmtree(run / "final")
    shutil.rmtree(run / "checkpoints" / "step_000004")
    ckpt = run / "checkpoints" / "step_000002"
    meta = ckpt / "optim" / "student" / ".metadata"
    marker = tmp_path / "pwned"
    with open(meta, "rb") as f:
        md = pickle.load(f)  # our own file: safe to read here
    md.planner_data = [_Payload(marker)]
    meta.write_bytes(pickle.dumps(md))
    info = json.loads((ckpt / "trainer.json").read_text())  # reseal, as an attacker would
    info["files"] = {
        f"{sub}/{k}": v for sub in ("optim", "rng") for k, v in atomic.checksums(ckpt / sub).items()
    }
    (ckpt / "trainer.json").write_text(json.dumps(info))
    res = minitron(_distill_args(teacher, teacher, run, calib, 4), check=False)
    assert res.returncode != 0 and "posix.system" in res.stderr, res.stderr[-2000:]
    assert not marker.exists()


def test_a_crafted_dataset_cache_never_runs(imported, calib, tmp_path):
    """megatron-core reads its sample-index cache with allow_pickle=True, but memory-mapped:
    numpy refuses object arrays there before unpickling anything."""
    import shutil

    import numpy as np

    data = tmp_path / "data"
    shutil.copytree(calib, data)
    args = ["loss", "--model", str(imported), f"data.paths=[{data}]", "data.seq_length=16"]
    minitron(args)  # writes the cache
    cached = sorted((data / "cache").glob("*.npy"))
    assert cached
    marker = tmp_path / "pwned"
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(marker)
    for f in cached:
        np.save(f, evil, allow_pickle=True)
    res = minitron(args, check=False)
    assert res.returncode != 0 and not marker.exists(), res.stderr[-2000:]
