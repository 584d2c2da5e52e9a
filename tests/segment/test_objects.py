"""The table of objects of predict's cells: on the input's own pixels, in its unit, a volume slice by slice."""

import csv

import numpy as np
import pytest
import tifffile
import zarr
from scipy import ndimage
from support import tiny_config

from biounet.io.volumes import open_volume
from biounet.segment.blockwise import VolumeSettings, predict_volume
from biounet.segment.objects import calibration, intensities, objects_path, write_objects

MARGIN = 20  # a valid "network" of depth 2 with 60-pixel tiles: scores from the centre of its input


def _predictor(batch):
    centre = batch[:, :, MARGIN:-MARGIN, MARGIN:-MARGIN]
    return np.concatenate([-8 * centre, 8 * centre], 1)


def _blobs(shape=(3, 64, 80)):
    """Bright smooth blobs on uint8: the fake network's cells."""
    smooth = ndimage.gaussian_filter(np.random.default_rng(1).standard_normal(shape), (0, 4, 4))
    return np.round(255 * (smooth - smooth.min()) / np.ptp(smooth)).astype(np.uint8)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_intensities_are_the_raw_pixels_or_the_mean_of_the_channels():
    grey = np.arange(12, dtype=np.uint16).reshape(3, 4)
    assert intensities(grey) is grey
    rgba = np.stack([grey, 2 * grey, 3 * grey, np.full_like(grey, 255)], -1)
    np.testing.assert_array_equal(intensities(rgba, alpha=True), 2 * grey)  # the opaque alpha left out
    np.testing.assert_array_equal(intensities(rgba), (6 * grey + 255) / 4)  # four channels of a volume


def test_the_calibration_is_the_inputs_when_it_has_one_else_pixels():
    said = []
    assert calibration((0.004, 0.004), "µm", "x", said.append) == ((0.004, 0.004), "micron")
    assert calibration((5.0, 5.0), "nanometer", "x", said.append) == ((5.0, 5.0), "nm")
    assert calibration(None, None, "x", said.append) == (None, "pixel")
    assert calibration((2.0, 2.0), None, "x", said.append) == (None, "pixel")  # a scale without a unit
    assert calibration((2.0, 2.0), "pixel", "x", said.append) == (None, "pixel")
    assert not said
    assert calibration((1.0, 2.0), "micron", "x.tif", said.append) == (None, "pixel")
    assert said == ["x.tif: pixels of 1 x 2 micron (y x) are not square; its objects are measured in pixels"]


def test_each_slice_is_measured_as_it_comes_with_its_index(tmp_path):
    cells = np.zeros((2, 8, 8), np.uint32)
    cells[0, 1:3, 1:4], cells[1, 4:8, 4:8] = 3, 9
    pixels = np.full((2, 8, 8), 7, np.uint8)
    tally = write_objects(tmp_path / "t.csv", ((z + 5, cells[z], pixels[z]) for z in range(2)), origin=(10, 0))
    rows = _rows(tmp_path / "t.csv")
    assert [(r["slice"], r["label"], r["area"], r["mean_intensity"]) for r in rows] == [
        ("5", "3", "6", "7"),
        ("6", "9", "16", "7"),
    ]
    assert float(rows[0]["centroid_y"]) == 11.5 and tally.summary() == "2 objects, mean area 11 pixels"


def test_a_volume_gets_its_table_beside_the_store_slice_by_slice(tmp_path):
    data = _blobs()
    path = tmp_path / "vol.zarr"
    zarr.create_array(path, shape=data.shape, chunks=(1, 32, 32), dtype="uint8")[:] = data
    settings = VolumeSettings(tile=60, chunks=(32, 32), labels="watershed", measure=True, roi="1:3,4:60,:")
    said, volume = [], open_volume(str(path))
    out = predict_volume(volume, _predictor, tiny_config(), tmp_path / "out", settings, "d", said.append)
    table = objects_path(tmp_path / "out", "vol")
    assert table.is_file() and said[-1].startswith(f"{path}: ") and said[-1].endswith(f" -> {table}")
    cells = zarr.open_group(out, mode="r")["labels/cells/0"][:]
    rows = _rows(table)
    for z in range(2):  # the volume's own slice numbers, one row per cell, its area its pixels
        mine = [r for r in rows if r["slice"] == str(z + 1)]
        ids, counts = np.unique(cells[z][cells[z] > 0], return_counts=True)
        assert [int(r["label"]) for r in mine] == ids.tolist() and len(ids) > 1
        assert [int(r["area"]) for r in mine] == counts.tolist()
        first = mine[0]
        inside = cells[z] == int(first["label"])
        assert float(first["mean_intensity"]) == pytest.approx(data[z + 1, 4:60][inside].mean(), rel=1e-5)
        ys, _ = np.nonzero(inside)
        assert float(first["centroid_y"]) == pytest.approx(4 + ys.mean(), rel=1e-5)  # in the volume's rows
    assert {r["unit"] for r in rows} == {"pixel"}
    assert not [p for p in table.parent.iterdir() if "tmp" in p.name]


def test_a_calibrated_volume_is_measured_in_its_unit_and_a_finished_table_is_kept(tmp_path):
    data = _blobs((2, 48, 48))
    tifffile.imwrite(
        tmp_path / "cal.tif", data, imagej=True, resolution=(4.0, 4.0), metadata={"axes": "ZYX", "unit": "micron"}
    )
    volume = open_volume(str(tmp_path / "cal.tif"))
    settings = VolumeSettings(tile=60, chunks=(32, 32), labels="watershed", measure=True)
    run = (_predictor, tiny_config(), tmp_path / "out", settings, "d")
    predict_volume(volume, *run, log=lambda s: None)
    table = objects_path(tmp_path / "out", "cal")
    rows = _rows(table)
    assert rows and {r["unit"] for r in rows} == {"micron"}
    assert all(float(r["area"]) * 16 == pytest.approx(round(float(r["area"]) * 16)) for r in rows)  # 0.25 um pixels
    table.write_text("kept\n")  # a complete store's table is not measured again
    predict_volume(volume, *run, log=lambda s: None)
    assert table.read_text() == "kept\n"
    table.unlink()  # ... unless it is missing
    predict_volume(volume, *run, log=lambda s: None)
    assert _rows(table) == rows
