"""Every bad input ends in one line that names the problem and the way out, with no traceback:
exit status 2 for a bad command line (flags, values), 1 for a failure while running (files, I/O,
data). Silent wrong results (NaN pixels, colliding output names, scoring training images, a newer
config) are refused. Each case runs the real command line in-process on tiny files."""

import errno
import os
import shutil
import zlib

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from support import tiny_config

from biounet.cli import main
from biounet.core.config import CONFIG_VERSION, VERSION_KEY, WRITER_KEY
from biounet.core.errors import describe_os_error
from biounet.data import write_synthetic_dataset
from biounet.model import checkpoint as ckpt_io
from biounet.train.engine import train

# a width-4 U-Net for one step on the 64x64 synthetic pairs: training that must merely start and end
TINY_TRAIN = (
    "--base-width 4 --depth 2 --tile-size 60 --steps 1 --batch-size 2 --folds 2 --no-validation "
    "--precision fp32 --progress off".split()
)


def run_cli(capsys, *args) -> tuple[int, str]:
    """(exit status, stderr) of ``biounet ARGS``; stdout is dropped."""
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip()


def assert_one_line(err: str, *fragments: str) -> None:
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Four synthetic EM-like 64x64 image/mask pairs."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "pairs", count=4, size=64)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data):
    """Two tiny trained models on fold 1 of 2 folds: 'valid' (unpadded) and 'same' padding."""
    root = tmp_path_factory.mktemp("runs")
    for padding, tile in (("valid", 60), ("same", 32)):
        train(
            tiny_config(
                data=str(data), out=str(root / padding), steps=2, folds=2, fold="1", padding=padding, tile_size=tile
            ),
            quiet=True,
        )
    return root


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "in" / "x.png"
    path.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
    return path


# --- output paths that cannot be written --------------------------------------------------------


def test_train_out_naming_a_file(capsys, data, tmp_path):
    (tmp_path / "taken").write_text("mine")
    code, err = run_cli(
        capsys, "train", "--data", data, "--out", tmp_path / "taken", "--base-width", "4", "--steps", "1"
    )
    assert code == 2
    assert_one_line(err, "--out", "is a file, not a folder")
    assert (tmp_path / "taken").read_text() == "mine"


def test_predict_out_naming_a_file(capsys, runs, image, tmp_path):
    (tmp_path / "taken").write_text("mine")
    code, err = run_cli(capsys, "predict", image, "--model", runs / "valid", "--out", tmp_path / "taken")
    assert code == 2
    assert_one_line(err, "is a file, not a folder")


def test_fetch_into_a_file(capsys, tmp_path):
    (tmp_path / "taken").write_text("mine")
    code, err = run_cli(capsys, "fetch", "isbi2012", tmp_path / "taken")
    assert code == 2
    assert_one_line(err, "DIR", "is a file, not a folder")


def test_export_into_a_folder_that_cannot_be_made(capsys, runs, tmp_path):
    (tmp_path / "file").write_text("mine")
    code, err = run_cli(
        capsys,
        "export",
        "--model",
        runs / "valid",
        "--format",
        "onnx",
        "--out",
        tmp_path / "file" / "sub" / "m.onnx",
    )
    assert code == 2
    assert_one_line(err, "is a file, so the folder cannot be made there")


@pytest.mark.parametrize("target", ["folder", "under-a-file"])
def test_evaluate_json_that_cannot_be_written(capsys, runs, data, tmp_path, target):
    (tmp_path / "file").write_text("mine")
    path = tmp_path if target == "folder" else tmp_path / "file" / "r.json"
    code, err = run_cli(capsys, "evaluate", "--model", runs / "valid", "--data", data, "--json", path)
    assert code == 2
    assert_one_line(err, "--json")


def test_unwritable_folder_is_refused_before_work(capsys, runs, image, tmp_path, monkeypatch):
    # the tests run as root, for whom every folder is writable: ask os.access as a normal user would
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if "locked" in str(p) else real(p, mode, **kw))
    (tmp_path / "locked").mkdir()
    code, err = run_cli(capsys, "predict", image, "--model", runs / "valid", "--out", tmp_path / "locked")
    assert code == 2
    assert_one_line(err, "is not writable")


def test_full_disk_while_writing_is_one_line_and_keeps_the_old_output(capsys, runs, image, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert run_cli(capsys, "predict", image, "--model", runs / "valid", "--out", out)[0] == 0
    before = (out / "x_membrane.tif").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / ".x_membrane.tmp.tif"))

    monkeypatch.setattr(tifffile, "imwrite", full)
    code, err = run_cli(capsys, "predict", image, "--model", runs / "valid", "--out", out)
    assert code == 1
    assert_one_line(err, "No space left on device", "the disk is full")
    assert (out / "x_membrane.tif").read_bytes() == before
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_os_errors_name_the_path_and_a_way_out():
    text = describe_os_error(PermissionError(errno.EACCES, "Permission denied", "/srv/x"))
    assert text.startswith("/srv/x: Permission denied;") and "choose a location you may write to" in text


# --- flags and values -----------------------------------------------------------------------------


def test_evaluate_fold_that_is_not_a_fold(capsys, runs, data):
    code, err = run_cli(capsys, "evaluate", "--model", runs / "valid", "--data", data, "--fold", "x")
    assert code == 2
    assert_one_line(err, "--fold must be one of 0..1", "'x'")


@pytest.mark.parametrize("command", ["predict", "evaluate", "bench"])
def test_device_that_does_not_exist(capsys, runs, data, image, tmp_path, command):
    args = {
        "predict": ["predict", image, "--model", runs / "valid", "--out", tmp_path / "o"],
        "evaluate": ["evaluate", "--model", runs / "valid", "--data", data],
        "bench": ["bench", "--no-baseline", "--no-memory"],
    }[command]
    code, err = run_cli(capsys, *args, "--device", "gpu")
    assert code == 2
    assert_one_line(err, "--device must be auto, cpu, cuda or cuda:N, got 'gpu'")


@pytest.mark.parametrize("tile", ["0", "-16", "100000"])
def test_tile_out_of_range_on_a_same_padding_model(capsys, runs, image, tmp_path, tile):
    code, err = run_cli(capsys, "predict", image, "--model", runs / "same", "--out", tmp_path / "o", "--tile", tile)
    assert code == 2
    assert_one_line(err, f"--tile {tile}", "omit --tile")


def test_tile_not_a_multiple_on_a_same_padding_model(capsys, runs, image, tmp_path):
    code, err = run_cli(capsys, "predict", image, "--model", runs / "same", "--out", tmp_path / "o", "--tile", "30")
    assert code == 2
    assert_one_line(err, "--tile 30 must be a multiple of 4")


@pytest.mark.parametrize("flag,value", [("--lr", "nan"), ("--elastic-sigma", "inf"), ("--mask-threshold", "300")])
def test_non_finite_or_out_of_range_numbers(capsys, data, tmp_path, flag, value):
    code, err = run_cli(capsys, "train", "--data", data, "--out", tmp_path / "r", flag, value)
    assert code == 2
    assert_one_line(err, flag)
    assert not (tmp_path / "r").exists()


# --- files that cannot be read ---------------------------------------------------------------------


def test_truncated_compressed_tiff(capsys, runs, tmp_path):
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 255, (2, 64, 64), dtype=np.uint8), compression="zlib")
    raw = path.read_bytes()
    # cut into the compressed strips: the header still parses, the pixels do not
    path.write_bytes(raw[: len(raw) // 2])
    code, err = run_cli(capsys, "predict", path, "--model", runs / "valid", "--out", tmp_path / "o")
    assert code == 1
    assert_one_line(err, f"cannot read {path}", "truncated or corrupted")
    assert not (tmp_path / "o" / "t_membrane.tif").exists()


def test_corrupt_zlib_stream_is_a_data_error(tmp_path):
    from biounet.core.errors import DataError
    from biounet.data import read_image_file

    path = tmp_path / "z.tif"
    tifffile.imwrite(path, np.zeros((32, 32), np.uint8), compression="zlib")
    raw = bytearray(path.read_bytes())
    start = raw.find(zlib.compress(np.zeros((32, 32), np.uint8).tobytes())[:2])
    raw[start + 2 : start + 12] = b"\xff" * 10
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="cannot read"):
        read_image_file(path)


def test_checkpoint_without_config(capsys, runs, image, tmp_path):
    ckpt = torch.load(runs / "valid" / "last.pt", weights_only=True)
    del ckpt["config"]
    torch.save(ckpt, tmp_path / "noconfig.pt")
    code, err = run_cli(capsys, "predict", image, "--model", tmp_path / "noconfig.pt", "--out", tmp_path / "o")
    assert code == 1
    assert_one_line(err, "is not a biounet checkpoint (no config entries)")


def test_image_larger_than_memory_is_refused_before_decoding(capsys, runs, image, tmp_path, monkeypatch):
    import biounet.data.readers as readers

    monkeypatch.setattr(readers, "available_ram_bytes", lambda: 1000)  # 64x64 uint8 + float32 needs 20 kB
    decoded = []
    monkeypatch.setattr(readers.Image.Image, "load", lambda self: decoded.append(1))
    code, err = run_cli(capsys, "predict", image, "--model", runs / "valid", "--out", tmp_path / "o")
    assert code == 1
    assert_one_line(err, "declares 64 x 64 uint8 pixels", "crop or split it")
    assert not decoded


# --- images and masks as tools write them ----------------------------------------------------------


def _with_alpha(grey: np.ndarray, alpha: np.ndarray) -> Image.Image:
    return Image.fromarray(np.stack([grey, alpha], -1), mode="LA")


def test_opaque_alpha_is_dropped_and_said_once(capsys, runs, data, tmp_path):
    folder = tmp_path / "la"
    folder.mkdir()
    for k, src in enumerate(sorted((data / "images").iterdir())[:2]):
        grey = np.asarray(Image.open(src))
        _with_alpha(grey, np.full_like(grey, 255)).save(folder / f"im{k}.png")
    code, err = run_cli(capsys, "predict", folder, "--model", runs / "valid", "--out", tmp_path / "o")
    assert code == 0, err
    assert err.count("dropping the opaque alpha channel") == 1
    # the same pixels without alpha give the same probabilities
    plain = tmp_path / "plain"
    plain.mkdir()
    Image.fromarray(np.asarray(Image.open(folder / "im0.png"))[..., 0]).save(plain / "im0.png")
    assert run_cli(capsys, "predict", plain, "--model", runs / "valid", "--out", tmp_path / "p")[0] == 0
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "o" / "im0_membrane.tif"), tifffile.imread(tmp_path / "p" / "im0_membrane.tif")
    )


def test_real_transparency_is_refused(capsys, runs, tmp_path):
    alpha = np.full((64, 64), 255, np.uint8)
    alpha[:8] = 0
    _with_alpha(np.zeros((64, 64), np.uint8), alpha).save(tmp_path / "t.png")
    code, err = run_cli(capsys, "predict", tmp_path / "t.png", "--model", runs / "valid", "--out", tmp_path / "o")
    assert code == 1
    assert_one_line(err, "512 transparent pixel(s)", "flatten it onto a background")


def test_masks_with_alpha_and_rgba_images_train(capsys, data, tmp_path):
    folder = tmp_path / "rgba"
    shutil.copytree(data, folder)
    for sub in ("images", "masks"):
        for p in (folder / sub).iterdir():
            grey = np.asarray(Image.open(p))
            if sub == "masks":
                _with_alpha(grey, np.full_like(grey, 255)).save(p)
            else:
                Image.fromarray(np.stack([grey] * 3 + [np.full_like(grey, 255)], -1), mode="RGBA").save(p)
    code, err = run_cli(
        capsys,
        "train",
        "--data",
        folder,
        "--out",
        tmp_path / "r",
        "--in-channels",
        "3",
        *TINY_TRAIN,
    )
    assert code == 0, err
    assert err.count("dropping the opaque alpha channel") == 1


def _anti_aliased(data, tmp_path):
    folder = tmp_path / "aa"
    shutil.copytree(data, folder)
    for p in (folder / "masks").iterdir():
        mask = np.asarray(Image.open(p))
        small = Image.fromarray(mask).resize((48, 48), Image.BILINEAR).resize(mask.shape[::-1], Image.BILINEAR)
        small.save(p)
    return folder


def test_anti_aliased_masks_name_the_fraction_and_the_fix(capsys, data, tmp_path):
    folder = _anti_aliased(data, tmp_path)
    code, err = run_cli(capsys, "train", "--data", folder, "--out", tmp_path / "r", "--steps", "1")
    assert code == 1
    assert_one_line(
        err, "is not a binary mask", "% of its labelled pixels are neither 0 nor 255", "--mask-threshold 127"
    )
    code, err = run_cli(
        capsys,
        "train",
        "--data",
        folder,
        "--out",
        tmp_path / "r",
        "--mask-threshold",
        "127",
        *TINY_TRAIN,
    )
    assert code == 0, err


def test_mask_threshold_binarizes_above_the_threshold():
    from biounet.data.readers import mask_to_classes

    mask = np.array([[0, 10, 127], [128, 250, 255]], np.uint8)
    assert mask_to_classes(mask, 2, None, threshold=127).tolist() == [[0, 0, 0], [1, 1, 1]]
    # already binary masks are read as they are, whatever the threshold
    assert mask_to_classes(np.array([[0, 1]], np.uint8), 2, None, threshold=127).tolist() == [[0, 1]]


# --- silent wrong results ---------------------------------------------------------------------------


def test_nan_pixels_are_refused_with_their_count(capsys, runs, tmp_path):
    img = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    img[:3, :5] = np.nan
    img[10, 10] = np.inf
    tifffile.imwrite(tmp_path / "f.tif", img)
    code, err = run_cli(capsys, "predict", tmp_path / "f.tif", "--model", runs / "valid", "--out", tmp_path / "o")
    assert code == 1
    assert_one_line(err, "16 non-finite pixel(s)", "fill them")
    assert not (tmp_path / "o" / "f_membrane.tif").exists()


def test_nan_pixels_stop_training_before_it_starts(capsys, data, tmp_path):
    folder = tmp_path / "nan"
    shutil.copytree(data, folder)
    first = sorted((folder / "images").iterdir())[0]
    img = np.asarray(Image.open(first)).astype(np.float32)
    img[0, 0] = np.nan
    first.unlink()
    tifffile.imwrite(first.with_suffix(".tif"), img)
    code, err = run_cli(capsys, "train", "--data", folder, "--out", tmp_path / "r", "--steps", "1")
    assert code == 1
    assert_one_line(err, "1 non-finite pixel(s)")
    assert not (tmp_path / "r").exists()


def test_two_inputs_with_one_stem_are_refused(capsys, runs, image, tmp_path):
    other = tmp_path / "b" / "x.png"
    other.parent.mkdir()
    shutil.copy(image, other)
    code, err = run_cli(capsys, "predict", image, other, "--model", runs / "valid", "--out", tmp_path / "o")
    assert code == 2
    assert_one_line(err, "would both write x_*.tif", "separate --out folders")
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_training_images_are_refused_from_a_copy_and_another_folder(capsys, runs, data, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    monkeypatch.chdir(tmp_path)  # a relative path from another working folder
    code, err = run_cli(capsys, "evaluate", "--model", runs / "valid", "--data", "copy", "--fold", "0")
    assert code == 2
    assert_one_line(err, "2 of the 2 images to score were used to train the checkpoint", "--allow-train-slices")
    # the held-out fold scores; the flag lets the training fold through
    assert run_cli(capsys, "evaluate", "--model", runs / "valid", "--data", "copy", "--fold", "1")[0] == 0
    assert (
        run_cli(capsys, "evaluate", "--model", runs / "valid", "--data", "copy", "--fold", "0", "--allow-train-slices")[
            0
        ]
        == 0
    )


def test_checkpoint_of_a_newer_biounet_names_the_release(capsys, runs, image, tmp_path):
    ckpt = torch.load(runs / "valid" / "last.pt", weights_only=True)
    ckpt["config"] = {**ckpt["config"], VERSION_KEY: CONFIG_VERSION + 1, WRITER_KEY: "9.1.0", "new_option": 3}
    torch.save(ckpt, tmp_path / "newer.pt")
    code, err = run_cli(capsys, "predict", image, "--model", tmp_path / "newer.pt", "--out", tmp_path / "o")
    assert code == 2
    assert_one_line(err, f"config version {CONFIG_VERSION + 1}", "upgrade to biounet 9.1.0 or later")


def test_checkpoint_of_an_older_biounet_is_migrated(capsys, runs, image, tmp_path):
    ckpt = torch.load(runs / "valid" / "last.pt", weights_only=True)
    assert ckpt["config"][VERSION_KEY] == CONFIG_VERSION
    old = {k: v for k, v in ckpt["config"].items() if k not in (VERSION_KEY, WRITER_KEY, "mask_threshold")}
    ckpt["config"] = old  # what biounet 0.1.0 wrote: no version, no mask_threshold
    torch.save(ckpt, tmp_path / "old.pt")
    code, err = run_cli(capsys, "predict", image, "--model", tmp_path / "old.pt", "--out", tmp_path / "o")
    assert code == 0, err
    assert ckpt_io.load(tmp_path / "old.pt")["config"] == old  # the file itself is left as it was


def test_resuming_a_run_that_never_saved_says_to_start_again(capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("steps: 4\n")  # a run killed before its first checkpoint
    code, err = run_cli(capsys, "train", "--resume", run)
    assert code == 1
    assert_one_line(err, "stopped before its first checkpoint", "start it again with the same command")


@pytest.mark.parametrize("opset", ["-0", "7", "999"])
def test_export_opset_out_of_range(capsys, runs, tmp_path, opset):
    # found by tests/support/fuzzing.py: --opset 0 "succeeded" with a converter traceback on stderr
    code, err = run_cli(
        capsys,
        "export",
        "--model",
        runs / "valid",
        "--format",
        "onnx",
        "--out",
        tmp_path / "m.onnx",
        "--opset",
        opset,
    )
    assert code == 2
    assert_one_line(err, "--opset must be between 17 and")
    assert not (tmp_path / "m.onnx").exists()
