"""tests/support/crash.py: SIGKILLed training resumes exactly, prediction leaves no partial output."""

import pytest
from support import crash as crash_harness


@pytest.fixture(scope="module")
def crash():
    return crash_harness


@pytest.fixture(scope="module")
def setup(crash, tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    inputs = crash.make_inputs(root / "inputs")
    return root, inputs, crash.reference_run(root, inputs)


def test_kill_points_are_seeded_and_cover_every_kind(crash):
    a = crash.plan(14, 3, crash.TRAIN_KINDS)
    assert a == crash.plan(14, 3, crash.TRAIN_KINDS) and a != crash.plan(14, 4, crash.TRAIN_KINDS)
    assert {s["kind"] for s in a} == set(crash.TRAIN_KINDS)
    assert all(1 <= s.get("step", 1) < crash.STEPS and 1 <= s.get("nth", 1) < 2 * crash.STEPS // crash.EVERY for s in a)
    p = crash.plan(4, 3, crash.PREDICT_KINDS, predict=True)
    assert {s["kind"] for s in p} == set(crash.PREDICT_KINDS)


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "log_torn", "step": 5, "frac": 0.5},  # half of step 5's metrics line on disk
        {"kind": "ckpt_partial", "nth": 4, "frac": 0.4},  # 40 % of last.pt at step 6 on disk
        {"kind": "at_tmp_file", "nth": 3},  # killed from outside while step_0000006.pt is written
    ],
    ids=lambda s: s["kind"],
)
def test_a_sigkilled_training_resumes_exactly(crash, setup, spec):
    root, inputs, ref = setup
    row = crash.train_trial(0, spec, root / spec["kind"], inputs, ref)
    assert row["killed"], row
    assert row["failed_loads"] == [], row
    assert row["resumed_ok"] and row["resume_how"] == "resume", row
    assert 0 <= row["lost"] <= crash.EVERY, row
    assert row["exact"] and row["max_diff"] == 0.0, row
    assert row["tmp_after_resume"] == [], row  # the killed writer's temporary file is cleaned up
    if spec["kind"] != "log_torn":
        assert row["ckpt_write_kill"] and row["tmp_after_kill"], row


@pytest.mark.slow
def test_a_sigkilled_prediction_leaves_no_partial_output(crash, setup):
    root, inputs, ref = setup
    row = crash.predict_trial(0, {"kind": "tiff_partial", "nth": 2, "frac": 0.5}, root, inputs, ref)
    assert row["killed"], row
    assert row["files_after_kill"] == ["vol_a_membrane.tif"], row  # the second file was being written
    assert row["partial"] == [] and row["tmp_after_kill"], row
    assert row["rerun_ok"] and row["tmp_after_rerun"] == [], row
