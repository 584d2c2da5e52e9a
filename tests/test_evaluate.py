import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from biounet.cli import main
from biounet.engine import train
from conftest import tiny_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, isbi_dir):
    """A tiny model trained briefly on ISBI fold 1, validated at the end."""
    run = tmp_path_factory.mktemp("eval") / "run"
    train(tiny_config(data=str(isbi_dir), out=str(run), steps=3, validation=True), quiet=True)
    return run


def test_training_validates_and_keeps_the_best(run_dir):
    rows = [json.loads(x) for x in (run_dir / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3]
    for key in ("dice_coeff", "dice_coeff_388", "pixel_error", "pixel_mismatch", "v_rand", "v_info"):
        assert 0.0 <= rows[0][key] <= 1.0, key
    assert (run_dir / "best.pt").is_file()


def test_evaluate_writes_the_report(run_dir, isbi_dir, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["evaluate", "--checkpoint", str(run_dir), "--data", str(isbi_dir), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["fold"] == "1" and report["n_images"] == 6
    assert [r["name"] for r in report["per_image"]] == [f"slice-{i:02d}" for i in (4, 6, 7, 9, 18, 19)]
    for key in ("dice_coeff", "dice_coeff_388", "pixel_error", "pixel_mismatch", "v_rand", "v_info"):
        assert 0.0 <= report[key] <= 1.0
        assert report[key] == pytest.approx(np.mean([r[key] for r in report["per_image"]]), abs=1e-9)
    assert set(report["thresholds"]) == {"pixel_error", "v_rand", "v_info"}
    assert "dice_coeff" in capsys.readouterr().out


def test_evaluate_refuses_training_slices(run_dir, isbi_dir, capsys):
    assert main(["evaluate", "--checkpoint", str(run_dir), "--data", str(isbi_dir), "--fold", "0"]) == 2
    assert "--allow-train-slices" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(run_dir), "--data", str(isbi_dir), "--fold", "0",
                 "--allow-train-slices"]) == 0


def test_predict_a_tiff_stack(run_dir, isbi_dir, tmp_path):
    stack = tifffile.imread(isbi_dir / "test-volume.tif")[:2]
    tifffile.imwrite(tmp_path / "two.tif", stack, photometric="minisblack")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "two.tif"), "--checkpoint", str(run_dir), "--out", str(out),
                 "--labels", "--overlay"]) == 0
    membrane = tifffile.imread(out / "two_membrane.tif")
    assert membrane.shape == (2, 512, 512) and membrane.dtype == np.float32
    assert membrane.min() >= 0 and membrane.max() <= 1
    mask = tifffile.imread(out / "two_mask.tif")
    assert set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask == 0, membrane > 0.5)
    assert tifffile.imread(out / "two_labels.tif").dtype == np.uint32
    assert Image.open(out / "two_overlay_000.png").size == (512, 512)
    assert not [p for p in out.iterdir() if "tmp" in p.name]


def test_predict_bad_inputs(run_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty"), "--checkpoint", str(run_dir), "--out", str(tmp_path)]) == 2
    assert "holds no PNG or TIFF" in capsys.readouterr().err
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "rgb.png")
    assert main(["predict", str(tmp_path / "rgb.png"), "--checkpoint", str(run_dir), "--out", str(tmp_path)]) == 2
    assert "3 channel(s) but the model takes 1" in capsys.readouterr().err
    (tmp_path / "fake.pt").write_bytes(b"junk")
    assert main(["predict", str(tmp_path / "rgb.png"), "--checkpoint", str(tmp_path / "fake.pt"),
                 "--out", str(tmp_path)]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err
