"""Several students distilled together (one teacher forward per micro-batch) equal the same
students distilled one by one: losses every step, gradient norms and final weights; and a
killed multi-student run resumes bit-exact."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from minitron.config import loader
from minitron.config.train import DistillConfig
from minitron.errors import ConfigError

from distill_helpers import (
    assert_equal_to_alone,
    common,
    make_students,
    rows,
    together_args,
    weights,
)
from helpers import clean_env, minitron


@pytest.fixture(scope="module")
def pair(tiny_models, calib, tmp_path_factory):
    """A teacher and two students of it (width and depth), each also distilled alone."""
    root = tmp_path_factory.mktemp("multi")
    teacher = tiny_models["llama-tied"]
    width, depth = make_students(teacher, calib, root)
    alone = {}
    for s in (width, depth):
        run = root / f"alone-{s.name}"
        minitron(
            [
                "distill",
                "--student",
                str(s),
                "--teacher",
                str(teacher),
                "--out",
                str(run),
                *common(calib),
            ]
        )
        alone[s.name] = run
    return teacher, width, depth, alone


def test_two_students_together_equal_each_alone(pair, calib, tmp_path):
    run = tmp_path / "together"
    minitron(together_args(pair, run, calib))
    assert sorted(p.name for p in (run / "final").iterdir()) == ["depth", "width"]
    assert_equal_to_alone(pair, run, tmp_path)


def test_killed_multi_student_run_resumes_bit_exact(pair, calib, tmp_path):
    full = tmp_path / "full"
    minitron(together_args(pair, full, calib, steps=10))
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "minitron", *together_args(pair, run, calib, steps=10)],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        if (run / "metrics.csv").is_file() and len(rows(run)) >= 5:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 5 <= len(rows(run)) < 10, "the kill came too late to test resumption"
    res = minitron(together_args(pair, run, calib, steps=10))
    assert "resumed from" in res.stdout + res.stderr
    a, b = rows(full), rows(run)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for name in ("width", "depth"):
            assert ra[f"loss_{name}"] == rb[f"loss_{name}"], (ra, rb)
            assert ra[f"grad_norm_{name}"] == rb[f"grad_norm_{name}"], (ra, rb)
    for name in ("width", "depth"):
        wa = weights(full / "final" / name, tmp_path / f"ea-{name}")
        wb = weights(run / "final" / name, tmp_path / f"eb-{name}")
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name


@pytest.mark.parametrize(
    "values,field",
    [
        ({"student": "a", "students": ["b", "c"]}, "student"),
        ({}, "student"),
        ({"students": ["x/a", "y/a"]}, "names"),
        ({"students": ["a", "b"], "names": ["teacher", "b"]}, "names"),
        ({"students": ["a", "b"], "names": ["one"]}, "names"),
    ],
)
def test_student_fields_are_checked_at_load(values, field, tmp_path):
    with pytest.raises(ConfigError) as e:
        loader.load(
            DistillConfig,
            values={"teacher": "t", "out": str(tmp_path / "o"), "data": {"paths": ["d"]}, **values},
        )
    assert e.value.field == field, e.value


def test_one_student_keeps_the_single_student_run(tmp_path):
    cfg = loader.load(
        DistillConfig,
        values={
            "students": ["ckpt/w"],
            "teacher": "t",
            "out": str(tmp_path / "o"),
            "data": {"paths": ["d"]},
        },
    )
    assert (cfg.student, cfg.students, cfg.student_names()) == ("ckpt/w", [], ["student"])
