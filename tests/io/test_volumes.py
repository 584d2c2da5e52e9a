import pickle

import h5py
import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr.format import FormatV04
from ome_zarr.writer import write_image
from tifffile.zarr import ZarrTiffStore

from biounet.core.errors import ConfigError, DataError
from biounet.io import volumes
from biounet.io.volumes import is_volume_spec, open_volume, parse_roi

SHAPE = (5, 37, 41)  # odd sizes: chunks (2, 16, 16) leave partial chunks on every axis
REGIONS = [(0, slice(0, 37), slice(0, 41)), (2, slice(5, 30), slice(17, 18)), (4, slice(None), slice(33, None))]


@pytest.fixture
def data() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, SHAPE, dtype=np.uint8)


def write_zarr(path, pixels, zarr_format=3, chunks=None, **kwargs):
    array = zarr.create_array(
        str(path),
        shape=pixels.shape,
        dtype=pixels.dtype,
        chunks=chunks or pixels.shape,
        zarr_format=zarr_format,
        **kwargs,
    )
    array[...] = pixels
    return str(path)


def assert_reads(volume, pixels, regions=REGIONS):
    """Every region reads exactly the written (Z, H, W[, C]) pixels, in the stored dtype."""
    for z, y, x in regions:
        got = volume.read(z, y, x)
        assert got.dtype == pixels.dtype
        np.testing.assert_array_equal(got, pixels[z, y, x])


def test_is_volume_spec():
    for spec in ("a.zarr", "a.zarr/raw", "d/s.ome.zarr", "A.ZARR/x/y", "vol.h5", "vol.h5:/raw", "v.hdf5", "v.hdf:/a/b"):
        assert is_volume_spec(spec), spec
    for spec in ("a.tif", "a.tiff", "a.png", "a.zarrx", "a.h5x", "folder"):
        assert not is_volume_spec(spec), spec


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_reads_exact_regions(tmp_path, data, zarr_format):
    spec = write_zarr(tmp_path / "sample.zarr", data, zarr_format, chunks=(2, 16, 16))
    volume = open_volume(spec)
    assert (volume.shape, volume.channels, volume.dtype, volume.axes) == (SHAPE, 1, np.uint8, "zyx")
    assert (volume.name, volume.voxel_size, volume.unit, volume.spec) == ("sample", None, None, spec)
    assert_reads(volume, data)


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_ome_zarr_levels_and_voxel_size(tmp_path, data, version):
    v04 = version == "0.4"
    group = zarr.open_group(tmp_path / "sample.ome.zarr", mode="w", zarr_format=2 if v04 else 3)
    write_image(
        data,
        group,
        axes="zyx",
        scale_factors=[2],
        fmt=FormatV04() if v04 else None,
        scale={"z": 30.0, "y": 4.0, "x": 4.0},
        axes_units=dict.fromkeys("zyx", "nanometer"),
    )
    assert ("multiscales" in group.attrs) == v04  # 0.4 at the top level, 0.5 under "ome"
    volume = open_volume(str(tmp_path / "sample.ome.zarr"))
    assert (volume.shape, volume.name, volume.axes) == (SHAPE, "sample", "zyx")
    assert (volume.voxel_size, volume.unit) == ((30.0, 4.0, 4.0), "nanometer")
    assert_reads(volume, data)

    half = open_volume(str(tmp_path / "sample.ome.zarr"), level=1)
    small = group["s1"][...]
    assert half.shape == small.shape == (5, 18, 20)
    assert half.voxel_size == pytest.approx((30.0, 4.0 * 37 / 18, 4.0 * 41 / 20))  # the level's own scale
    assert_reads(half, small, [(1, slice(None), slice(None)), (4, slice(3, 9), slice(2, 17))])
    with pytest.raises(ConfigError, match="has 2 resolution level"):
        open_volume(str(tmp_path / "sample.ome.zarr"), level=2)
    with pytest.raises(ConfigError, match="contradicts"):
        open_volume(str(tmp_path / "sample.ome.zarr"), axes="yxc")
    assert open_volume(str(tmp_path / "sample.ome.zarr"), axes="zyx").axes == "zyx"


def test_ome_zarr_with_time_and_channels(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (1, 3, 4, 19, 23), dtype=np.uint8)
    write_image(pixels, zarr.open_group(tmp_path / "t.ome.zarr", mode="w"), axes="tczyx", scale_factors=[])
    volume = open_volume(str(tmp_path / "t.ome.zarr"))
    assert (volume.shape, volume.channels, volume.axes) == ((4, 19, 23), 3, "tczyx")
    assert_reads(volume, np.moveaxis(pixels[0], 0, -1), [(3, slice(2, 9), slice(0, 23))])


def test_hdf5_dataset_path(tmp_path, data):
    with h5py.File(tmp_path / "vol.h5", "w") as f:
        f.create_dataset("group/raw", data=data, chunks=(1, 16, 16), compression="gzip")
    volume = open_volume(f"{tmp_path}/vol.h5:/group/raw")
    assert (volume.name, volume.shape, volume.axes) == ("vol_group_raw", SHAPE, "zyx")
    assert_reads(volume, data)
    only = open_volume(str(tmp_path / "vol.h5"))  # the file's one dataset
    assert only.name == "vol"
    assert_reads(only, data)


@pytest.mark.parametrize("bigtiff", [False, True])
def test_tiff_stack_reads_exact_regions(tmp_path, data, bigtiff):
    tifffile.imwrite(tmp_path / "sample.tif", data, bigtiff=bigtiff)
    with tifffile.TiffFile(tmp_path / "sample.tif") as tif:
        assert tif.is_bigtiff == bigtiff and len(tif.pages) == SHAPE[0]
    volume = open_volume(str(tmp_path / "sample.tif"))
    assert (volume.name, volume.shape, volume.axes, volume.voxel_size) == ("sample", SHAPE, "zyx", None)
    assert_reads(volume, data)


def test_tiff_axes_rgb_channels_and_imagej_calibration(tmp_path, data):
    rgb = np.stack([data, 255 - data, data // 2], axis=-1)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    volume = open_volume(str(tmp_path / "rgb.tif"))  # tifffile's QYXS
    assert (volume.axes, volume.channels, volume.shape) == ("zyxc", 3, SHAPE)
    assert_reads(volume, rgb)
    cz = np.moveaxis(rgb, -1, 0)
    tifffile.imwrite(tmp_path / "cz.tif", cz, metadata={"axes": "CZYX"})
    assert open_volume(str(tmp_path / "cz.tif")).axes == "czyx"
    assert_reads(open_volume(str(tmp_path / "cz.tif")), rgb)
    meta = {"spacing": 30.0, "unit": "nm", "axes": "ZYX"}
    tifffile.imwrite(tmp_path / "cal.tif", data, imagej=True, resolution=(0.25, 0.25), metadata=meta)
    calibrated = open_volume(str(tmp_path / "cal.tif"))
    assert (calibrated.voxel_size, calibrated.unit) == ((30.0, 4.0, 4.0), "nanometer")


def test_2d_array_is_one_slice(tmp_path, data):
    volume = open_volume(write_zarr(tmp_path / "flat.zarr", data[0]))
    assert (volume.shape, volume.axes) == ((1, 37, 41), "yx")
    np.testing.assert_array_equal(volume.read(0, slice(3, 20), slice(None)), data[0, 3:20])


def test_channels_first_array(tmp_path, data):
    czyx = np.stack([data, 255 - data, data // 2])
    volume = open_volume(write_zarr(tmp_path / "c.zarr", czyx, chunks=(1, 1, 16, 16)), axes="czyx")
    assert (volume.shape, volume.channels) == (SHAPE, 3)
    assert volume.read(1, slice(0, 4), slice(0, 5)).shape == (4, 5, 3)
    assert_reads(volume, np.moveaxis(czyx, 0, -1))
    grey = open_volume(write_zarr(tmp_path / "g.zarr", data[..., None]), axes="zyxc")
    assert grey.channels == 1 and grey.read(0, slice(0, 4), slice(0, 5)).shape == (4, 5)


def test_value_range(tmp_path, data, monkeypatch):
    floats = (np.random.default_rng(2).normal(size=SHAPE) * np.arange(1, 6)[:, None, None]).astype(np.float32)
    # bands of 5 rows (37 rows: 8 bands), so the range is merged over bands
    monkeypatch.setattr(volumes, "BAND_BYTES", 5 * SHAPE[2] * 4)
    volume = open_volume(write_zarr(tmp_path / "f.zarr", floats, chunks=(1, 5, 41)))
    bands: list[tuple[int, int, int]] = []
    read = volume.read

    def recording_read(z, y, x):
        bands.append((z, y.start, y.stop))
        return read(z, y, x)

    volume.read = recording_read
    for z in range(SHAPE[0]):
        assert volume.value_range(z) == (float(floats[z].min()), float(floats[z].max()))
    assert bands[:8] == [(0, y, min(y + 5, 37)) for y in range(0, 37, 5)]  # 5-row bands cover the slice
    assert len(bands) == 8 * SHAPE[0]
    assert volume.value_range(4) == volume.value_range(4) and len(bands) == 8 * SHAPE[0]  # cached
    for dtype, expected in ((np.uint8, (0, 255)), (np.uint16, (0, 65535)), (np.int8, (-128, 127)), (bool, (0, 1))):
        typed = open_volume(write_zarr(tmp_path / f"{np.dtype(dtype).name}.zarr", data.astype(dtype)))
        assert typed.value_range(0) == expected


def test_non_finite_floats_are_a_data_error(tmp_path):
    floats = np.zeros(SHAPE, np.float32)
    floats[3, 2, 1], floats[3, 30, 40] = np.nan, np.inf
    volume = open_volume(write_zarr(tmp_path / "f.zarr", floats))
    assert volume.value_range(2) == (0.0, 0.0)
    with pytest.raises(DataError, match="z=3 has 2 NaN or infinite.*fill them"):
        volume.value_range(3)


def test_zarr_read_touches_only_its_chunks(tmp_path, data, monkeypatch):
    spec = write_zarr(tmp_path / "v.zarr", data, chunks=(1, 16, 16))
    keys: list[str] = []
    get = zarr.storage.LocalStore.get

    async def counting_get(self, key, *args, **kwargs):
        keys.append(key)
        return await get(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", counting_get)
    volume = open_volume(spec)
    keys.clear()
    np.testing.assert_array_equal(volume.read(3, slice(0, 10), slice(20, 30)), data[3, 0:10, 20:30])
    assert [k for k in keys if not k.endswith("zarr.json")] == ["c/3/0/1"]


def test_tiff_slice_reads_only_its_page(tmp_path, data, monkeypatch):
    tifffile.imwrite(tmp_path / "s.tif", data)
    keys: list[str] = []
    get = ZarrTiffStore.get

    async def counting_get(self, key, *args, **kwargs):
        keys.append(key)
        return await get(self, key, *args, **kwargs)

    monkeypatch.setattr(ZarrTiffStore, "get", counting_get)
    volume = open_volume(str(tmp_path / "s.tif"))
    keys.clear()
    np.testing.assert_array_equal(volume.read(2, slice(None), slice(None)), data[2])
    assert [k for k in keys if k[0].isdigit()] == ["2.0.0"]  # page 2's one chunk, no other page


def test_pickled_volume_reads_from_its_copy(tmp_path, data):
    with h5py.File(tmp_path / "vol.h5", "w") as f:
        f["raw"] = data
    tifffile.imwrite(tmp_path / "s.tif", data)
    for spec in (
        write_zarr(tmp_path / "v.zarr", data, chunks=(1, 16, 16)),
        f"{tmp_path}/vol.h5:/raw",
        f"{tmp_path}/s.tif",
    ):
        volume = open_volume(spec)
        volume.read(0, slice(0, 2), slice(0, 2))  # an open file must not stop the pickling
        copy = pickle.loads(pickle.dumps(volume))
        assert repr(copy) == repr(volume)  # spec, name, shape, channels, dtype, voxel size, unit, axes, level
        assert_reads(copy, data)
        volume.close()
        assert_reads(volume, data, REGIONS[:1])  # reopened after close


def test_parse_roi():
    shape = (30, 600, 700)
    assert parse_roi("10:20,:,0:512", shape) == (slice(10, 20), slice(0, 600), slice(0, 512))
    assert parse_roi("5:10, 7:", shape) == (slice(0, 30), slice(5, 10), slice(7, 700))
    assert parse_roi("3,:,:100", shape) == (slice(3, 4), slice(0, 600), slice(0, 100))
    bad = {
        "5:5,:,:": "empty or reversed z",
        ":,10:2,:": "empty or reversed y",
        ":,:,-1:3": "negative x",
        "0:31,:,:": "outside the volume",
        "1:2:3,:,:": "not START:STOP",
        "a:b,:": "not START:STOP",
        ",:,:": "not START:STOP",
        "1,2,3,4": "4 comma-separated parts",
    }
    for text, phrase in bad.items():
        with pytest.raises(ConfigError, match=phrase) as err:
            parse_roi(text, shape)
        assert "30 x 600 x 700" in str(err.value), text


def test_corrupt_chunk_is_a_data_error_other_chunks_read(tmp_path, data):
    spec = write_zarr(tmp_path / "v.zarr", data, chunks=(1, 16, 16), compressors=zarr.codecs.ZstdCodec())
    (tmp_path / "v.zarr" / "c" / "2" / "0" / "1").write_bytes(b"not a zstd frame" * 8)
    volume = open_volume(spec)
    with pytest.raises(DataError, match=r"z=2, y 0:16, x 10:20 failed.*store is damaged") as err:
        volume.read(2, slice(0, 16), slice(10, 20))
    assert "\n" not in str(err.value) and "v.zarr" in str(err.value)
    assert_reads(
        volume,
        data,
        [(2, slice(0, 16), slice(0, 16)), (2, slice(16, 37), slice(None)), (3, slice(0, 16), slice(10, 20))],
    )


def test_bad_files_and_paths(tmp_path, data):
    group = zarr.open_group(tmp_path / "grp.zarr", mode="w")
    group.create_group("sub").create_array("raw", shape=(3, 4, 5), dtype="u1")
    group.create_array("other", shape=(3, 4), dtype="u1")
    with h5py.File(tmp_path / "vol.h5", "w") as f:
        f["group/raw"], f["second"] = data, data
    (tmp_path / "empty.zarr").mkdir()
    (tmp_path / "file.zarr").write_text("not Zarr")
    many = zarr.open_group(tmp_path / "many.zarr", mode="w")
    for k in range(12):
        many.create_array(f"a{k:02d}", shape=(2, 2), dtype="u1")
    (tmp_path / "text.h5").write_text("not HDF5")
    (tmp_path / "text.tif").write_text("not TIFF")
    cases = [
        (f"{tmp_path}/missing.zarr", DataError, "missing.zarr does not exist; check the path"),
        (f"{tmp_path}/missing.h5:/raw", DataError, "does not exist"),
        (f"{tmp_path}/missing.tif", DataError, "does not exist"),
        (
            f"{tmp_path}/grp.zarr",
            ConfigError,
            r"neither an array nor an OME-Zarr image.*sub/raw.*name one: .*grp.zarr/ARRAY",
        ),
        (f"{tmp_path}/grp.zarr/nope", DataError, r"holds no array or group 'nope' \(arrays inside: .*other"),
        (f"{tmp_path}/vol.h5:/nope", DataError, r"holds no dataset /nope \(datasets inside: group/raw, second"),
        (f"{tmp_path}/vol.h5:/group", ConfigError, r"is an HDF5 group.*name one: .*vol.h5:/group/DATASET"),
        (f"{tmp_path}/vol.h5", ConfigError, r"holds 2 datasets.*name one"),
        (f"{tmp_path}/text.h5", DataError, "not an HDF5 file"),
        (f"{tmp_path}/empty.zarr", DataError, "not a Zarr store"),
        (f"{tmp_path}/file.zarr", DataError, "not a Zarr store"),
        (f"{tmp_path}/many.zarr", ConfigError, r"arrays inside: a00, .*a09 and 2 more\); name one"),
        (f"{tmp_path}/text.tif", DataError, "not a readable TIFF"),
        (f"{tmp_path}/image.png", ConfigError, "is not a volume"),
    ]
    for spec, kind, phrase in cases:
        with pytest.raises(kind, match=phrase) as err:
            open_volume(spec)
        assert "\n" not in str(err.value), spec


def test_bad_axes_and_arrays(tmp_path, data):
    four = write_zarr(tmp_path / "four.zarr", np.zeros((2, 3, 4, 5), np.uint8))
    plain = write_zarr(tmp_path / "v.zarr", data)
    cases = [
        (four, {}, ConfigError, r"4 dimensions \(2, 3, 4, 5\) and no axis metadata; pass --axes"),
        (four, {"axes": "zyx"}, ConfigError, "has 3 letters for 4 dimensions"),
        (four, {"axes": "qzyx"}, ConfigError, "unknown letter"),
        (four, {"axes": "zzyx"}, ConfigError, "repeats z"),
        (four, {"axes": "tczx"}, ConfigError, "lacks y or x"),
        (four, {"axes": "tzyx"}, ConfigError, "2 time points"),
        (plain, {"level": 1}, ConfigError, "has 1 resolution level"),
        (write_zarr(tmp_path / "zero.zarr", np.zeros((0, 3, 4), np.uint8)), {}, DataError, "0-length axis"),
        (write_zarr(tmp_path / "cx.zarr", np.zeros((2, 3, 4), np.complex64)), {}, DataError, "complex64 pixels"),
    ]
    for spec, options, kind, phrase in cases:
        with pytest.raises(kind, match=phrase) as err:
            open_volume(spec, **options)
        assert "\n" not in str(err.value), (spec, options)
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["names"] = np.array([[b"a", b"b"], [b"c", b"d"]])
    with pytest.raises(DataError, match="expected integer, float or bool"):
        open_volume(f"{tmp_path}/s.h5:/names")
    # a shaped TIFF of unknown axes: tifffile's QQYX, z twice
    tifffile.imwrite(tmp_path / "four.tif", np.zeros((2, 3, 4, 5), np.uint8), photometric="minisblack")
    with pytest.raises(ConfigError, match="repeats z.*pass --axes"):
        open_volume(str(tmp_path / "four.tif"))
    assert open_volume(str(tmp_path / "four.tif"), axes="czyx").channels == 2  # --axes overrides a TIFF's letters
