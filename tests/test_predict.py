"""predict: segmenting files and writing the outputs."""

import numpy as np
import pytest
import tifffile
from conftest import tiny_config
from PIL import Image

from biounet.cli import main
from biounet.engine import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, isbi_dir):
    """A tiny model trained briefly on ISBI fold 1."""
    run = tmp_path_factory.mktemp("predict") / "run"
    train(tiny_config(data=str(isbi_dir), out=str(run), steps=3), quiet=True)
    return run


def test_predict_a_tiff_stack(run_dir, isbi_dir, tmp_path):
    stack = tifffile.imread(isbi_dir / "test-volume.tif")[:2]
    tifffile.imwrite(tmp_path / "two.tif", stack, photometric="minisblack")
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(tmp_path / "two.tif"),
                "--checkpoint",
                str(run_dir),
                "--out",
                str(out),
                "--labels",
                "--overlay",
            ]
        )
        == 0
    )
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
    # files that fail while running: exit status 1, one line
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty"), "--checkpoint", str(run_dir), "--out", str(tmp_path)]) == 1
    assert "holds no PNG or TIFF" in capsys.readouterr().err
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "rgb.png")
    assert main(["predict", str(tmp_path / "rgb.png"), "--checkpoint", str(run_dir), "--out", str(tmp_path)]) == 1
    assert "3 channel(s) but the model takes 1" in capsys.readouterr().err
    (tmp_path / "fake.pt").write_bytes(b"junk")
    assert (
        main(["predict", str(tmp_path / "rgb.png"), "--checkpoint", str(tmp_path / "fake.pt"), "--out", str(tmp_path)])
        == 1
    )
    assert "not a readable checkpoint" in capsys.readouterr().err


def test_predict_labels_by_a_named_method_with_its_parameters(run_dir, isbi_dir, tmp_path, capsys):
    stack = tifffile.imread(isbi_dir / "test-volume.tif")[:1, :128, :128]
    tifffile.imwrite(tmp_path / "one.tif", stack, photometric="minisblack")
    args = ["predict", str(tmp_path / "one.tif"), "--checkpoint", str(run_dir), "--precision", "fp32"]
    assert main([*args, "--out", str(tmp_path / "mc"), "--labels", "multicut", "--label-param", "beta=0.4"]) == 0
    labels = tifffile.imread(tmp_path / "mc" / "one_labels.tif")
    assert labels.shape == (1, 128, 128) and labels.dtype == np.uint32  # (the methods: test_instances.py)
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "bad"), "--label-param", "beta=0.4"]) == 2
    assert "add --labels METHOD" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "bad"), "--labels", "multicut", "--label-param", "bta=1"]) == 2
