"""The napari reader of biounet's outputs: the TIFF files `predict` writes, and an OME-Zarr store
written through biounet's own store API, opened lazily in a real viewer."""

import dask.array as da
import numpy as np
import pytest
import tifffile

from biounet.core.config import TrainConfig
from biounet.core.errors import DataError
from biounet.integrations.napari.reader import get_reader, read_outputs
from biounet.io.omezarr import OutputSpec, OutputStore, pyramid_shapes
from biounet.segment.predict import predict_files

CFG = TrainConfig(depth=2, padding="same", in_channels=1, classes=2)


def predictor(batch: np.ndarray) -> np.ndarray:
    return np.concatenate([4 * batch[:, :1], -4 * batch[:, :1]], axis=1)


@pytest.fixture
def predicted(tmp_path):
    """`biounet predict`'s TIFF outputs of a 2-slice stack, with cell labels."""
    stack = np.random.default_rng(0).integers(0, 256, (2, 40, 48), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "em.tif", stack)
    predict_files([tmp_path / "em.tif"], predictor, CFG, tmp_path / "out", labels="watershed", log=lambda _: None)
    return tmp_path / "out"


def test_predict_outputs_open_as_image_and_labels_layers(predicted):
    paths = [predicted / f"em_{kind}.tif" for kind in ("membrane", "mask", "labels")]
    for path in paths:
        assert get_reader(str(path)) is read_outputs
    (membrane, mask, labels) = [read_outputs(str(p))[0] for p in paths]
    assert membrane[2] == "image" and membrane[0].dtype == np.float32 and membrane[0].shape == (2, 40, 48)
    assert membrane[1]["name"] == "em_membrane" and membrane[1]["contrast_limits"] == (0.0, 1.0)
    assert mask[2] == "labels" and mask[0].shape == (2, 40, 48) and set(np.unique(mask[0])) <= {0, 255}
    assert labels[2] == "labels" and labels[0].dtype == np.uint32 and labels[0].max() > 0


def test_per_class_probabilities_open_as_one_image_layer_per_class(tmp_path):
    path = tmp_path / "em_probs.tif"
    tifffile.imwrite(path, np.full((2, 3, 8, 8), 1 / 3, np.float32), imagej=True, metadata={"axes": "ZCYX"})
    ((data, kwargs, kind),) = read_outputs(str(path))
    assert kind == "image" and data.shape == (2, 3, 8, 8) and kwargs["channel_axis"] == 1


def test_the_pixel_size_a_tiff_declares_places_the_layer(tmp_path):
    imagej = tmp_path / "a_membrane.tif"
    tifffile.imwrite(
        imagej,
        np.zeros((3, 8, 8), np.float32),
        imagej=True,
        resolution=(1 / 4.0, 1 / 5.0),
        metadata={"axes": "ZYX", "unit": "nm", "spacing": 30.0},
    )
    ome = tmp_path / "a_labels.tif"
    meta = {"axes": "YX", "PhysicalSizeX": 4.0, "PhysicalSizeY": 4.0, "PhysicalSizeXUnit": "nm"}
    tifffile.imwrite(ome, np.zeros((8, 8), np.uint32), ome=True, metadata=meta)
    plain = tmp_path / "b_mask.tif"
    tifffile.imwrite(plain, np.zeros((8, 8), np.uint8))
    kwargs = {path.name: read_outputs(path)[0][1] for path in (imagej, ome, plain)}
    assert kwargs["a_membrane.tif"]["scale"] == (30.0, 5.0, 4.0)
    assert kwargs["a_membrane.tif"]["units"] == ("nanometer",) * 3
    assert kwargs["a_labels.tif"]["scale"] == (4.0, 4.0) and kwargs["a_labels.tif"]["units"] == ("nanometer",) * 2
    assert "scale" not in kwargs["b_mask.tif"]


@pytest.mark.parametrize(
    ("declared", "scale"),
    [
        ({"PhysicalSizeX": 4.0}, (1.0, 1.0, 4.0)),
        ({"PhysicalSizeY": 5.0}, (1.0, 5.0, 1.0)),
        ({"PhysicalSizeZ": 30.0}, (30.0, 1.0, 1.0)),
    ],
)
def test_an_ome_tiff_declaring_some_axes_only_opens_with_1_for_the_others(tmp_path, declared, scale):
    path = tmp_path / "a_labels.tif"
    meta = {"axes": "ZYX", **declared, "PhysicalSizeXUnit": "nm"}
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint32), ome=True, metadata=meta)
    ((data, kwargs, kind),) = read_outputs(str(path))  # was a KeyError
    assert kind == "labels" and data.shape == (2, 8, 8) and kwargs["scale"] == scale


def test_other_files_are_left_to_other_readers_and_a_broken_output_says_so(tmp_path):
    other = tmp_path / "image.tif"
    tifffile.imwrite(other, np.zeros((8, 8), np.uint8))
    plain_dir = tmp_path / "plain.ome.zarr"
    plain_dir.mkdir()
    assert get_reader(str(other)) is None and get_reader(str(plain_dir)) is None
    assert get_reader(str(tmp_path / "missing_membrane.tif")) is None
    broken = tmp_path / "x_membrane.tif"
    broken.write_bytes(b"II*\x00" + b"\x00" * 20)
    with pytest.raises(DataError, match="x_membrane.tif"):
        read_outputs(str(broken))


def write_store(path, complete=True, ngff="0.5"):
    spec = OutputSpec(
        shape=(2, 80, 96),
        chunks=(1, 32, 32),
        dtype="uint8",
        labels=("mask", "cells"),
        voxel_size=(30.0, 4.0, 4.0),
        unit="nm",
        origin=(1, 0, 0),
        ngff=ngff,
    )
    store = OutputStore.open(path, spec)
    prob = np.linspace(0.0, 1.0, 2 * 80 * 96, dtype=np.float32).reshape(spec.shape)
    region = (slice(0, 2), slice(0, 80), slice(0, 96))
    store.write("image", region, prob)
    store.write("mask", region, (prob < 0.5).astype(np.uint8))
    store.write("cells", region, np.arange(prob.size, dtype=np.uint32).reshape(spec.shape))
    if complete:
        store.finish()
    return spec, prob


@pytest.mark.timeout(60)
def test_an_ome_zarr_store_opens_lazily_as_multiscale_layers(tmp_path, make_napari_viewer):
    path = tmp_path / "vol.ome.zarr"
    spec, prob = write_store(path)
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="biounet")
    assert [layer.name for layer in layers] == ["vol membrane", "vol mask", "vol cells"]
    assert [type(layer).__name__ for layer in layers] == ["Image", "Labels", "Labels"]
    levels = len(pyramid_shapes(spec))
    assert levels > 1
    for layer in layers:
        assert layer.multiscale and len(layer.data) == levels
        assert all(isinstance(level, da.Array) for level in layer.data)
        assert tuple(layer.data[0].shape) == spec.shape
        assert tuple(layer.scale) == (30.0, 4.0, 4.0) and tuple(layer.translate) == (30.0, 0.0, 0.0)
    membrane = layers[0].data[0]
    assert membrane.dtype == np.float32
    np.testing.assert_allclose(np.asarray(membrane[1]), prob[1], atol=0.5 / 255 + 1e-6)
    assert np.asarray(layers[2].data[0][0, 0, :3]).tolist() == [0, 1, 2]


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_an_unfinished_store_opens_with_a_warning(tmp_path, ngff):
    path = tmp_path / "run.ome.zarr"
    write_store(path, complete=False, ngff=ngff)
    assert get_reader(str(path)) is read_outputs
    with pytest.warns(UserWarning, match="incomplete"):
        layers = read_outputs(str(path))
    assert [kwargs["multiscale"] for _, kwargs, _ in layers] == [False, False, False]
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["run membrane", "run mask", "run cells"]
    assert layers[0][1]["scale"] == (30.0, 4.0, 4.0) and layers[0][0].shape == (2, 80, 96)
