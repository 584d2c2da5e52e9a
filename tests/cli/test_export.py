"""biounet.cli.export: ``--model`` names the network to export (a checkpoint, a run folder or a built-in
model); the exporters themselves are tests/deploy's, so here they only record what they were handed."""

import pytest

import biounet.deploy.bioimageio as bioimageio
import biounet.deploy.export as exporter
from biounet.cli import main
from biounet.model.pretrained import builtin_path


@pytest.fixture
def handed(monkeypatch, tmp_path):
    calls = []

    def export_model(checkpoint, fmt, out, opset=18):
        calls.append((str(checkpoint), fmt, opset))
        (tmp_path / "written").write_bytes(b"x" * 1024)
        return tmp_path / "written"

    def write_package(checkpoint, out, opset, sample, authors):
        calls.append((str(checkpoint), "bioimageio", sample))
        return export_model(checkpoint, "bioimageio", out)

    monkeypatch.setattr(exporter, "export_model", export_model)
    monkeypatch.setattr(bioimageio, "write_package", write_package)
    return calls


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def test_a_builtin_model_is_exported_from_its_checkpoint(capsys, tmp_path, handed):
    code, said, err = _run(
        capsys, "export", "--model", "isbi2012-membranes", "--format", "onnx", "--out", tmp_path / "m.onnx"
    )
    assert code == 0 and err == "" and said.startswith("wrote ")
    assert handed == [(str(builtin_path("isbi2012-membranes")), "onnx", 18)]


def test_a_run_folder_and_the_old_spelling(capsys, tiny_run, tmp_path, handed):
    code, _, err = _run(capsys, "export", "--checkpoint", tiny_run, "--format", "program", "--out", tmp_path / "m.pt2")
    assert code == 0 and err == "biounet: --checkpoint is deprecated; use --model"
    assert handed == [(str(tiny_run), "program", 18)]


def test_a_package_gets_its_sample_image(capsys, tiny_run, pairs, tmp_path, handed):
    sample = next((pairs / "images").iterdir())
    args = ["--model", tiny_run, "--format", "bioimageio", "--out", tmp_path / "m.zip", "--sample-image", sample]
    assert _run(capsys, "export", *args)[0] == 0
    assert handed[0] == (str(tiny_run), "bioimageio", str(sample))


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--model", "{tmp}/gone"], 1, "--model {tmp}/gone: no such file or folder; give a checkpoint (.pt), a run "
         "folder or a built-in model's name"),
        (["--model", "{tmp}/net.onnx"], 2, "--model {tmp}/net.onnx is an exported model, but export needs the "
         "PyTorch weights"),
        (["--model", "isbi2012-membranes", "--sample-image", "{tmp}/none.png"], 1,
         "--sample-image {tmp}/none.png: no such file or folder; give an 8-bit PNG or TIFF image"),
        (["--model", "isbi2012-membranes", "--opset", "7"], 2, "--opset must be between 17 and"),
    ],
)  # fmt: skip
def test_what_cannot_be_exported_is_one_line(capsys, tmp_path, handed, args, code, message):
    (tmp_path / "net.onnx").write_bytes(b"")
    status, _, err = _run(capsys, "export", "--format", "bioimageio", "--out", tmp_path / "m.zip",
                          *[a.format(tmp=tmp_path) for a in args])  # fmt: skip
    assert status == code and err.startswith("biounet export: error: ") and len(err.splitlines()) == 1, err
    assert message.format(tmp=tmp_path) in err and not handed
