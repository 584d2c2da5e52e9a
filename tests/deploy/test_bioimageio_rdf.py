"""What a package's rdf.yaml says, and one clear refusal for every package biounet cannot run: not a
zip, no rdf.yaml, a damaged file, another tool's model, 3D axes, weights of another format."""

import hashlib
import io
import zipfile

import numpy as np
import pytest
import yaml
from PIL import Image
from support import tiny_config

from biounet.cli import main
from biounet.deploy.bioimageio import write_package
from biounet.deploy.bioimageio_rdf import PackageError, open_package, read_package
from biounet.model.checkpoint import atomic_save, payload
from biounet.model.unet import build_model
from biounet.models import load_predictor


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """The package of an untrained tiny valid-padding network, state dict only (fast)."""
    root = tmp_path_factory.mktemp("rdf")
    cfg = tiny_config(data=str(root / "my-data"))
    atomic_save(payload(cfg.to_saved(), 7, build_model(cfg).state_dict()), root / "net.pt")
    return write_package(root / "net.pt", root / "net.zip", opset=None, authors=["A. Person"])


def rewrite(package, target, edit=None, drop=(), replace=None):
    """A copy of ``package`` with rdf.yaml edited by ``edit`` (a function of the dict), the files in
    ``drop`` left out and the files in ``replace`` (name -> bytes) changed."""
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(target, "w") as dst:
        for name in src.namelist():
            data = (replace or {}).get(name, src.read(name))
            if name == "rdf.yaml" and edit is not None:
                rdf = yaml.safe_load(data)
                edit(rdf)
                data = yaml.safe_dump(rdf, sort_keys=False).encode()
            if name not in drop:
                dst.writestr(name, data)
    return target


def test_rdf_says_what_the_network_is(package):
    _, rdf = read_package(package)
    assert rdf["authors"] == [{"name": "A. Person"}] and rdf["license"] == "MIT"
    assert rdf["inputs"][0]["preprocessing"][1] == {"id": "scale_linear", "kwargs": {"gain": 2 / 255, "offset": -1.0}}
    assert rdf["outputs"][0]["axes"][1]["channel_names"] == ["membrane", "cell"]
    assert "training_data" not in rdf  # not trained on ISBI: no data terms
    assert "non-commercial" not in rdf["weights"]["pytorch_state_dict"]["comment"]
    assert rdf["config"]["bioimageio"]["model_parameter_count"] > 0
    with zipfile.ZipFile(package) as zf:
        for entry in (rdf["inputs"][0]["test_tensor"], rdf["outputs"][0]["sample_tensor"], rdf["covers"][0]):
            assert hashlib.sha256(zf.read(entry["source"])).hexdigest() == entry["sha256"]


def test_bioimageio_spec_validates_the_format(package):
    from bioimageio.spec import load_description

    description = load_description(package, perform_io_checks=True)
    assert description.validation_summary.status in ("valid-format", "passed"), description.validation_summary


def test_open_package_runs_the_checkpoints_network(package):
    predictor, cfg, description = open_package(package, "cpu", "fp32")
    reference, _, _ = load_predictor(package.parent / "net.pt", "cpu", "fp32")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 1, 60, 76)).astype(np.float32)
    assert np.array_equal(predictor(x), reference(x))
    assert cfg.depth == 2 and description["step"] == 7 and description["path"] == str(package)


@pytest.fixture(scope="module")
def affinity_package(tmp_path_factory):
    """The package of an untrained tiny network with affinity channels and one section of context."""
    root = tmp_path_factory.mktemp("rdf-aff")
    cfg = tiny_config(affinities="mws12", context=1)
    atomic_save(payload(cfg.to_saved(), 3, build_model(cfg).state_dict()), root / "net.pt")
    return write_package(root / "net.pt", root / "net.zip", opset=None)


def test_an_affinity_packages_rdf_says_what_every_channel_is(affinity_package):
    from biounet.data.affinities import DEFAULT_OFFSETS

    _, rdf = read_package(affinity_package)
    (image,), (scores,) = rdf["inputs"], rdf["outputs"]
    assert image["axes"][1]["channel_names"] == ["grey_z-1", "grey_z+0", "grey_z+1"]
    names = scores["axes"][1]["channel_names"]
    assert names[:3] == ["membrane", "cell", "affinity_dy-1_dx0"] and len(names) == 14
    # one softmax over every channel would mix classes and affinities: the scores are not postprocessed
    assert scores["id"] == "scores" and "postprocessing" not in scores and "range" not in scores["data"]
    assert "sigmoid" in scores["description"] and len(scores["description"]) <= 128  # the spec's limit
    contract = rdf["config"]["biounet"]["contract"]
    assert contract["offsets"] == [list(o) for o in DEFAULT_OFFSETS]
    assert (contract["in_channels"], contract["out_channels"], contract["context"]) == (3, 14, 1)
    with zipfile.ZipFile(affinity_package) as zf:
        readme = zf.read("README.md").decode()
        assert "(-27, 0)" in readme and "sigmoid of channel 2 + j" in readme and "sections z - 1 .. z + 1" in readme
        test_input = np.load(io.BytesIO(zf.read(image["test_tensor"]["source"])))
        test_output = np.load(io.BytesIO(zf.read(scores["test_tensor"]["source"])))
    assert test_input.shape[1] == 3 and test_output.shape[1] == 14
    assert test_output.min() < 0 or test_output.max() > 1  # scores, not probabilities


def test_an_affinity_package_validates_and_runs(affinity_package):
    from bioimageio.spec import load_description

    description = load_description(affinity_package, perform_io_checks=True)
    assert description.validation_summary.status in ("valid-format", "passed"), description.validation_summary
    predictor, cfg, _ = open_package(affinity_package, "cpu", "fp32")
    reference, _, _ = load_predictor(affinity_package.parent / "net.pt", "cpu", "fp32")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 60, 60)).astype(np.float32)
    assert predictor(x).shape == (1, 14, 20, 20) and np.array_equal(predictor(x), reference(x))
    assert (cfg.affinities, cfg.context) == ("mws12", 1)


def _drop_biounet(rdf):
    del rdf["config"]["biounet"]


def _three_d(rdf):
    rdf["inputs"][0]["axes"].insert(2, {"type": "space", "id": "z", "size": 8})


def _torchscript_only(rdf):
    rdf["weights"] = {"torchscript": {**rdf["weights"]["pytorch_state_dict"], "architecture": None}}


def _edit_sha(rdf):
    rdf["weights"]["pytorch_state_dict"]["sha256"] = "0" * 64


def _newer(rdf):
    rdf["config"]["biounet"]["format"] = 99


def _dataset(rdf):
    rdf["type"] = "dataset"


@pytest.mark.parametrize(
    "edit, drop, fragments",
    [
        (_edit_sha, (), ["weights.pt does not match its sha256", "export --format bioimageio"]),
        (None, ("rdf.yaml",), ["not a bioimage.io package (no rdf.yaml"]),
        (None, ("weights.pt",), ["weights.pt, named in its rdf.yaml, is not in the zip"]),
        (_drop_biounet, (), ["biounet did not write", "bioimageio predict"]),
        (_three_d, (), ["(batch, channel, space, space, space)", "3D"]),
        (_torchscript_only, (), ["weights in torchscript", "pytorch_state_dict or onnx"]),
        (_newer, (), ["format 99, newer than this biounet reads"]),
        (_dataset, (), ["bioimage.io dataset", "runs models of format 0.5"]),
    ],
)
def test_a_package_biounet_cannot_run_is_refused_in_one_line(package, tmp_path, capsys, edit, drop, fragments):
    damaged = rewrite(package, tmp_path / "damaged.zip", edit, drop)
    with pytest.raises(PackageError):
        open_package(damaged, "cpu")
    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(image)
    code = main(["predict", str(image), "--model", str(damaged), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_a_replaced_file_fails_its_checksum(package, tmp_path):
    damaged = rewrite(package, tmp_path / "swapped.zip", replace={"weights.pt": b"not the weights"})
    with pytest.raises(PackageError, match="does not match its sha256"):
        open_package(damaged, "cpu")


def test_a_file_that_is_no_zip_or_no_file_is_refused(tmp_path):
    (tmp_path / "text.zip").write_text("not a zip")
    with pytest.raises(PackageError, match="not a readable zip file"):
        read_package(tmp_path / "text.zip")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("notes.txt", "a zip of something else")
    with pytest.raises(PackageError, match="not a bioimage.io package"):
        read_package(tmp_path / "other.zip")
    with pytest.raises(PackageError, match="no such file"):
        read_package(tmp_path / "missing.zip")


@pytest.mark.parametrize(
    "edit, drop, replace",
    [
        (None, ("rdf.yaml",), None),
        (None, (), {"rdf.yaml": b"type: [unclosed"}),
        (_drop_biounet, (), None),
        (_three_d, (), None),
        (_newer, (), None),
        (_dataset, (), None),
    ],
)
def test_a_refused_package_leaves_no_open_file(package, tmp_path, monkeypatch, edit, drop, replace):
    damaged = rewrite(package, tmp_path / "damaged.zip", edit, drop, replace)
    opened = []

    class Recorded(zipfile.ZipFile):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self)

    monkeypatch.setattr(zipfile, "ZipFile", Recorded)
    for attempt in (read_package, open_package):  # the napari widget retries in one long-lived process
        with pytest.raises(PackageError):
            attempt(damaged)
    assert len(opened) == 2 and all(zf.fp is None for zf in opened)  # closed: no descriptor leaks
    try:
        import psutil
    except ImportError:
        return
    assert str(damaged) not in [f.path for f in psutil.Process().open_files()]


def test_an_onnx_load_error_names_the_package_not_a_temporary_file(package, tmp_path):
    junk = b"not an onnx model"

    def onnx_only(rdf):
        state = rdf["weights"].pop("pytorch_state_dict")
        rdf["weights"] = {"onnx": {"source": "weights.onnx", "sha256": hashlib.sha256(junk).hexdigest()}}
        assert state  # the state dict is gone: the ONNX weights run

    damaged = rewrite(package, tmp_path / "onnx-only.zip", onnx_only)
    with zipfile.ZipFile(damaged, "a") as zf:
        zf.writestr("weights.onnx", junk)
    with pytest.raises(PackageError) as err:
        open_package(damaged, "cpu")
    message = str(err.value)
    assert message.startswith(f"{damaged}: its weights.onnx: onnxruntime cannot load it"), message
    assert "biounet-package-" not in message and "\n" not in message
