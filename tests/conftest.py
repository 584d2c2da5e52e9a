"""Shared fixtures. The ISBI 2012 data must be present: tests fail (never skip) without it."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from biounet.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
ISBI_DIR = ROOT.parent / "shared" / "data" / "isbi2012"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def isbi_dir() -> Path:
    assert (ISBI_DIR / "train-volume.tif").is_file(), (
        f"the ISBI 2012 data is expected at {ISBI_DIR} (../shared/data/isbi2012 from the project root)"
    )
    return ISBI_DIR


@pytest.fixture(scope="session")
def isbi_data(isbi_dir):
    from biounet.data import read_isbi

    return read_isbi(isbi_dir)


# The same tiny network on the command line: width 4, depth 2, 60-pixel tiles (output 20 + ...).
TINY_NET = ["--base-width", "4", "--depth", "2", "--tile-size", "60"]


def tiny_config(**changes) -> TrainConfig:
    """A U-Net small enough for a test: width 4, depth 2, 44-pixel tiles (output 4 + ...)."""
    base = dict(
        base_width=4,
        depth=2,
        tile_size=60,
        batch_size=4,
        steps=4,
        lr=1e-3,
        log_every=2,
        checkpoint_every=2,
        keep_checkpoints=2,
        precision="fp32",
        device="cpu",
        progress="off",
        elastic=True,
        seed=0,
        validation=False,
    )
    base.update(changes)
    return TrainConfig(**base)


def write_pairs(folder: Path, images: list[np.ndarray], masks: list[np.ndarray], suffix: str = ".png") -> Path:
    """Write image/mask pairs in the folder layout biounet reads."""
    import tifffile
    from PIL import Image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for k, (im, m) in enumerate(zip(images, masks)):
        for sub, arr in (("images", im), ("masks", m)):
            path = folder / sub / f"img{k:02d}{suffix}"
            if suffix == ".png":
                Image.fromarray(arr).save(path)
            else:
                tifffile.imwrite(path, arr)
    return folder


def load_script(relative: str):
    """Import a script of the project (``benchmarks/x.py``, ``docs/gen_cli.py``: not in a package) as a
    module, for testing its functions."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` as a module."""
    return load_script(f"benchmarks/{name}.py")
