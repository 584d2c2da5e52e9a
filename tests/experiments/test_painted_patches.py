"""experiments/painted_patches.py: the painted patches of the fine-tuning measurement (docs/finetune.md)."""

import numpy as np
import pytest
import tifffile
from PIL import Image
from support import load_experiment


@pytest.fixture(scope="module")
def patches():
    return load_experiment("painted_patches")


@pytest.fixture
def stack(tmp_path):
    """Four 64x64 sections in the VNC layout: raw/, membranes/ (a vertical membrane), mitochondria/."""
    rng = np.random.default_rng(0)
    for name in ("raw", "membranes", "mitochondria"):
        (tmp_path / "stack" / name).mkdir(parents=True)
    for z in range(4):
        Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "stack" / "raw" / f"{z}.tif")
        membrane = np.zeros((64, 64), bool)
        membrane[:, 30:33] = True
        Image.fromarray(membrane).save(tmp_path / "stack" / "membranes" / f"{z:02d}.png")
        mito = np.zeros((64, 64), np.uint8)
        mito[5:15, 5:15] = 255
        Image.fromarray(mito).save(tmp_path / "stack" / "mitochondria" / f"{z:02d}.png")
    return tmp_path / "stack"


def test_paints_squares_of_the_truth_and_labels_the_test_sections_whole(patches, stack, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--stack", str(stack), "--out", str(out), "--train", "0-1", "--test", "2,3", "--patches", "1"]
    assert patches.main([*argv, "--side", "16", "--mitochondria"]) == 0
    painted = np.asarray(Image.open(out / "train" / "masks" / "z00.png"))
    assert (painted > 0).sum() == 16 * 16  # one square, nothing else painted
    truth = np.asarray(Image.open(out / "test" / "masks" / "z02.png"))
    assert set(np.unique(truth)) == {1, 2, 3} and (truth[:, 30:33] == 1).all() and (truth[5:15, 5:15] == 3).all()
    inside = painted > 0
    np.testing.assert_array_equal(painted[inside], truth[inside])  # the square copies the truth (same in z)
    assert tifffile.imread(out / "volume.tif").shape == (4, 64, 64)
    assert "painted 512 pixels" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="exists"):  # nothing is overwritten
        patches.main(argv)
    with pytest.raises(SystemExit, match="disjoint"):
        patches.main(["--stack", str(stack), "--out", str(tmp_path / "o2"), "--train", "0-2", "--test", "2"])
    with pytest.raises(SystemExit, match="not a list of sections"):
        patches.main(["--stack", str(stack), "--out", str(tmp_path / "o3"), "--train", "a-b"])
    (stack / "membranes" / "03.png").unlink()
    with pytest.raises(SystemExit, match="4 raw sections but 3 membrane"):
        patches.main(["--stack", str(stack), "--out", str(tmp_path / "o4")])
