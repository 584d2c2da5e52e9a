"""Export: ONNX and torch.export programs segment like the checkpoint they came from."""

import json
import subprocess
import sys

import numpy as np
import pytest
from support import tiny_config

from biounet.cli import main
from biounet.data import kfold_split
from biounet.deploy.export import ExportError, OnnxPredictor, ProgramPredictor, export_model, load_exported
from biounet.evaluation.evaluate import evaluate_images
from biounet.models import load_predictor
from biounet.segment.inference import segment
from biounet.train.engine import train

METRICS = ("dice_coeff", "dice_coeff_388", "pixel_error", "pixel_mismatch", "v_rand", "v_info")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, isbi_dir):
    """A tiny valid-padding model trained briefly on ISBI fold 1, exported to both formats."""
    root = tmp_path_factory.mktemp("export")
    run = root / "run"
    train(tiny_config(data=str(isbi_dir), out=str(run), steps=3), quiet=True)
    onnx_path = export_model(run, "onnx", root / "model.onnx")
    pt2_path = export_model(run, "program", root / "model.pt2")
    return run, onnx_path, pt2_path


@pytest.mark.parametrize("fmt", ["onnx", "program"])
def test_export_runs_at_several_sizes_and_batches(exported, fmt):
    run, onnx_path, pt2_path = exported
    model_path = onnx_path if fmt == "onnx" else pt2_path
    predictor, cfg, _ = load_exported(model_path, "cpu")
    reference, _, _ = load_predictor(run, "cpu", "fp32")
    rng = np.random.default_rng(0)
    # tracing would freeze the crop sizes of one input size: two sizes and batch sizes must both work
    for batch, h, w in ((1, 60, 60), (3, 76, 92)):
        x = rng.uniform(-1, 1, (batch, 1, h, w)).astype(np.float32)
        got, want = predictor(x), reference(x)
        assert got.shape == want.shape == (batch, 2, h - 40, w - 40)
        assert np.abs(got - want).max() <= 1e-4


def test_metadata_holds_the_preprocessing_contract(exported):
    _, onnx_path, _ = exported
    meta = OnnxPredictor(onnx_path, "cpu").meta
    assert meta["in_channels"] == 1 and meta["classes"] == 2 and meta["depth"] == 2
    assert meta["padding"] == "valid" and meta["margin"] == 20
    assert "[-1, 1]" in meta["input_scaling"]
    assert meta["config"]["base_width"] == 4


def test_onnx_parity_on_isbi_fold1(exported, isbi_data):
    run, onnx_path, _ = exported
    _, val = kfold_split(len(isbi_data), "1", 5)
    val = val[:2]  # two of the fold-1 validation slices keep the test short
    onnx_pred, cfg, _ = load_exported(onnx_path, "cpu")
    torch_pred, _, _ = load_predictor(run, "cpu", "fp32")
    for i in val:
        a = segment(isbi_data.images[i], onnx_pred, cfg.depth, cfg.padding)
        b = segment(isbi_data.images[i], torch_pred, cfg.depth, cfg.padding)
        assert np.abs(a - b).max() <= 1e-4
    ra = evaluate_images(onnx_pred, isbi_data, val, cfg.depth, cfg.padding)
    rb = evaluate_images(torch_pred, isbi_data, val, cfg.depth, cfg.padding)
    for key in METRICS:
        assert abs(ra[key] - rb[key]) <= 1e-3, key


def test_predict_with_onnx_imports_no_torch(exported, isbi_dir, tmp_path):
    _, onnx_path, _ = exported
    out = tmp_path / "pred"
    # any `import torch` (or OpenCV, matplotlib: training-only) now fails
    code = (
        "import sys; sys.modules['torch'] = sys.modules['cv2'] = sys.modules['matplotlib'] = None\n"
        "from biounet.cli import main\n"
        f"rc = main(['predict', {str(isbi_dir / 'test-volume.tif')!r}, '--model', {str(onnx_path)!r}, "
        f"'--out', {str(out)!r}])\n"
        "assert 'torch' not in [m.split('.')[0] for m in sys.modules if sys.modules[m] is not None]\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "test-volume_membrane.tif").is_file() and (out / "test-volume_mask.tif").is_file()


# A tiny, barely trained model sits near the thresholds on many pixels, so bf16 rounding moves its
# challenge scores more than a trained model's (README: 0.00xx on the fold-1 model): the checkpoint
# under bf16 is held to a looser bound than float32, which must match the float32 export closely.
TOLERANCE = {"fp32": 1e-3, "bf16": 2e-2}


@pytest.mark.parametrize("cpu_bf16", ["0", "1"])
def test_evaluate_with_model_matches_checkpoint(exported, isbi_dir, tmp_path, monkeypatch, cpu_bf16):
    """`auto` precision as on a CPU without native bf16 (float32) and with it (bf16), whatever this CPU is."""
    monkeypatch.setenv("BIOUNET_CPU_BF16", cpu_bf16)
    run, onnx_path, _ = exported
    reports = {}
    for kind, value in (("exported", onnx_path), ("checkpoint", run / "last.pt")):
        path = tmp_path / f"{kind}.json"
        assert main(["evaluate", "--model", str(value), "--data", str(isbi_dir), "--json", str(path)]) == 0
        reports[kind] = json.loads(path.read_text())
    precision = "bf16" if cpu_bf16 == "1" else "fp32"
    assert reports["exported"]["precision"] == "fp32" and reports["checkpoint"]["precision"] == precision
    assert reports["checkpoint"]["device"] == "cpu"
    for key in METRICS:
        assert abs(reports["exported"][key] - reports["checkpoint"][key]) <= TOLERANCE[precision], key


def test_corrupted_or_foreign_files_give_clear_errors(exported, isbi_dir, tmp_path, capsys):
    _, onnx_path, pt2_path = exported
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(onnx_path.read_bytes()[: len(onnx_path.read_bytes()) // 2])
    with pytest.raises(ExportError, match="cannot load it"):
        OnnxPredictor(broken, "cpu")
    broken_pt2 = tmp_path / "broken.pt2"
    broken_pt2.write_bytes(pt2_path.read_bytes()[:1000])
    with pytest.raises(ExportError, match="cannot load it"):
        ProgramPredictor(broken_pt2, "cpu")
    # a valid ONNX model that biounet did not write
    import onnx

    proto = onnx.load(str(onnx_path))
    del proto.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(proto, str(foreign))
    with pytest.raises(ExportError, match="not a biounet export"):
        OnnxPredictor(foreign, "cpu")
    # through the command line: one line, exit 1 (a file that fails while running)
    assert (
        main(["predict", str(isbi_dir / "test-volume.tif"), "--model", str(broken), "--out", str(tmp_path / "o")]) == 1
    )
    assert "cannot load it" in capsys.readouterr().err


def test_wrong_input_shapes_are_refused(exported):
    _, onnx_path, _ = exported
    predictor = OnnxPredictor(onnx_path, "cpu")
    with pytest.raises(ExportError, match=r"\(N, 1, H, W\)"):
        predictor(np.zeros((1, 3, 60, 60), np.float32))
    with pytest.raises(ExportError, match="each side must be"):
        predictor(np.zeros((1, 1, 62, 60), np.float32))


def test_export_refuses_a_mismatched_suffix(exported, tmp_path):
    run, _, _ = exported
    assert main(["export", "--model", str(run), "--format", "onnx", "--out", str(tmp_path / "m.pt2")]) == 2
    assert not (tmp_path / "m.pt2").exists()


def test_an_affinity_network_exports_its_classes_and_affinities(tmp_path, isbi_dir):
    """The exported output has the class channels, then one per offset; the metadata says which is which,
    and that the input holds each slice's neighbouring sections."""
    from biounet.data.affinities import DEFAULT_OFFSETS

    run = tmp_path / "run"
    train(tiny_config(data=str(isbi_dir), out=str(run), steps=2, affinities="mws12", context=1), quiet=True)
    path = export_model(run, "onnx", tmp_path / "aff.onnx")
    predictor, cfg, _ = load_exported(path, "cpu")
    meta = predictor.meta
    assert (meta["in_channels"], meta["image_channels"], meta["context"]) == (3, 1, 1)
    assert meta["out_channels"] == 14 and meta["offsets"] == [list(o) for o in DEFAULT_OFFSETS]
    assert meta["channel_names"]["output"][2:4] == ["affinity_dy-1_dx0", "affinity_dy0_dx-1"]
    assert "sigmoid" in meta["output_shape"] and (cfg.affinities, cfg.context) == ("mws12", 1)
    reference, _, _ = load_predictor(run, "cpu", "fp32")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 76, 60)).astype(np.float32)
    got, want = predictor(x), reference(x)
    assert got.shape == want.shape == (2, 14, 36, 20)
    assert np.abs(got - want).max() <= 1e-4
    with pytest.raises(ExportError, match=r"takes \(N, 3, H, W\)"):
        predictor(x[:, :1])
