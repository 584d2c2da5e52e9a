"""What an image file says about itself: a TIFF's pixel size and unit (ImageJ, OME-TIFF), the unit names of
each format, and a Zarr group's attributes (v2 and v3) read without zarr."""

import json

import numpy as np
import pytest
import tifffile

from biounet.io.metadata import (
    PixelSize,
    imagej_unit,
    known_unit,
    ome_unit,
    read_pixel_size,
    read_zarr_attrs,
    tiff_pixel_size,
)
from biounet.io.omezarr import OutputSpec, OutputStore


def _imagej_tiff(path, unit, spacing=0.05):
    """A stack whose ImageJ description holds ``unit`` raw (UTF-8), as some writers other than Fiji leave it."""
    desc = f"ImageJ=1.54f\nimages=2\nslices=2\nunit={unit}\nspacing={spacing}\nloop=false\n"
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint8), description=desc.encode(), resolution=(250, 250))


def test_imagej_calibration_is_resolution_spacing_and_unit(tmp_path):
    path = tmp_path / "a.tif"
    meta = {"axes": "ZYX", "unit": "nm", "spacing": 30.0}
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.float32), imagej=True, resolution=(1 / 4.0, 1 / 5.0), metadata=meta)
    assert read_pixel_size(path) == PixelSize(4.0, 5.0, 30.0, "nm")
    with tifffile.TiffFile(path) as tif:  # the same rule for an already open file (lazy volumes)
        assert tiff_pixel_size(tif) == (4.0, 5.0, 30.0, "nm")


@pytest.mark.parametrize("unit", ["µm", "um", "\\u00B5m", "μm", "micron"])
def test_every_micrometre_spelling_reads_as_micron(tmp_path, unit):
    _imagej_tiff(tmp_path / "in.tif", unit)
    assert read_pixel_size(tmp_path / "in.tif") == (0.004, 0.004, 0.05, "micron")


def test_no_calibration_is_invented(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((8, 8), np.uint8))
    _imagej_tiff(tmp_path / "pixel.tif", "pixel")  # ImageJ's "not calibrated"
    _imagej_tiff(tmp_path / "angstrom.tif", "Å")  # raw non-ASCII other than µ: ImageJ cannot carry it over
    tifffile.imwrite(tmp_path / "x.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 20)
    for name in ("plain.tif", "pixel.tif", "angstrom.tif", "x.png", "broken.tif", "missing.tif"):
        assert read_pixel_size(tmp_path / name) is None, name


def test_a_slice_spacing_that_is_not_positive_is_not_declared(tmp_path):
    _imagej_tiff(tmp_path / "in.tif", "nm", spacing=0)
    assert read_pixel_size(tmp_path / "in.tif") == (0.004, 0.004, None, "nm")


def _ome_tiff(path, **meta):
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint32), ome=True, metadata={"axes": "ZYX", **meta})
    return path


def test_ome_physical_sizes_and_the_schemas_default_unit(tmp_path):
    nm = _ome_tiff(
        tmp_path / "nm.tif",
        PhysicalSizeX=4.0,
        PhysicalSizeY=5.0,
        PhysicalSizeZ=30.0,
        **{f"PhysicalSize{a}Unit": "nm" for a in "XYZ"},
    )
    assert read_pixel_size(nm) == (4.0, 5.0, 30.0, "nm")
    default = _ome_tiff(tmp_path / "default.tif", PhysicalSizeX=0.5, PhysicalSizeY=0.5)  # no unit: µm
    assert read_pixel_size(default) == (0.5, 0.5, None, "micron")


@pytest.mark.parametrize(
    ("declared", "size"),
    [
        ({"PhysicalSizeX": 4.0, "PhysicalSizeXUnit": "nm"}, (4.0, 1.0, None, "nm")),
        ({"PhysicalSizeY": 5.0, "PhysicalSizeYUnit": "nm"}, (1.0, 5.0, None, "nm")),
        ({"PhysicalSizeZ": 30.0, "PhysicalSizeXUnit": "nm"}, (1.0, 1.0, 30.0, "nm")),
    ],
)
def test_an_ome_tiff_declaring_some_axes_only_gets_1_for_the_others(tmp_path, declared, size):
    assert read_pixel_size(_ome_tiff(tmp_path / "a.tif", **declared)) == size


def test_an_ome_unit_named_once_holds_for_every_axis_and_different_ones_are_converted(tmp_path):
    once = _ome_tiff(
        tmp_path / "once.tif", PhysicalSizeX=4.0, PhysicalSizeY=4.0, PhysicalSizeZ=30.0, PhysicalSizeXUnit="nm"
    )
    assert read_pixel_size(once) == (4.0, 4.0, 30.0, "nm")
    mixed = _ome_tiff(
        tmp_path / "mixed.tif",
        PhysicalSizeX=4.0,
        PhysicalSizeXUnit="nm",
        PhysicalSizeY=0.004,
        PhysicalSizeYUnit="µm",
        PhysicalSizeZ=0.03,
        PhysicalSizeZUnit="µm",
    )
    assert read_pixel_size(mixed) == pytest.approx((4.0, 4.0, 30.0, "nm"))


def test_ome_pixel_units_are_no_calibration(tmp_path):
    path = _ome_tiff(tmp_path / "a.tif", PhysicalSizeX=1.0, PhysicalSizeXUnit="pixel")
    assert read_pixel_size(path) is None


def test_each_format_names_the_unit_its_own_way():
    assert [imagej_unit(u) for u in ("µm", "\\u00B5m", "micrometer", "nm", "Å")] == ["micron"] * 3 + ["nm", None]
    assert [ome_unit(u) for u in ("micron", "um", "nm", "Å", "pixel")] == ["µm", "µm", "nm", "Å", None]
    assert known_unit("nm") == "nanometer" and known_unit("micrometer") == "micrometer"
    assert known_unit("micron") == known_unit("μm") == known_unit("\\u00B5m") == "micrometer"
    assert known_unit("inch") == "inch"
    assert known_unit("pixel") is None and known_unit(None) is None and known_unit("") is None


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_zarr_group_attributes_are_read_from_v3_and_v2_stores(tmp_path, ngff):
    spec = OutputSpec(shape=(1, 32, 32), chunks=(1, 32, 32), dtype="uint8", ngff=ngff)
    store = OutputStore.open(tmp_path / "v.ome.zarr", spec)
    attrs = read_zarr_attrs(store.path)
    assert attrs is not None and attrs["biounet"]["complete"] is False
    labels = read_zarr_attrs(store.path / "labels")
    assert labels is not None and labels.get("ome", labels)["labels"] == ["mask"]
    assert read_zarr_attrs(store.path / "0") is None  # an array, not a group


def test_what_is_not_a_zarr_group_has_no_attributes(tmp_path):
    assert read_zarr_attrs(tmp_path / "missing") is None
    assert read_zarr_attrs(tmp_path) is None  # a plain folder
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / ".zattrs").write_text(json.dumps({"a": 1}))
    assert read_zarr_attrs(v2) is None  # attributes without .zgroup: an array's, or a half-copied store
    (v2 / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    assert read_zarr_attrs(v2) == {"a": 1}
    (v2 / ".zattrs").unlink()
    assert read_zarr_attrs(v2) == {}  # a group without attributes
    v3 = tmp_path / "v3"
    v3.mkdir()
    for damaged in ("{not json", "[1, 2]", json.dumps({"node_type": "group", "attributes": [1]}), "\udcff"):
        (v3 / "zarr.json").write_bytes(damaged.encode("utf-8", "surrogateescape"))
        assert read_zarr_attrs(v3) is None, damaged


def test_declared_shape_reads_headers_of_paths_and_bytes_without_decoding(tmp_path):
    import io

    import numpy as np
    import tifffile
    from PIL import Image

    from biounet.io.metadata import declared_shape

    tifffile.imwrite(tmp_path / "s.tif", np.zeros((3, 5, 7), np.uint16))
    assert declared_shape(tmp_path / "s.tif", "tiff") == ((3, 5, 7), np.dtype(np.uint16))
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(buffer, format="PNG")
    assert declared_shape(io.BytesIO(buffer.getvalue()), "png") == ((4, 6, 3), np.dtype(np.uint8))


def test_a_tiff_declaring_more_strips_than_it_lists_is_refused_by_its_header(tmp_path):
    import numpy as np
    import pytest
    from support.fuzzing import encode_tiff, patch_tiff_tags

    from biounet.core.errors import DataError
    from biounet.io.metadata import declared_shape

    path = tmp_path / "damaged.tif"  # a 4 x 1 bilevel TIFF whose header says 2**20 one-row strips
    path.write_bytes(patch_tiff_tags(encode_tiff(np.zeros((4, 1), bool), shaped=False), {257: 2**20, 278: 1}))
    with pytest.raises(DataError, match="declares 1048576 strips or tiles but lists 1"):
        declared_shape(path, "tiff")
