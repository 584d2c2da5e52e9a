"""The demo's synthetic EM-like images: exact binary labels, reproducible from the seed."""

import numpy as np
from PIL import Image

from biounet.data import write_synthetic_dataset


def _read(folder):
    return {p.relative_to(folder).as_posix(): np.asarray(Image.open(p)) for p in sorted(folder.rglob("*.png"))}


def test_pairs_with_binary_masks_and_both_classes(tmp_path):
    files = _read(write_synthetic_dataset(tmp_path / "a", count=3, size=64, seed=0))
    assert sorted(files) == [f"{sub}/synthetic-{k:02d}.png" for sub in ("images", "masks") for k in range(3)]
    for name, pixels in files.items():
        assert pixels.shape == (64, 64) and pixels.dtype == np.uint8, name
        if name.startswith("masks/"):
            assert set(np.unique(pixels)) == {0, 255}, name  # membrane and cell, nothing between
            assert 0.05 < (pixels == 0).mean() < 0.6, name  # membranes are a minority, but present


def test_the_seed_decides_the_images(tmp_path):
    a = _read(write_synthetic_dataset(tmp_path / "a", count=2, size=64, seed=0))
    b = _read(write_synthetic_dataset(tmp_path / "b", count=2, size=64, seed=0))
    c = _read(write_synthetic_dataset(tmp_path / "c", count=2, size=64, seed=1))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)
