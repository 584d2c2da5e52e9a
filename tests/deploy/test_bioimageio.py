"""bioimage.io packages: what `biounet export --format bioimageio` writes, and that bioimage.io's own
tester and biounet's predict both run it alike."""

import ast
import importlib.util
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tifffile
import torch
import yaml
from PIL import Image
from support import tiny_config

from biounet.cli import main
from biounet.core.errors import ConfigError, DataError
from biounet.data.readers import scale_image
from biounet.deploy.bioimageio import architecture_source, write_package
from biounet.deploy.bioimageio_rdf import unet_kwargs
from biounet.deploy.export import size_rule
from biounet.model.unet import UNet
from biounet.train.engine import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, isbi_dir):
    """A tiny valid-padding network (depth 2, margin 20) trained 2 steps on ISBI fold 1."""
    run = tmp_path_factory.mktemp("bioimageio") / "run"
    train(tiny_config(data=str(isbi_dir), out=str(run), steps=2), quiet=True)
    return run


@pytest.fixture(scope="module")
def sample_png(tmp_path_factory, isbi_dir):
    path = tmp_path_factory.mktemp("sample") / "slice.png"
    Image.fromarray(tifffile.imread(isbi_dir / "test-volume.tif")[0]).save(path)
    return path


@pytest.fixture(scope="module")
def package(run_dir, sample_png):
    """The tiny network's package without ONNX weights (no ONNX export: fast)."""
    return write_package(run_dir, run_dir.parent / "model.zip", opset=None, sample=sample_png)


@pytest.fixture(scope="module")
def full_package(run_dir):
    """The tiny network's package with both weight formats (an ONNX export: slow)."""
    return write_package(run_dir, run_dir.parent / "full.zip")


def _read(package, name):
    with zipfile.ZipFile(package) as zf:
        return zf.read(name)


def _array(package, name):
    return np.load(io.BytesIO(_read(package, name)))


def _state(package):
    return torch.load(io.BytesIO(_read(package, "weights.pt")), weights_only=True)


def _import_source(path):
    spec = importlib.util.spec_from_file_location("standalone_unet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_the_shipped_model_source_is_standalone_and_biounets_network(tmp_path, padding):
    source = architecture_source()
    imported = {
        alias.name if isinstance(node, ast.Import) else node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert not any(name.startswith("biounet") for name in imported)
    (tmp_path / "unet.py").write_text(source)
    standalone = _import_source(tmp_path / "unet.py")
    kwargs = unet_kwargs(tiny_config(padding=padding, batch_norm=True))
    ours = UNet(**kwargs, generator=torch.Generator().manual_seed(0)).eval()
    theirs = standalone.UNet(**kwargs).eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.rand(2, 1, 44, 60) * 2 - 1
    with torch.no_grad():
        assert torch.equal(theirs(x), ours(x))
    with pytest.raises(ValueError, match="nearest valid input sizes|too small"):
        theirs(torch.zeros(1, 1, 3, 3))


def test_package_holds_float32_weights_sizes_and_checksums(package, run_dir):
    from biounet.model.checkpoint import load_model

    _, cfg, ckpt = load_model(run_dir, "cpu")
    rdf = yaml.safe_load(_read(package, "rdf.yaml"))
    assert rdf["type"] == "model" and rdf["format_version"].startswith("0.5.")
    with zipfile.ZipFile(package) as zf:
        for entry in [rdf["documentation"], *rdf["covers"], rdf["weights"]["pytorch_state_dict"]["architecture"]]:
            assert zf.read(entry["source"]) and entry["sha256"]
    weights = rdf["weights"]["pytorch_state_dict"]
    assert set(rdf["weights"]) == {"pytorch_state_dict"}  # opset=None: no ONNX weights
    assert weights["architecture"]["kwargs"] == unet_kwargs(cfg) and weights["architecture"]["callable"] == "UNet"
    state = _state(package)
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    image, probs = rdf["inputs"][0], rdf["outputs"][0]
    assert [a["type"] for a in image["axes"]] == ["batch", "channel", "space", "space"]
    step, _, smallest = size_rule(cfg.depth, cfg.padding)
    assert image["axes"][2]["size"] == {"min": smallest, "step": step} and image["data"]["type"] == "uint8"
    assert probs["axes"][2]["size"]["offset"] == -40  # valid padding, depth 2: a margin of 20 on each side
    assert probs["postprocessing"] == [{"id": "softmax", "kwargs": {"axis": "channel"}}]
    meta = rdf["config"]["biounet"]
    assert meta["step"] == ckpt["step"] == 2 and meta["train_digests"] == ckpt["train_digests"]
    readme = _read(package, "README.md").decode()
    assert "## Validation" in readme
    size = rdf["inputs"][0]["axes"][2]["size"]  # the README quotes rdf.yaml's sides
    assert f"y and x of {size['min']} + {size['step']}·k pixels" in readme
    assert "TrakEM2" in rdf["weights"]["pytorch_state_dict"]["comment"]  # trained on ISBI: its data terms


def test_test_tensors_follow_biounets_scaling_and_softmax(package, run_dir, sample_png):
    from biounet.models import load_predictor
    from biounet.segment.tiling import softmax

    rdf = yaml.safe_load(_read(package, "rdf.yaml"))
    test_input, test_output = _array(package, "test_input.npy"), _array(package, "test_output.npy")
    side = test_input.shape[-1]
    assert test_input.dtype == np.uint8 and test_input.shape == (1, 1, side, side)
    assert test_output.dtype == np.float32 and test_output.shape == (1, 2, side - 40, side - 40)
    page = np.asarray(Image.open(sample_png))
    y0, x0 = (page.shape[0] - side) // 2, (page.shape[1] - side) // 2
    assert np.array_equal(test_input[0, 0], page[y0 : y0 + side, x0 : x0 + side])  # the sample's centre
    # the declared preprocessing, step by step, is biounet's scaling exactly
    x = test_input.astype(np.float32)
    for step in rdf["inputs"][0]["preprocessing"]:
        if step["id"] == "scale_linear":
            x = x * step["kwargs"]["gain"] + step["kwargs"]["offset"]
        else:
            x = x.astype(step["kwargs"]["dtype"])
    assert np.array_equal(x[0], scale_image(test_input[0, 0], 1))
    predictor, _, _ = load_predictor(run_dir, "cpu", "fp32")
    np.testing.assert_allclose(softmax(predictor(x), axis=1), test_output, atol=1e-6)


def _predict(tmp_path, model_flag, model, image):
    out = tmp_path / f"out-{os.path.basename(str(model))}"
    assert main(["predict", str(image), model_flag, str(model), "--out", str(out), "--precision", "fp32"]) == 0
    return tifffile.imread(out / f"{image.stem}_membrane.tif")


def test_predict_with_the_package_gives_the_checkpoints_probabilities(package, run_dir, isbi_dir, tmp_path):
    image = tmp_path / "two.tif"
    tifffile.imwrite(image, tifffile.imread(isbi_dir / "test-volume.tif")[:2])
    from_package = _predict(tmp_path, "--model", package, image)
    from_checkpoint = _predict(tmp_path, "--model", run_dir, image)
    assert from_package.shape == (2, 512, 512)
    assert np.abs(from_package - from_checkpoint).max() <= 1e-4


def test_the_builtin_model_is_packaged_in_float32_with_its_data_terms(tmp_path):
    path = write_package("isbi2012-membranes", tmp_path / "isbi.zip", opset=None)
    rdf = yaml.safe_load(_read(path, "rdf.yaml"))
    state = _state(path)
    assert state["head.weight"].dtype == torch.float32  # the built-in checkpoint stores float16
    dois = {c.get("doi") for c in rdf["cite"]}
    assert {"10.1007/978-3-319-24574-4_28", "10.1371/journal.pbio.1000502", "10.1371/journal.pone.0038011"} <= dois
    assert rdf["license"] == "MIT" and "non-commercial" in _read(path, "README.md").decode()
    assert rdf["training_data"]["name"].startswith("ISBI 2012") and rdf["authors"] == [{"name": "biounet developers"}]
    y_in, y_out = rdf["inputs"][0]["axes"][2], rdf["outputs"][0]["axes"][2]
    assert y_out["size"]["offset"] == 0 and y_out["halo"] == 48  # same padding: the input's size, a halo to crop
    assert y_in["size"] == {"min": 112, "step": 16}  # the smallest multiple of 16 above the two halos
    assert "y and x of 112 + 16·k pixels (k = 0, 1, ...: 112, 128, 144, ...)" in _read(path, "README.md").decode()


def test_a_wrong_name_or_sample_image_is_refused(run_dir, tmp_path, capsys):
    with pytest.raises(ConfigError, match="name it model.zip"):
        write_package(run_dir, tmp_path / "model.onnx", opset=None)
    tifffile.imwrite(tmp_path / "deep.tif", np.zeros((512, 512), np.uint16))
    with pytest.raises(DataError, match="uint16 pixels.*give an 8-bit image"):
        write_package(run_dir, tmp_path / "model.zip", opset=None, sample=tmp_path / "deep.tif")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "small.png")
    code = main(
        ["export", "--model", str(run_dir), "--format", "bioimageio", "--out", str(tmp_path / "m.zip")]
        + ["--sample-image", str(tmp_path / "small.png")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "is 64x64; the test input needs" in err, err
    assert not (tmp_path / "m.zip").exists()


BLOCKED = "import sys; sys.modules[{name!r}] = None\n"


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("weight_format", ["pytorch_state_dict", "onnx"])
def test_bioimageio_test_passes_offline_without_biounet(full_package, weight_format, tmp_path):
    summary = tmp_path / "summary.json"
    code = BLOCKED.format(name="biounet") + (
        f"sys.argv = ['bioimageio', 'test', {str(full_package)!r}, '--weight-format', {weight_format!r}, "
        f"'--summary', {str(summary)!r}]\n"
        "from bioimageio.core.__main__ import main\nmain()\n"
    )
    env = {**os.environ, "BIOIMAGEIO_CACHE_PATH": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    report = json.loads(summary.read_text())
    failed = [d["name"] for d in report["details"] if d["status"] != "passed"]
    assert done.returncode == 0 and report["status"] == "passed" and not failed, (failed, done.stderr[-3000:])
    tested = [d for d in report["details"] if d["loc"] == ["weights", weight_format]]
    assert any("Reproduce test outputs" in d["name"] for d in tested)


@pytest.mark.slow
def test_predict_with_the_onnx_weights_where_torch_is_absent(full_package, run_dir, isbi_dir, tmp_path):
    image = tmp_path / "one.tif"
    tifffile.imwrite(image, tifffile.imread(isbi_dir / "test-volume.tif")[:1])
    out = tmp_path / "onnx"
    code = BLOCKED.format(name="torch") + (
        "from biounet.cli import main\n"
        f"sys.exit(main(['predict', {str(image)!r}, '--model', {str(full_package)!r}, '--out', {str(out)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    from_checkpoint = _predict(tmp_path, "--model", run_dir, image)
    assert np.abs(tifffile.imread(out / "one_membrane.tif") - from_checkpoint).max() <= 1e-4


def _pixels_of(tmp_path, name, pixels, in_channels, side=64):
    from biounet.core.config import TrainConfig
    from biounet.deploy.bioimageio import _test_pixels

    path = tmp_path / name
    if name.endswith(".png"):
        Image.fromarray(pixels).save(path)
    else:
        tifffile.imwrite(path, pixels)
    return _test_pixels(TrainConfig(in_channels=in_channels), side, path)


def test_sample_images_grey_colour_and_stacks(tmp_path):
    rng = np.random.default_rng(0)
    grey, rgb = rng.integers(0, 256, (2, 80, 96), np.uint8), rng.integers(0, 256, (2, 80, 96, 3), np.uint8)
    centre = np.s_[8:72, 16:80]
    assert np.array_equal(_pixels_of(tmp_path, "g.png", grey[0], 1), grey[0][centre][None])
    assert np.array_equal(_pixels_of(tmp_path, "gs.tif", grey, 1), grey[0][centre][None])  # a stack: its first slice
    assert np.array_equal(_pixels_of(tmp_path, "c.png", rgb[0], 3), np.moveaxis(rgb[0][centre], -1, 0))
    rgba = np.concatenate([rgb[0], np.full((80, 96, 1), 255, np.uint8)], axis=-1)
    assert np.array_equal(_pixels_of(tmp_path, "a.png", rgba, 3), np.moveaxis(rgb[0][centre], -1, 0))
    # an RGB stack (Z, H, W, 3) for a 3-channel model: its first slice (was a ValueError traceback)
    stack = _pixels_of(tmp_path, "cs.tif", rgb, 3)
    assert np.array_equal(stack, np.moveaxis(rgb[0][centre], -1, 0))


@pytest.mark.parametrize(
    ("name", "grey", "in_channels", "message"),
    [
        ("c.png", False, 1, "is an RGB image; the model takes 1 channel.*give a greyscale 8-bit image"),
        ("cs.tif", False, 1, "is an RGB image; the model takes 1 channel.*give a greyscale 8-bit image"),
        ("g.png", True, 3, "is a greyscale image; the model takes 3 channel.*give an RGB image"),
        ("gs.tif", True, 3, "is a greyscale image; the model takes 3 channel.*give an RGB image"),
    ],
)
def test_a_sample_image_of_the_wrong_channels_is_refused_in_one_line(tmp_path, name, grey, in_channels, message):
    shape = (80, 96) if grey else (80, 96, 3)
    pixels = np.zeros((2, *shape) if name.endswith(".tif") else shape, np.uint8)
    with pytest.raises(DataError, match=message) as err:
        _pixels_of(tmp_path, name, pixels, in_channels)
    assert "\n" not in str(err.value)
