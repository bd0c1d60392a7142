"""Two students distilled together at TP=2 and at PP=2 equal each student distilled alone at
the same layout (losses every step, gradient norms, final weights)."""

import pytest
from test_cli_torchrun import launch

from distill_helpers import assert_equal_to_alone, common, make_students, together_args

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def students(tiny_models, calib, tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_layouts")
    teacher = tiny_models["llama-tied"]
    return teacher, *make_students(teacher, calib, root)


@pytest.mark.parametrize("layout", ["tp=2", "pp=2"])
def test_students_together_equal_each_alone_at_layout(layout, students, calib, tmp_path):
    teacher, width, depth = students
    alone = {}
    for s in (width, depth):
        alone[s.name] = tmp_path / f"alone-{s.name}"
        launch(
            2,
            [
                "distill",
                "--student",
                str(s),
                "--teacher",
                str(teacher),
                "--out",
                str(alone[s.name]),
                *common(calib),
                layout,
            ],
        )
    pair = (teacher, width, depth, alone)
    launch(2, together_args(pair, tmp_path / "together", calib, extra=(layout,)))
    expect = {"tp": 2, "pp": 1, "dp": 1} if layout == "tp=2" else {"tp": 1, "pp": 2, "dp": 1}
    assert_equal_to_alone(pair, tmp_path / "together", tmp_path, layout=expect)
