import json
import logging
import pickle

import h5py
import numpy as np
import pytest
import tifffile
import torch
import zarr
from support import TINY_NET, tiny_config

from biounet.cli import main
from biounet.core.config import CONFIG_VERSION
from biounet.core.errors import ConfigError, DataError
from biounet.data import kfold_split, open_dataset, read_isbi
from biounet.data.readers import IGNORE
from biounet.data.volume_data import ImageSlices, MaskSlices, SliceCache, WeightMaps, item_shape, loss_weights
from biounet.train.engine import train

SLICES, SIDE = 12, 128


@pytest.fixture(scope="module")
def stacks(isbi_dir):
    """The first 12 ISBI slices cropped to 128 x 128: (images, labels), uint8 (Z, H, W)."""
    images = tifffile.imread(isbi_dir / "train-volume.tif")[:SLICES, :SIDE, :SIDE]
    labels = tifffile.imread(isbi_dir / "train-labels.tif")[:SLICES, :SIDE, :SIDE]
    return np.ascontiguousarray(images), np.ascontiguousarray(labels)


def write_zarr(path, pixels, zarr_format):
    array = zarr.create_array(
        str(path), shape=pixels.shape, dtype=pixels.dtype, chunks=(1, 64, 64), zarr_format=zarr_format
    )
    array[...] = pixels
    return str(path)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, stacks):
    """The same slices three ways: the ISBI folder layout (TIFF), images Zarr v3 + labels Zarr v2, labels HDF5."""
    root = tmp_path_factory.mktemp("volumes")
    images, labels = stacks
    tiff = root / "isbi"
    tiff.mkdir()
    tifffile.imwrite(tiff / "train-volume.tif", images)
    tifffile.imwrite(tiff / "train-labels.tif", labels)
    with h5py.File(root / "labels.h5", "w") as f:
        f.create_dataset("seg/labels", data=labels, chunks=(1, 64, 64))
    return {
        "tiff": str(tiff),
        "images": write_zarr(root / "images.zarr", images, 3),
        "labels": write_zarr(root / "labels.zarr", labels, 2),
        "h5": f"{root / 'labels.h5'}:/seg/labels",
    }


@pytest.mark.parametrize("labels", ["labels", "h5"])
def test_volume_pair_reads_the_slices_of_the_tiff_pair(pair, labels):
    reference = read_isbi(pair["tiff"])
    data = open_dataset(pair["images"], masks=pair[labels])
    assert isinstance(data.images, ImageSlices) and isinstance(data.masks, MaskSlices)
    assert len(data) == SLICES and data.names[:2] == ["z0000", "z0001"]
    assert item_shape(data.images, 3) == (1, SIDE, SIDE) and item_shape(data.masks, 3) == (SIDE, SIDE)
    for i in (0, 5, 11):
        assert data.images[i].dtype == np.float32 and data.masks[i].dtype == np.int16
        np.testing.assert_array_equal(data.images[i], reference.images[i])
        np.testing.assert_array_equal(data.masks[i], reference.masks[i])
    assert [m.shape for m in data.masks[10:]] == [(SIDE, SIDE)] * 2  # a range of slices reads each


def test_a_tiff_stack_pair_is_a_volume_pair(pair):
    data = open_dataset(f"{pair['tiff']}/train-volume.tif", masks=f"{pair['tiff']}/train-labels.tif")
    np.testing.assert_array_equal(data.images[7], read_isbi(pair["tiff"]).images[7])


def test_slices_are_cached_boundedly_and_pickle_without_the_cache(pair):
    data = open_dataset(pair["images"], masks=pair["labels"])
    data.images.cache.max_items = 3
    first = data.images[0]
    assert data.images[0] is first  # cached
    for i in range(SLICES):
        data.images[i]
    assert len(data.images.cache) == 3 and data.images[0] is not first  # evicted, read again
    np.testing.assert_array_equal(data.images[0], first)
    copy = pickle.loads(pickle.dumps(data.images))
    assert len(copy.cache) == 0 and copy.cache.max_items == 3
    np.testing.assert_array_equal(copy[4], data.images[4])


def test_slice_cache_bounds_the_bytes_and_keeps_the_newest():
    cache = SliceCache(max_items=10, max_bytes=250)
    for key in range(3):
        cache.get(key, lambda: np.zeros(100, np.uint8))
    assert len(cache) == 2  # 300 bytes > 250: the oldest went
    big = cache.get("big", lambda: np.zeros(1000, np.uint8))
    assert len(cache) == 1 and cache.get("big", lambda: np.ones(1)) is big


def test_sparse_label_slices_are_left_out_and_said_once(tmp_path, pair, stacks, caplog):
    images, labels = stacks
    sparse = labels.copy()
    sparse[[2, 3, 9]] = 7  # unlabelled slices: only the ignore value
    sparse[5, :10] = 7  # a partly labelled slice stays
    spec = write_zarr(tmp_path / "sparse.zarr", sparse, 3)
    with caplog.at_level(logging.INFO, logger="biounet"):
        data = open_dataset(pair["images"], masks=spec, ignore_value=7)
    said = [r.getMessage() for r in caplog.records if "ignore value" in r.getMessage()]
    assert len(said) == 1 and "3 of the 12 slices" in said[0] and "9 images" in said[0], said
    assert data.names == [f"z{z:04d}" for z in (0, 1, 4, 5, 6, 7, 8, 10, 11)]
    np.testing.assert_array_equal(data.images[2], read_isbi(pair["tiff"]).images[4])  # z=4
    assert (data.masks[3][:10] == IGNORE).all() and (data.masks[3][10:] != IGNORE).all()  # z=5


def test_lazy_loss_weights_equal_the_weights_in_memory(pair):
    lazy = open_dataset(pair["images"], masks=pair["labels"])
    eager = read_isbi(pair["tiff"])
    indices = [0, 3, 4, 8]
    maps = loss_weights(lazy.masks, indices, 2, 10.0, 5.0, True)
    assert isinstance(maps, WeightMaps) and list(maps) == indices
    expected = loss_weights(eager.masks, indices, 2, 10.0, 5.0, True)
    assert isinstance(expected, dict)
    for i in indices:
        np.testing.assert_array_equal(maps[i], expected[i])
    assert loss_weights(lazy.masks, indices, 2, 0.0, 5.0, False) is None
    with pytest.raises(KeyError):
        maps[1]


def _weights(run):
    return torch.load(run / "last.pt", weights_only=True)["model"]


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_training_and_evaluating_on_volumes_equals_the_tiff_pair(pair, tmp_path, capsys):
    """The acceptance test of training on volumes: the same seed and config give bit-for-bit the same
    weights and losses from a Zarr pair as from the same slices in the ISBI TIFF layout, and evaluate
    scores the same (every metric, every image)."""
    # class balance and the border weights exercise the lazy weight maps too
    cfg = tiny_config(steps=3, class_balance=True, border_weight=10.0, batch_size=2)
    runs = {}
    for kind, data, masks in (("tiff", pair["tiff"], None), ("zarr", pair["images"], pair["labels"])):
        runs[kind] = tmp_path / kind
        train(cfg.replace(data=data, masks=masks, out=str(runs[kind])), quiet=True)
    tiff, vol = _weights(runs["tiff"]), _weights(runs["zarr"])
    assert tiff.keys() == vol.keys() and all(torch.equal(tiff[k], vol[k]) for k in tiff)
    assert _losses(runs["tiff"]) == _losses(runs["zarr"]) and len(_losses(runs["tiff"])) == 3
    reports = {}
    for kind, extra in (("tiff", []), ("zarr", ["--masks", pair["labels"]])):
        data = pair["tiff"] if kind == "tiff" else pair["images"]
        out = tmp_path / f"{kind}.json"
        args = ["evaluate", "--model", str(runs["tiff"] / "last.pt"), "--data", data, *extra, "--json", str(out)]
        assert main([*args, "--device", "cpu", "--precision", "fp32"]) == 0
        reports[kind] = json.loads(out.read_text())
    capsys.readouterr()
    for report in reports.values():
        for row in report["per_image"]:
            row.pop("name")
    assert {k: v for k, v in reports["tiff"].items() if k != "path"} == {
        k: v for k, v in reports["zarr"].items() if k != "path"
    }
    # the training slices are refused in the volume too (compared by content)
    args = ["evaluate", "--model", str(runs["tiff"] / "last.pt"), "--data", pair["images"], "--fold", "0"]
    assert main([*args, "--masks", pair["labels"]]) == 2
    assert "were used to train the checkpoint" in capsys.readouterr().err


def test_train_and_evaluate_take_the_masks_flag(pair, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", pair["images"], "--masks", pair["h5"], "--out", str(out), *TINY_NET]
    assert main([*args, "--steps", "1", "--batch-size", "2", "--device", "cpu", "--no-validation"]) == 0
    saved = (out / "config.yaml").read_text()
    assert f"masks: {pair['h5']}" in saved and f"config_version: {CONFIG_VERSION}" in saved


@pytest.mark.parametrize(
    "argv, error, match",
    [
        (["--data", "{tiff}", "--masks", "{labels}"], ConfigError, "is not a volume .*drop --masks for a folder"),
        (["--data", "{images}"], ConfigError, "is an image volume: pass its labels with --masks"),
        (["--data", "{images}", "--masks", "{tiff}"], ConfigError, "--masks .* is not a volume"),
        (["--data", "{images}", "--masks", "{short}"], DataError, "is 11 x 128 x 128 voxels .* same shape"),
        (["--data", "{images}", "--masks", "{rgb}"], DataError, "has 3 channels .* one class value per voxel"),
        (["--data", "{images}", "--masks", "{empty}"], DataError, "holds only the ignore value 0"),
        (["--data", "{images}", "--masks", "{grey}"], DataError, "z=0 is not a binary mask"),
    ],
    ids=["masks-for-a-folder", "no-masks", "masks-folder", "shapes", "label-channels", "all-ignored", "bad-values"],
)
def test_bad_volume_pairs_are_one_clear_error(pair, stacks, tmp_path, capsys, argv, error, match):
    images, labels = stacks
    specs = dict(pair)
    specs["short"] = write_zarr(tmp_path / "short.zarr", labels[:-1], 3)
    specs["rgb"] = str(tmp_path / "rgb.tif")
    tifffile.imwrite(specs["rgb"], np.stack([labels] * 3, axis=-1), photometric="rgb")
    specs["empty"] = write_zarr(tmp_path / "empty.zarr", np.zeros_like(labels), 3)
    specs["grey"] = write_zarr(tmp_path / "grey.zarr", images, 3)
    argv = [a.format(**specs) for a in argv]
    kwargs = {"masks": argv[3] if len(argv) > 2 else None, "ignore_value": 0 if "empty" in argv[-1] else None}
    with pytest.raises(error, match=match):
        open_dataset(argv[1], **kwargs)
    code = main(["train", *argv, *(["--ignore-value", "0"] if "empty" in argv[-1] else []), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == error.exit_code and len(err.splitlines()) == 1 and "Traceback" not in err, err


# --- painted labels (napari's Labels layer): 0 unlabelled, 1..K the classes ------------------------------


@pytest.fixture(scope="module")
def painted(tmp_path_factory, stacks):
    """Three painted classes over the 12 slices: a few strokes on most slices, nothing on slices 2, 3 and 9.
    Returns (label spec, the painted values)."""
    _, labels = stacks
    values = np.zeros_like(labels)
    for z in set(range(SLICES)) - {2, 3, 9}:
        values[z, 10:40, 10:40] = np.where(labels[z, 10:40, 10:40] == 255, 2, 1)  # membrane 1, cell 2
        values[z, 90:96, 20 + 5 * z : 30 + 5 * z] = 3  # a third class, somewhere else on every slice
    root = tmp_path_factory.mktemp("painted")
    return write_zarr(root / "painted.zarr", values, 3), values


def test_painted_volume_leaves_out_unpainted_slices_and_reads_0_as_unlabelled(pair, painted, caplog):
    spec, values = painted
    with caplog.at_level(logging.INFO, logger="biounet"):
        data = open_dataset(pair["images"], classes=3, masks=spec, painted=True)
    said = [r.getMessage() for r in caplog.records if "nothing painted" in r.getMessage()]
    assert len(said) == 1 and "3 of the 12 slices" in said[0] and "hold only 0 (nothing painted)" in said[0], said
    assert data.names == [f"z{z:04d}" for z in (0, 1, 4, 5, 6, 7, 8, 10, 11)]
    np.testing.assert_array_equal(data.masks[2], values[4].astype(np.int16) - 1)
    with pytest.raises(DataError, match=r"painted\.zarr z=0 holds the painted value\(s\) 3, .*--classes"):
        open_dataset(pair["images"], classes=2, masks=spec, painted=True)
    with pytest.raises(ConfigError, match="--painted conflicts with --ignore-value"):
        open_dataset(pair["images"], classes=3, masks=spec, painted=True, ignore_value=0)


def test_tiles_of_a_painted_volume_come_from_its_painted_pixels(pair, painted):
    """The sampler reads no slice to choose its images (labelled_slices did), and every tile holds painted
    pixels although nine tenths of each slice is unpainted."""
    from biounet.data import AugmentConfig, TileSampler

    data = open_dataset(pair["images"], classes=3, masks=painted[0], painted=True)
    flips = AugmentConfig(flip=True, rotate90=True, elastic=False, brightness=0, contrast=0)
    sampler = TileSampler(data, list(range(len(data))), 44, 20, flips, seed=0)
    assert sampler.indices == list(range(9)) and len(data.masks.cache) == 0
    tiles = [sampler(k)[1] for k in range(60)]
    assert all((t != IGNORE).any() for t in tiles)
    assert {0, 1, 2} <= set(np.unique(np.concatenate([t.ravel() for t in tiles])).tolist())


def test_train_and_evaluate_on_painted_volumes_report_each_class(pair, painted, tmp_path, capsys):
    """End to end: `train --painted --classes 3` on a painted label volume, then `evaluate`, which reads the
    masks as the model was trained and prints a row of scores per class."""
    out = tmp_path / "run"
    args = ["train", "--data", pair["images"], "--masks", painted[0], "--painted", "--classes", "3", *TINY_NET]
    run = ["--steps", "2", "--batch-size", "2", "--device", "cpu", "--no-validation", "--progress", "off"]
    assert main([*args, *run, "--out", str(out)]) == 0
    assert "painted: true" in (out / "config.yaml").read_text()
    report_path = tmp_path / "report.json"
    ev = ["evaluate", "--model", str(out / "last.pt"), "--data", pair["images"], "--masks", painted[0]]
    assert main([*ev, "--device", "cpu", "--json", str(report_path)]) == 0
    printed = capsys.readouterr().out
    assert "per class" in printed and all(f"class {k}" in printed for k in range(3)), printed
    report = json.loads(report_path.read_text())
    assert sorted(report["per_class"]) == ["0", "1", "2"]
    held = [(0, 1, 4, 5, 6, 7, 8, 10, 11)[i] for i in kfold_split(9, "1", 5)[1]]  # the painted slices of fold 1
    painted_pixels = [int((painted[1][held] == k + 1).sum()) for k in range(3)]
    assert [report["per_class"][str(k)]["pixels"] for k in range(3)] == painted_pixels
    # --no-painted reads the same masks as class indices: the painted 3 is no class of a 3-class model
    assert main([*ev, "--no-painted"]) == DataError.exit_code
    assert "holds class values [3] outside 0..2" in capsys.readouterr().err
