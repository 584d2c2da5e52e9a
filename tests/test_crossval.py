import json

import pytest

from biounet.cli import main
from biounet.crossval import cv_table, parse_folds
from biounet.errors import ConfigError

TINY = ["--base-width", "4", "--depth", "2", "--tile-size", "60", "--batch-size", "4", "--steps", "2",
        "--precision", "fp32", "--progress", "off", "--no-validation"]


def test_parse_folds():
    assert parse_folds("0, 3", 5) == ["0", "3"]
    with pytest.raises(ConfigError, match="0..4"):
        parse_folds("1,5", 5)


def test_table_has_mean_and_std():
    summary = {"folds": {"0": {"dice_coeff": 0.5}, "1": {"dice_coeff": 0.7}},
               "mean": {"dice_coeff": 0.6}, "std": {"dice_coeff": 0.1}}
    assert cv_table(summary).splitlines()[-1] == "| mean +- std | 0.6000 +- 0.1000 |"


@pytest.mark.slow
def test_cv_trains_evaluates_and_resumes_fold_by_fold(isbi_dir, tmp_path, capsys):
    out = tmp_path / "cv"
    args = ["cv", "--data", str(isbi_dir), "--out", str(out), "--folds", "1,2", *TINY]
    assert main(args) == 0
    summary = json.loads((out / "cv.json").read_text())
    assert set(summary["folds"]) == {"1", "2"}
    assert summary["folds"]["1"]["n_images"] == 6
    assert "mean +- std" in (out / "cv.md").read_text()
    capsys.readouterr()
    assert main(args) == 0  # finished folds are kept, not retrained
    assert capsys.readouterr().out.count("trained (2 steps), evaluating") == 2
