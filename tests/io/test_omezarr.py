"""The OME-Zarr output store: read back by ome-zarr's own reader, resumed, refused, killed and resumed."""

import multiprocessing
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Reader

from biounet.core.errors import ConfigError
from biounet.io import omezarr
from biounet.io.omezarr import OutputSpec, OutputStore, output_path, pyramid_shapes

SHAPE = (3, 70, 90)
HAND = np.array([0.0, 1.0, 0.5, 0.2, 0.998, 0.0019], dtype=np.float32)  # uint8: 0, 255, 128, 51, 254, 0


def make_spec(**changes) -> OutputSpec:
    base = dict(shape=SHAPE, chunks=(1, 32, 32), dtype="uint8", labels=("mask", "cells"), fingerprint={"tile": 700})
    return OutputSpec(**{**base, **changes})


def volumes(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    prob = rng.random(SHAPE, dtype=np.float32)
    prob[0, 0, : HAND.size] = HAND
    cells = rng.integers(0, 2**40, SHAPE, dtype=np.uint64)
    return {"image": prob, "mask": (prob > 0.5).astype(np.uint8), "cells": cells}


def blocks(spec: OutputSpec):
    cz, cy, cx = spec.chunks
    for z in range(0, spec.shape[0], cz):
        for y in range(0, spec.shape[1], cy):
            for x in range(0, spec.shape[2], cx):
                yield f"b_{z}_{y}_{x}", (slice(z, z + cz), slice(y, y + cy), slice(x, x + cx))


def fill(store: OutputStore, data: dict[str, np.ndarray], limit: int | None = None) -> list[str]:
    """Write the volumes block by block as the prediction driver does; return the finished keys."""
    keys = []
    for key, region in list(blocks(store.spec))[:limit]:
        for name in ("image", *store.spec.labels):
            values = data[name][region]
            store.write(name, region, values.astype(store.spec.cells_dtype) if name == "cells" else values)
        store.mark_done(key)
        keys.append(key)
    return keys


def mean_2x2_reference(a: np.ndarray) -> np.ndarray:
    """The 2x2 mean over y and x, pixel by pixel, of the pixels present (odd edges)."""
    out = np.empty((a.shape[0], (a.shape[1] + 1) // 2, (a.shape[2] + 1) // 2))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = a[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].astype(np.float64).mean(axis=(1, 2))
    return out


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and folder under ``root`` (or ``root`` itself) with its mtime and contents."""
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b"") for p in paths}


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"" for p in sorted(root.rglob("*"))}


ROUND_TRIPS = [
    dict(ngff="0.5", dtype="uint8", cells_dtype="uint64", voxel_size=(40.0, 4.0, 4.0), unit="nm", origin=(1, 10, 20)),
    dict(ngff="0.4", dtype="uint8", compression="lz4"),
    dict(ngff="0.4", dtype="float16", cells_dtype="uint32", voxel_size=(30.0, 5.0, 5.0), unit="micrometer"),
    dict(ngff="0.5", dtype="float32", compression="lz4", labels=("mask",)),
    dict(ngff="0.4", dtype="float32", compression="none"),
]


@pytest.mark.parametrize("changes", ROUND_TRIPS, ids=lambda c: f"{c['ngff']}-{c['dtype']}")
def test_finished_store_reads_back_through_ome_zarr_reader(tmp_path, changes):
    spec, data = make_spec(**changes), volumes()
    store = OutputStore.open(output_path(tmp_path / "out", "vol"), spec)
    assert store.path == tmp_path / "out" / "vol.ome.zarr"
    fill(store, data)
    assert not store.complete
    store.finish()
    assert store.complete

    nodes = list(Reader(parse_url(str(store.path)))())
    image = nodes[0]
    levels = [np.asarray(d) for d in image.data]
    assert [lv.shape for lv in levels] == [(3, 70, 90), (3, 35, 45)] == pyramid_shapes(spec)
    unit = {"nm": "nanometer"}.get(changes.get("unit", ""), changes.get("unit"))  # stored by its NGFF name
    assert image.metadata["axes"] == [{"name": a, "type": "space", **({"unit": unit} if unit else {})} for a in "zyx"]
    vz, vy, vx = changes.get("voxel_size", (1.0, 1.0, 1.0))
    for level, transforms in enumerate(image.metadata["coordinateTransformations"]):
        assert transforms[0] == {"type": "scale", "scale": [vz, vy * 2**level, vx * 2**level]}
        if any(spec.origin):
            assert transforms[1] == {"type": "translation", "translation": [vz, 10 * vy, 20 * vx]}
        else:
            assert len(transforms) == 1

    prob = data["image"]
    if spec.dtype == "uint8":
        assert levels[0].dtype == np.uint8
        assert levels[0][0, 0, : HAND.size].tolist() == [0, 255, 128, 51, 254, 0]  # x 255, rounded
        np.testing.assert_array_equal(levels[0], np.rint(prob * 255))
        np.testing.assert_array_equal(levels[1], np.rint(mean_2x2_reference(levels[0])))
        np.testing.assert_allclose(store.read("image", np.s_[:, :, :]), prob, atol=0.5 / 255 + 1e-7)
    else:
        assert levels[0].dtype == np.dtype(spec.dtype)
        np.testing.assert_array_equal(levels[0], prob.astype(spec.dtype))
        np.testing.assert_allclose(levels[1], mean_2x2_reference(levels[0]), rtol=1e-3, atol=1e-6)
        assert store.read("image", np.s_[:, :, :]).dtype == np.float32
    np.testing.assert_array_equal(
        store.read("image", np.s_[:, 5:9, 1:7], level=1), store.read("image", np.s_[:, :, :], 1)[:, 5:9, 1:7]
    )

    names = parse_url(str(store.path / "labels")).root_attrs["labels"]
    assert names == list(spec.labels)
    labels = {n.zarr.basename(): n for n in nodes if any(isinstance(s, Label) for s in n.specs)}
    assert sorted(labels) == sorted(spec.labels)
    expected = {"mask": data["mask"], "cells": data["cells"].astype(spec.cells_dtype)}
    for name, node in labels.items():
        label_levels = [np.asarray(d) for d in node.data]
        assert label_levels[0].dtype == expected[name].dtype
        np.testing.assert_array_equal(label_levels[0], expected[name])
        np.testing.assert_array_equal(label_levels[1], expected[name][:, ::2, ::2])  # every second pixel
        assert node.metadata["coordinateTransformations"] == image.metadata["coordinateTransformations"]

    group = zarr.open_group(store.path, mode="r")
    assert group.metadata.zarr_format == (3 if spec.ngff == "0.5" else 2)
    ome = group.attrs["ome"] if spec.ngff == "0.5" else group.attrs
    assert ome["multiscales"][0]["name"] == "vol"
    assert group["0"].chunks == spec.chunks and group["1"].shape == (3, 35, 45)
    np.testing.assert_array_equal(group["labels/mask/0"][:], data["mask"])
    mask_attrs = group["labels/mask"].attrs["ome"] if spec.ngff == "0.5" else group["labels/mask"].attrs
    assert mask_attrs["image-label"] == {"source": {"image": "../../"}, "version": spec.ngff}
    codecs = [(type(c).__name__, str(getattr(c, "cname", "")).split(".")[-1]) for c in group["0"].compressors]
    if spec.ngff == "0.5":
        assert codecs == {"zstd": [("ZstdCodec", "")], "lz4": [("BloscCodec", "lz4")], "none": []}[spec.compression]
    else:  # Zarr v2: numcodecs Blosc with zstd or lz4 inside
        assert codecs == {"zstd": [("Blosc", "zstd")], "lz4": [("Blosc", "lz4")], "none": []}[spec.compression]


def test_pyramid_halves_y_and_x_until_both_fit_two_chunks_or_256_pixels():
    assert pyramid_shapes(make_spec()) == [(3, 70, 90), (3, 35, 45)]  # limit 64
    big = dict(shape=(2, 1000, 600))
    assert pyramid_shapes(make_spec(**big, chunks=(1, 512, 512))) == [(2, 1000, 600), (2, 500, 300), (2, 250, 150)]
    assert pyramid_shapes(make_spec(**big, chunks=(4, 64, 64)))[-1] == (2, 125, 75)  # limit 128
    assert pyramid_shapes(make_spec(shape=(5, 200, 30))) == [(5, 200, 30), (5, 100, 15), (5, 50, 8)]


def test_reopen_resumes_with_the_finished_blocks(tmp_path):
    spec, data = make_spec(ngff="0.4"), volumes()
    store = OutputStore.open(tmp_path / "v.ome.zarr", spec)
    half_written = list(Reader(parse_url(str(store.path)))())  # already opens in a viewer
    assert [np.asarray(d).shape for d in half_written[0].data] == [SHAPE]
    assert half_written[0].metadata["name"] == "v"
    assert store.done() == set()
    keys = fill(store, data, limit=4)

    again = OutputStore.open(tmp_path / "v.ome.zarr", spec)
    assert again.done() == set(keys) and len(keys) == 4
    assert again.is_done(keys[0]) and not again.is_done("b_2_64_64")
    np.testing.assert_array_equal(
        again.read("mask", (slice(0, 1), slice(0, 32), slice(0, 32))), data["mask"][:1, :32, :32]
    )
    assert not again.complete


@pytest.mark.parametrize(
    "changes, setting",
    [
        (dict(fingerprint={"tile": 508}), "with tile 700, not 508"),
        (dict(fingerprint={"tile": 700, "tta": True}), "without tta, not with tta true"),
        (dict(dtype="float16"), "with dtype uint8, not float16"),
        (dict(chunks=(1, 64, 64)), "with chunks [1, 32, 32], not [1, 64, 64]"),
        (dict(ngff="0.4"), "with ngff 0.5, not 0.4"),  # a Zarr v3 store asked for as v2
    ],
)
def test_other_settings_are_refused_and_the_store_left_alone(tmp_path, changes, setting):
    path = tmp_path / "v.ome.zarr"
    store = OutputStore.open(path, make_spec())
    fill(store, volumes(), limit=2)
    before = snapshot(path)
    with pytest.raises(ConfigError) as err:
        OutputStore.open(path, make_spec(**changes))
    message = str(err.value)
    assert setting in message and str(path) in message and "choose another --out or delete it" in message
    assert "\n" not in message
    assert snapshot(path) == before


def test_a_folder_or_file_that_is_not_a_biounet_store_is_refused_untouched(tmp_path):
    other = tmp_path / "photos.ome.zarr"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    plain_file = tmp_path / "file.ome.zarr"
    plain_file.write_text("x")
    foreign = tmp_path / "foreign.ome.zarr"
    zarr.open_group(foreign, mode="w").create_array("0", shape=(2, 2), dtype="uint8")
    empty = tmp_path / "empty.ome.zarr"
    empty.mkdir()
    for path in (other, plain_file, foreign, empty):
        before = snapshot(path)
        with pytest.raises(ConfigError, match="is not a biounet output: choose another --out or remove it"):
            OutputStore.open(path, make_spec())
        assert snapshot(path) == before


def mark_keys(store: OutputStore, keys: list[str]) -> None:
    for key in keys:
        store.mark_done(key)


def test_mark_done_from_two_processes_keeps_every_key(tmp_path):
    store = OutputStore.open(tmp_path / "v.ome.zarr", make_spec())
    keys = [
        [f"b_{z}_{i}_0" for i in range(40) for z in range(3)],
        [f"b_{z}_{i}_1" for i in range(40) for z in range(3)],
    ]
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=mark_keys, args=(store, part)) for part in keys]  # the store pickles
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert store.done() == set(keys[0]) | set(keys[1])
    with pytest.raises(ValueError, match="done key"):
        store.mark_done("../escape")


KILL_DURING_CREATION = """
import os, signal, sys
from pathlib import Path
from biounet.io.omezarr import OutputSpec, OutputStore
os.rename = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # killed after building, before the rename
OutputStore.open(Path(sys.argv[1]), OutputSpec((3, 70, 90), (1, 32, 32), "uint8"))
"""


def test_a_creation_killed_midway_leaves_a_temporary_that_the_next_open_removes(tmp_path):
    path = tmp_path / "v.ome.zarr"
    killed = subprocess.run([sys.executable, "-c", KILL_DURING_CREATION, str(path)], capture_output=True)
    assert killed.returncode == -9, killed.stderr
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".v.ome.zarr.tmp-") and not path.exists()

    store = OutputStore.open(path, make_spec())
    assert [p.name for p in tmp_path.iterdir()] == ["v.ome.zarr"]
    assert store.done() == set() and not store.complete


def test_finish_killed_after_the_first_level_resumes_to_the_same_store(tmp_path, monkeypatch):
    spec, data = make_spec(chunks=(1, 16, 16)), volumes(1)  # limit 32: levels 70x90, 35x45, 18x23
    assert len(pyramid_shapes(spec)) == 3
    reference = OutputStore.open(tmp_path / "a" / "v.ome.zarr", spec)
    fill(reference, data)
    reference.finish()

    store = OutputStore.open(tmp_path / "b" / "v.ome.zarr", spec)
    fill(store, data)
    real, calls = omezarr._downsample_level, []

    def killed_on_second_level(src, dst, mean):
        calls.append(dst.shape)
        if len(calls) == 2:
            dst[0:1, 0:16, 0:16] = 7  # a part of the level is on disk when the process dies
            raise KeyboardInterrupt
        real(src, dst, mean)

    monkeypatch.setattr(omezarr, "_downsample_level", killed_on_second_level)
    with pytest.raises(KeyboardInterrupt):
        store.finish()
    monkeypatch.setattr(omezarr, "_downsample_level", real)
    assert not store.complete

    resumed = OutputStore.open(tmp_path / "b" / "v.ome.zarr", spec)
    resumed.finish()
    assert resumed.complete
    assert tree_bytes(resumed.path) == tree_bytes(reference.path)
    level2 = zarr.open_array(resumed.path / "2", mode="r")[:]
    np.testing.assert_array_equal(level2, np.rint(mean_2x2_reference(zarr.open_array(resumed.path / "1")[:])))
    resumed.finish()  # a complete store: nothing to do
    assert tree_bytes(resumed.path) == tree_bytes(reference.path)


@pytest.mark.parametrize(
    "changes, option",
    [
        (dict(chunks=(1, 30, 32)), "chunks"),
        (dict(chunks=(1, 32, 40)), "chunks"),
        (dict(chunks=(1, 32)), "chunks"),
        (dict(shape=(0, 70, 90)), "shape"),
        (dict(dtype="int8"), "dtype"),
        (dict(cells_dtype="int32"), "cells_dtype"),
        (dict(compression="gzip"), "compression"),
        (dict(ngff="0.3"), "ngff"),
        (dict(labels=("mask", "nuclei")), "labels"),
        (dict(unit="furlong"), "unit"),
        (dict(fingerprint={"model": object()}), "fingerprint"),
    ],
)
def test_bad_specs_name_the_option(changes, option):
    with pytest.raises(ConfigError) as err:
        make_spec(**changes)
    message = str(err.value)
    assert message.startswith(f"{option} ") and "\n" not in message and ";" in message


def test_writes_of_the_wrong_shape_or_name_are_refused(tmp_path):
    store = OutputStore.open(tmp_path / "v.ome.zarr", make_spec(labels=("mask",)))
    with pytest.raises(ValueError, match="shape"):
        store.write("image", (slice(0, 1), slice(0, 32), slice(0, 32)), np.zeros((1, 32, 31), np.float32))
    with pytest.raises(ValueError, match="holds image, mask"):
        store.write("cells", (slice(0, 1), slice(0, 32), slice(0, 32)), np.zeros((1, 32, 32), np.uint32))
    edge = (slice(2, 3), slice(64, 96), slice(64, 96))  # the volume's end: 6 x 26 of the chunk lie inside
    store.write("image", edge, np.full((1, 6, 26), 0.25, np.float32))
    assert store.read("image", edge).tolist() == np.full((1, 6, 26), 64 / 255, np.float32).tolist()
