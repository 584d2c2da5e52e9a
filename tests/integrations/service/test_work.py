"""One job's work with biounet's own functions: the upload read as predict reads a file, predict's TIFFs
written, and one membrane picture and one overlay per slice. A tiny untrained U-Net keeps it fast; what
the files hold is checked against the library's segment() of the same pixels."""

import numpy as np
import pytest
import tifffile
from PIL import Image
from support import tiny_config
from support.service import em_like, png_bytes, tiff_bytes, tiny_model

from biounet.core.errors import ConfigError, DataError
from biounet.data.readers import scale_image
from biounet.instances.methods import instance_labels
from biounet.integrations.service.work import check_served, run_job
from biounet.segment.inference import segment


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model"))


def expected_membrane(model, pixels):
    image = scale_image(pixels, 1)
    return segment(image, model.predictor, model.cfg.depth, model.cfg.padding)[0]


def test_a_png_gives_predicts_files_and_pictures(model, tmp_path):
    pixels = em_like(1, 64)
    source = tmp_path / "input.png"
    source.write_bytes(png_bytes(pixels))
    seen = []
    results = run_job(model, tmp_path, source, "watershed", False, lambda done, total: seen.append((done, total)))
    assert seen == [(0, 1), (1, 1)]
    assert results["slices"] == 1 and results["shape"] == [64, 64]
    membrane = tifffile.imread(results["membrane.tif"])
    np.testing.assert_allclose(membrane, expected_membrane(model, pixels), atol=1e-6)
    labels = tifffile.imread(results["labels.tif"])
    assert labels.dtype == np.uint32
    np.testing.assert_array_equal(labels, instance_labels(1 - membrane, "watershed"))
    mask = tifffile.imread(results["mask.tif"])
    np.testing.assert_array_equal(mask, np.where(membrane > 0.5, 0, 255))
    picture = np.asarray(Image.open(results["membrane.png"][0]))
    np.testing.assert_array_equal(picture, np.round(255 * membrane).astype(np.uint8))
    overlay = np.asarray(Image.open(results["overlay.png"][0]))
    assert overlay.shape == (64, 64, 3)
    assert all(path.parent == tmp_path for path in results["membrane.png"] + results["overlay.png"])


def test_a_tiff_stack_gives_one_picture_per_slice_and_no_labels_unless_asked(model, tmp_path):
    stack = np.stack([em_like(s, 40) for s in range(3)])
    source = tmp_path / "input.tif"
    source.write_bytes(tiff_bytes(stack))
    seen = []
    results = run_job(model, tmp_path, source, None, False, lambda done, total: seen.append(done))
    assert seen == [0, 1, 2, 3]
    assert "labels.tif" not in results and results["slices"] == 3
    membrane = tifffile.imread(results["membrane.tif"])
    assert membrane.shape == (3, 40, 40)
    np.testing.assert_allclose(membrane[2], expected_membrane(model, stack[2]), atol=1e-6)
    assert len(results["membrane.png"]) == len(results["overlay.png"]) == 3
    # without cells the overlay shows the membranes in colour where the probability is over 0.5
    overlay = np.asarray(Image.open(results["overlay.png"][1])).astype(int)
    coloured = overlay[..., 0] != overlay[..., 1]
    np.testing.assert_array_equal(coloured, membrane[1] > 0.5)


def test_an_image_the_model_cannot_take_fails_before_any_slice(model, tmp_path):
    source = tmp_path / "input.png"
    source.write_bytes(png_bytes(np.zeros((32, 32, 3), np.uint8)))
    seen = []
    with pytest.raises(DataError, match="3 channel"):
        run_job(model, tmp_path, source, None, False, lambda done, total: seen.append(done))
    assert seen == []


def test_only_two_class_models_are_served():
    check_served(tiny_config(), "tiny")
    with pytest.raises(ConfigError, match="3 classes; `biounet serve` serves 2-class"):
        check_served(tiny_config(classes=3), "tiny")
