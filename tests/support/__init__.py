"""Helpers the tests import (``from support import tiny_config``): the tiny network the tests train,
writers of small data sets, and loaders of the project's scripts. The fuzzing strategies
(``support.fuzzing``) and the kill -9 machinery (``support.crash``) live beside them; ``tools/fuzz.py``
and ``tools/crash.py`` run them for long.
"""

import importlib.util
from pathlib import Path

import numpy as np

from biounet.core.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
ISBI_DIR = ROOT.parent / "shared" / "data" / "isbi2012"


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


def tiny_run(folder: Path, steps: int = 1, size: int = 64, **changes) -> Path:
    """A run folder of the tiny network trained ``steps`` steps on two synthetic EM images of ``size``: a
    base model to fine-tune or segment with (seconds on a CPU)."""
    from biounet.data import SegmentationData, synthetic_em_image
    from biounet.data.readers import mask_to_classes, scale_image
    from biounet.train.engine import train

    pairs = [synthetic_em_image(np.random.default_rng(k), size) for k in range(2)]
    images = [scale_image(image, 1) for image, _ in pairs]
    masks = [mask_to_classes(mask, 2, None) for _, mask in pairs]
    train(
        tiny_config(out=str(folder), steps=steps, **changes),
        data=SegmentationData(images, masks, ["a", "b"]),
        quiet=True,
    )
    return folder


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
    """Import a script of the project (``experiments/x.py``, ``docs/gen_cli.py``: not in a package) as a
    module, for testing its functions."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_experiment(name: str):
    """Import ``experiments/<name>.py`` as a module."""
    return load_script(f"experiments/{name}.py")
