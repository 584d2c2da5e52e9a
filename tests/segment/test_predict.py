"""predict: segmenting files and writing the outputs."""

import numpy as np
import pytest
import tifffile
from PIL import Image
from support import tiny_config

from biounet.cli import main
from biounet.io.metadata import PixelSize, read_pixel_size
from biounet.segment.predict import _write_tiff
from biounet.train.engine import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, isbi_dir):
    """A tiny model trained briefly on ISBI fold 1."""
    run = tmp_path_factory.mktemp("predict") / "run"
    train(tiny_config(data=str(isbi_dir), out=str(run), steps=3), quiet=True)
    return run


def _axes(path):
    """What Fiji and napari see in an output: its axes, and whether it is an ImageJ or an OME-TIFF."""
    with tifffile.TiffFile(path) as tif:
        return tif.series[0].axes, tif.is_imagej, tif.is_ome


def test_predict_a_tiff_stack(run_dir, isbi_dir, tmp_path):
    stack = tifffile.imread(isbi_dir / "test-volume.tif")[:2]
    # calibrated as Fiji writes it: 4 nm pixels, 50 nm sections
    calibration = {"resolution": (250, 250), "metadata": {"axes": "ZYX", "unit": "micron", "spacing": 0.05}}
    tifffile.imwrite(tmp_path / "two.tif", stack, imagej=True, **calibration)
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(tmp_path / "two.tif"),
                "--model",
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
    # ImageJ hyperstacks for float32 and uint8, an OME-TIFF for the uint32 labels; the calibration carried over
    assert _axes(out / "two_membrane.tif") == _axes(out / "two_mask.tif") == ("ZYX", True, False)
    assert _axes(out / "two_labels.tif") == ("ZYX", False, True)
    assert (
        read_pixel_size(out / "two_membrane.tif")
        == read_pixel_size(out / "two_mask.tif")
        == (0.004, 0.004, 0.05, "micron")
    )
    with tifffile.TiffFile(out / "two_labels.tif") as tif:
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
    assert (pixels["PhysicalSizeX"], pixels["PhysicalSizeZ"], pixels["PhysicalSizeXUnit"]) == (0.004, 0.05, "µm")


def test_output_tiffs_name_their_axes_and_keep_large_label_ids(tmp_path):
    probs = np.random.default_rng(0).random((3, 4, 6, 7), dtype=np.float32)
    _write_tiff(tmp_path / "probs.tif", probs, "ZCYX")
    assert _axes(tmp_path / "probs.tif") == ("ZCYX", True, False)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "probs.tif"), probs)
    labels = np.arange(2 * 6 * 7, dtype=np.uint32).reshape(2, 6, 7) + 70_000  # beyond uint16 (ImageJ's limit)
    labels[0, 0, 0] = 2**32 - 1
    _write_tiff(tmp_path / "labels.tif", labels, "ZYX")
    assert _axes(tmp_path / "labels.tif") == ("ZYX", False, True)
    back = tifffile.imread(tmp_path / "labels.tif")
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, labels)
    assert read_pixel_size(tmp_path / "labels.tif") is None  # nothing to carry: no calibration invented


def test_predict_bad_inputs(run_dir, tmp_path, capsys):
    # files that fail while running: exit status 1, one line
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty"), "--model", str(run_dir), "--out", str(tmp_path)]) == 1
    assert "holds no PNG or TIFF" in capsys.readouterr().err
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "rgb.png")
    assert main(["predict", str(tmp_path / "rgb.png"), "--model", str(run_dir), "--out", str(tmp_path)]) == 1
    assert "3 channel(s) but the model takes 1" in capsys.readouterr().err
    (tmp_path / "fake.pt").write_bytes(b"junk")
    assert (
        main(["predict", str(tmp_path / "rgb.png"), "--model", str(tmp_path / "fake.pt"), "--out", str(tmp_path)]) == 1
    )
    assert "not a readable checkpoint" in capsys.readouterr().err


def test_predict_labels_by_a_named_method_with_its_parameters(run_dir, isbi_dir, tmp_path, capsys):
    stack = tifffile.imread(isbi_dir / "test-volume.tif")[:1, :128, :128]
    tifffile.imwrite(tmp_path / "one.tif", stack, photometric="minisblack")
    args = ["predict", str(tmp_path / "one.tif"), "--model", str(run_dir), "--precision", "fp32"]
    assert main([*args, "--out", str(tmp_path / "mc"), "--labels", "multicut", "--label-param", "beta=0.4"]) == 0
    labels = tifffile.imread(tmp_path / "mc" / "one_labels.tif")
    # one slice: the stack's Z of length 1 is not kept by ImageJ or OME readers (the methods: test_instances.py)
    assert labels.shape == (128, 128) and labels.dtype == np.uint32
    assert _axes(tmp_path / "mc" / "one_labels.tif") == ("YX", False, True)
    assert _axes(tmp_path / "mc" / "one_membrane.tif") == ("YX", True, False)
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "bad"), "--label-param", "beta=0.4"]) == 2
    assert "add --labels METHOD" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "bad"), "--labels", "multicut", "--label-param", "bta=1"]) == 2


@pytest.mark.parametrize("unit", ["µm", "um", "\\u00B5m", "μm", "micron"])
@pytest.mark.parametrize("dtype", [np.float32, np.uint32])  # an ImageJ hyperstack; an OME-TIFF
def test_a_calibration_in_micrometres_is_carried_over_however_spelled(tmp_path, unit, dtype):
    size = PixelSize(0.004, 0.004, 0.05, unit)
    _write_tiff(tmp_path / "out.tif", np.zeros((2, 8, 8), dtype), "ZYX", size)  # raised UnicodeEncodeError
    assert read_pixel_size(tmp_path / "out.tif") == (0.004, 0.004, 0.05, "micron")


def test_a_unit_imagej_cannot_hold_is_dropped_not_a_crash(tmp_path):
    # a calibration with a non-ASCII unit (an OME-TIFF input's): the ImageJ output is written, uncalibrated
    _write_tiff(tmp_path / "out.tif", np.zeros((2, 8, 8), np.uint8), "ZYX", PixelSize(0.1, 0.1, None, "Å"))
    assert read_pixel_size(tmp_path / "out.tif") is None
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), np.zeros((2, 8, 8), np.uint8))
    _write_tiff(tmp_path / "labels.tif", np.zeros((2, 8, 8), np.uint32), "ZYX", PixelSize(0.1, 0.1, None, "Å"))
    assert read_pixel_size(tmp_path / "labels.tif") == pytest.approx((0.1, 0.1, None, "Å"))  # OME holds it


def _affinity_model(folder, **changes):
    """An untrained tiny U-Net with the mws12 affinity channels after its two classes, as a checkpoint."""
    import torch

    from biounet.model import checkpoint as ckpt_io
    from biounet.model.unet import build_model

    cfg = tiny_config(**({"affinities": "mws12"} | changes))
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    ckpt_io.atomic_save(ckpt_io.payload(cfg.to_dict(), 4, build_model(cfg).state_dict()), folder / "last.pt")
    return folder / "last.pt"


def test_predict_labels_by_a_method_that_reads_affinities(run_dir, isbi_dir, tmp_path, capsys):
    stack = tifffile.imread(isbi_dir / "test-volume.tif")[:2, :96, :96]
    tifffile.imwrite(tmp_path / "two.tif", stack, photometric="minisblack")
    model = _affinity_model(tmp_path / "affinities")
    args = ["predict", str(tmp_path / "two.tif"), "--precision", "fp32", "--progress", "off"]
    out = tmp_path / "mws"
    assert main([*args, "--model", str(model), "--out", str(out), "--labels", "mws", "--label-param", "stride=2"]) == 0
    labels = tifffile.imread(out / "two_labels.tif")
    assert labels.shape == (2, 96, 96) and labels.dtype == np.uint32
    for z in range(2):  # every slice a partition into ids 1..n
        assert np.unique(labels[z]).tolist() == list(range(1, labels[z].max() + 1))
    # the membrane is the first of the two class channels, not of the 14 the network returns
    membrane = tifffile.imread(out / "two_membrane.tif")
    assert membrane.shape == (2, 96, 96) and 0 <= membrane.min() and membrane.max() <= 1
    # the same method asked of a model without affinities: one line naming the fix, before any slice is segmented
    capsys.readouterr()
    none = tmp_path / "none"
    assert main([*args, "--model", str(run_dir), "--out", str(none), "--labels", "mws"]) == 2
    err = capsys.readouterr().err
    assert (
        "mws reads predicted affinities" in err and "--affinities mws12" in err and len(err.strip().splitlines()) == 1
    )
    assert not none.exists() or not any(none.iterdir())


def test_a_volume_gets_labels_from_its_affinities_block_by_block(isbi_dir, tmp_path):
    import zarr

    stack = tifffile.imread(isbi_dir / "test-volume.tif")[:2, :80, :80]
    tifffile.imwrite(tmp_path / "vol.tif", stack, photometric="minisblack")
    model = _affinity_model(tmp_path / "affinities")
    args = ["predict", str(tmp_path / "vol.tif"), "--model", str(model), "--format", "ome-zarr", "--labels", "mws"]
    assert main([*args, "--out", str(tmp_path / "out"), "--precision", "fp32", "--progress", "off"]) == 0
    store = zarr.open_group(str(next((tmp_path / "out").glob("*.ome.zarr"))), mode="r")
    cells = np.asarray(store["labels/cells/0"])
    assert cells.shape == (2, 80, 80) and (cells > 0).all()
    assert not set(np.unique(cells[0])) & set(np.unique(cells[1]))  # ids unique across the volume


def test_a_network_with_context_is_given_each_slice_with_its_neighbours(isbi_dir, tmp_path):
    """--context 1: the network takes 3 sections as channels, for a TIFF stack read whole and block-wise."""
    import zarr

    stack = tifffile.imread(isbi_dir / "test-volume.tif")[:3, :64, :64]
    tifffile.imwrite(tmp_path / "three.tif", stack, photometric="minisblack")
    model = _affinity_model(tmp_path / "context", context=1)
    args = ["predict", str(tmp_path / "three.tif"), "--model", str(model), "--labels", "mws", "--precision", "fp32"]
    assert main([*args, "--out", str(tmp_path / "files"), "--progress", "off"]) == 0
    assert tifffile.imread(tmp_path / "files" / "three_labels.tif").shape == (3, 64, 64)
    assert main([*args, "--out", str(tmp_path / "volume"), "--format", "ome-zarr", "--progress", "off"]) == 0
    membrane = tifffile.imread(tmp_path / "files" / "three_membrane.tif")
    store = zarr.open_group(str(next((tmp_path / "volume").glob("*.ome.zarr"))), mode="r")
    # block by block, the same neighbours: the membrane as read whole (stored as uint8)
    np.testing.assert_allclose(np.asarray(store["0"]) / 255, membrane, atol=1 / 255 + 1e-6)


def _blob_predictor(batch):
    """A valid "network" of the tiny config (depth 2, 60-pixel tiles): bright pixels are cells."""
    centre = batch[:, :, 20:-20, 20:-20]
    return np.concatenate([-8 * centre, 8 * centre], 1)


def _blobs(shape):
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(np.random.default_rng(1).standard_normal(shape), (0,) * (len(shape) - 2) + (4, 4))
    return np.round(255 * (smooth - smooth.min()) / np.ptp(smooth)).astype(np.uint8)


def _table(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predict_labels_writes_a_table_of_the_cells_of_every_slice(tmp_path):
    from biounet.segment.predict import predict_files

    stack = _blobs((2, 64, 80))
    calibration = {"resolution": (2.0, 2.0), "metadata": {"axes": "ZYX", "unit": "micron"}}  # 0.5 um pixels
    tifffile.imwrite(tmp_path / "two.tif", stack, imagej=True, **calibration)
    said = []
    cfg, out = tiny_config(), tmp_path / "out"
    run = ([tmp_path / "two.tif"], _blob_predictor, cfg, out)
    written = predict_files(*run, labels="watershed", log=said.append, measure=True)
    assert written[-1] == out / "two_objects.csv"
    listed = f"{tmp_path / 'two.tif'}: 2 slice(s) -> two_membrane.tif, two_mask.tif, two_labels.tif, two_objects.csv"
    assert said[-1].startswith(f"{listed} (") and " objects, mean area " in said[-1] and said[-1].endswith(" micron^2)")
    labels, rows = tifffile.imread(out / "two_labels.tif"), _table(out / "two_objects.csv")
    for z in range(2):
        mine = [r for r in rows if r["slice"] == str(z)]
        ids, counts = np.unique(labels[z][labels[z] > 0], return_counts=True)
        assert [int(r["label"]) for r in mine] == ids.tolist() and len(ids) > 1
        assert [float(r["area"]) for r in mine] == pytest.approx((counts * 0.25).tolist())  # micron^2
        inside = labels[z] == ids[0]
        assert float(mine[0]["mean_intensity"]) == pytest.approx(stack[z][inside].mean(), rel=1e-5)  # raw uint8
    assert {r["unit"] for r in rows} == {"micron"}
    # without a calibration, in pixels; a 2D image is slice 0
    Image.fromarray(stack[0]).save(tmp_path / "one.png")
    predict_files([tmp_path / "one.png"], _blob_predictor, cfg, out, labels="watershed", measure=True)
    rows = _table(out / "one_objects.csv")
    assert {r["slice"] for r in rows} == {"0"} and {r["unit"] for r in rows} == {"pixel"}
    np.testing.assert_array_equal(
        [int(r["area"]) for r in rows], np.unique(tifffile.imread(out / "one_labels.tif"), return_counts=True)[1][1:]
    )


def test_no_table_without_measure_or_labels(tmp_path):
    from biounet.segment.predict import predict_files

    tifffile.imwrite(tmp_path / "two.tif", _blobs((2, 48, 48)))
    run = ([tmp_path / "two.tif"], _blob_predictor, tiny_config())
    predict_files(*run, tmp_path / "a", labels="watershed", log=lambda s: None)
    predict_files(*run, tmp_path / "b", measure=True, log=lambda s: None)
    assert (tmp_path / "a" / "two_labels.tif").is_file()
    assert not list(tmp_path.glob("*/*.csv"))


def test_a_table_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    import biounet.segment.objects as objects
    from biounet.segment.predict import predict_files

    tifffile.imwrite(tmp_path / "two.tif", _blobs((2, 48, 48)))
    out = tmp_path / "out"
    out.mkdir()
    (out / "two_objects.csv").write_text("old\n")
    run = ([tmp_path / "two.tif"], _blob_predictor, tiny_config(), out)
    real, measured = objects.measure_objects, []

    def fails_on_the_second_slice(*args, **kwargs):
        if measured:
            raise MemoryError("out of memory")
        measured.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(objects, "measure_objects", fails_on_the_second_slice)
    with pytest.raises(MemoryError):
        predict_files(*run, labels="watershed", measure=True, log=lambda s: None)
    assert (out / "two_objects.csv").read_text() == "old\n"  # the first slice's rows never reached it
    assert not [p for p in out.iterdir() if "tmp" in p.name]
    monkeypatch.setattr(objects, "measure_objects", real)
    predict_files(*run, labels="watershed", measure=True, log=lambda s: None)
    assert _table(out / "two_objects.csv")[0]["slice"] == "0"
