"""What a bioimage.io package of biounet says (rdf.yaml, model description format 0.5 as
bioimageio.spec 0.5.12 validates it, and README.md), and running a package biounet wrote.

biounet keeps its own description under ``config.biounet`` (the preprocessing contract with the
training configuration, the step, the training images' fingerprints): :func:`open_package` rebuilds
the network from it and the weights after checking the sha256 of the file it reads against rdf.yaml.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from biounet.core.config import TrainConfig, from_dict
from biounet.core.errors import BiounetError, ConfigError
from biounet.data.affinities import output_channels
from biounet.data.context import input_channels

PACKAGE_FORMAT = 1  # the version of config.biounet
SPEC_VERSION = "0.5.12"
RDF_NAME = "rdf.yaml"
ARCH, STATE, ONNX = "unet.py", "weights.pt", "weights.onnx"
TEST_INPUT, TEST_OUTPUT, COVER, README = "test_input.npy", "test_output.npy", "cover.png", "README.md"
SAMPLE_INPUT, SAMPLE_OUTPUT = "sample_input.tif", "sample_output.tif"  # the test tensors, for people
INPUT_ID, OUTPUT_ID, SCORES_ID = "image", "probabilities", "scores"
ISBI_TERMS = (
    "The weights were trained on the ISBI 2012 EM segmentation challenge data (Cardona et al. 2010, "
    "Drosophila first instar larva ventral nerve cord), free to use for generating or testing "
    "non-commercial image segmentation software; publications must cite TrakEM2 (Cardona et al. 2012) "
    "and Cardona et al. 2010. These terms apply to the weights, beside the code's MIT license."
)
UNET_CITE = {
    "text": "Ronneberger O, Fischer P, Brox T. U-Net: Convolutional Networks for Biomedical Image Segmentation. "
    "MICCAI 2015, LNCS 9351: 234-241.",
    "doi": "10.1007/978-3-319-24574-4_28",
}
ISBI_CITES = [
    {
        "text": "Cardona A, et al. An integrated micro- and macroarchitectural analysis of the Drosophila brain by "
        "computer-assisted serial section electron microscopy. PLoS Biol 2010; 8(10): e1000502.",
        "doi": "10.1371/journal.pbio.1000502",
    },
    {
        "text": "Cardona A, et al. TrakEM2 software for neural circuit reconstruction. PLoS ONE 2012; 7(6): e38011.",
        "doi": "10.1371/journal.pone.0038011",
    },
]


class PackageError(BiounetError):
    """A bioimage.io package biounet cannot run: not a package, damaged, or not written by biounet."""


def unet_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The keyword arguments of ``UNet`` for the network ``cfg`` describes (its input channels hold every
    section of --context, its output the classes and the affinities: ``num_classes`` counts both)."""
    return {
        "in_channels": input_channels(cfg),
        "num_classes": output_channels(cfg),
        "base_width": cfg.base_width,
        "depth": cfg.depth,
        "padding": cfg.padding,
        "batch_norm": cfg.batch_norm,
    }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(folder: Path, name: str) -> dict[str, str]:
    return {"source": name, "sha256": _sha256((folder / name).read_bytes())}


def trained_on_isbi(cfg: TrainConfig, builtin: str | None) -> bool:
    """Whether the weights carry the ISBI 2012 data terms: a built-in ISBI model, or training data in
    a folder named like it or holding its training stack."""
    if builtin is not None:
        return builtin.startswith("isbi2012")
    data = Path(cfg.data) if cfg.data else None
    return data is not None and (data.name.lower().startswith("isbi") or (data / "train-volume.tif").is_file())


def same_padding_halo(depth: int) -> int:
    """The border a same-padding network's tile should lose when tiles are stitched: its zero padding
    moves the built-in model's (depth 4) membrane probability by up to 0.57 within 24 pixels of a tile
    edge, 0.08 at 32 and 0.002 at 48 (ISBI test slice 0, a 256-pixel tile against the whole slice)."""
    return 3 * 2**depth


def input_sides(cfg: TrainConfig) -> tuple[int, int]:
    """(min, step) of the input's y and x as rdf.yaml declares them: sides min + step * k. Same
    padding: the smallest multiple of the step above the output's two halos (the spec's rule)."""
    from biounet.deploy.export import size_rule

    step, _, smallest = size_rule(cfg.depth, cfg.padding)
    if cfg.padding == "same":
        smallest = (2 * same_padding_halo(cfg.depth) // step + 1) * step
    return smallest, step


def _tensor_descriptions(cfg: TrainConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(inputs, outputs) of rdf.yaml without their test tensors. A network with affinity channels has no
    postprocessing (one softmax over every channel would mix them): its output is the raw scores, each
    channel described (README.md, config.biounet.contract.offsets)."""
    from biounet.deploy.export import channel_names
    from biounet.model.geometry import valid_margin

    smallest, step = input_sides(cfg)
    margin = valid_margin(cfg.depth) if cfg.padding == "valid" else 0
    halo = same_padding_halo(cfg.depth) if cfg.padding == "same" else 0
    in_names, out_names = channel_names(cfg)
    sections = f"; sections z-{cfg.context}..z+{cfg.context} of a stack as channels" if cfg.context else ""
    image = {
        "id": INPUT_ID,
        "description": "8-bit image; the preprocessing scales it to [-1, 1] (x / 127.5 - 1) as biounet does" + sections,
        "axes": [
            {"type": "batch"},
            {"type": "channel", "channel_names": in_names},
            *({"type": "space", "id": a, "size": {"min": smallest, "step": step}} for a in ("y", "x")),
        ],
        "data": {"type": "uint8"},
        "preprocessing": [
            {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
            {"id": "scale_linear", "kwargs": {"gain": 2.0 / 255.0, "offset": -1.0}},
            {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},  # else it would cast back to uint8
        ],
    }
    same = f"the input's size; crop {halo} pixels of tile borders" if halo else f"the input's size - {2 * margin}"
    probabilities = {
        "id": output_id(cfg),
        "description": f"class probabilities (softmax of the network's scores); y and x: {same}"
        if cfg.affinities == "none"
        else f"{cfg.classes} class scores (softmax: probabilities), one affinity score per offset (sigmoid); README",
        "axes": [
            {"type": "batch"},
            {"type": "channel", "channel_names": out_names},
            *(
                {
                    "type": "space",
                    "id": a,
                    "size": {"tensor_id": INPUT_ID, "axis_id": a, "offset": -2 * margin},
                    **({"halo": halo} if halo else {}),
                }
                for a in ("y", "x")
            ),
        ],
        "data": {"type": "float32", "range": [0.0, 1.0]},
        "postprocessing": [{"id": "softmax", "kwargs": {"axis": "channel"}}],
    }
    if cfg.affinities != "none":
        probabilities["data"] = {"type": "float32"}
        del probabilities["postprocessing"]
    return [image], [probabilities]


def output_id(cfg: TrainConfig) -> str:
    """The output's id: "probabilities" (the softmax of the classes), or "scores" for a network with affinity
    channels, whose output is not postprocessed."""
    return OUTPUT_ID if cfg.affinities == "none" else SCORES_ID


def _training_data() -> dict[str, Any]:
    return {
        "type": "dataset",
        "format_version": "0.3.4",
        "name": "ISBI 2012 EM segmentation challenge",
        "description": "30 serial-section TEM slices (512x512, about 4x4x50 nm) of the Drosophila first instar "
        "larva ventral nerve cord with membrane labels. " + ISBI_TERMS,
        "authors": [{"name": "Albert Cardona et al."}],  # the authors of Cardona et al. 2010, who took the images
        "cite": [dict(c) for c in ISBI_CITES],
        "tags": ["electron-microscopy", "membrane", "isbi2012"],
    }


def rdf_content(
    folder: Path, cfg: TrainConfig, about: dict[str, Any], meta: dict[str, Any], opset: int | None
) -> dict[str, Any]:
    """rdf.yaml's content for the files in ``folder`` (``opset`` None: no ONNX weights); ``about``: name,
    description, authors, parameter count, scores and whether the ISBI 2012 terms apply."""
    import torch

    inputs, outputs = _tensor_descriptions(cfg)
    for tensor, test, sample in ((inputs[0], TEST_INPUT, SAMPLE_INPUT), (outputs[0], TEST_OUTPUT, SAMPLE_OUTPUT)):
        tensor["test_tensor"], tensor["sample_tensor"] = file_entry(folder, test), file_entry(folder, sample)
    isbi = about["isbi"]
    tags = ["unet", "unet2d", "pytorch", "onnx", "2d", "semantic-segmentation", "biounet"]
    rdf: dict[str, Any] = {
        "type": "model",
        "format_version": SPEC_VERSION,
        "name": about["name"],
        "description": about["description"],
        "authors": [{"name": a} for a in about["authors"]],
        "cite": [dict(c) for c in [UNET_CITE, *(ISBI_CITES if isbi else [])]],
        "license": "MIT",
        "tags": tags + (["electron-microscopy", "membrane", "isbi2012"] if isbi else []),
        "documentation": file_entry(folder, README),
        "covers": [file_entry(folder, COVER)],
        "timestamp": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "inputs": inputs,
        "outputs": outputs,
        "weights": {
            "pytorch_state_dict": {
                **file_entry(folder, STATE),
                "architecture": {**file_entry(folder, ARCH), "callable": "UNet", "kwargs": unet_kwargs(cfg)},
                "pytorch_version": str(torch.__version__).split("+")[0],
                "comment": "float32; " + (ISBI_TERMS if isbi else "MIT, as the code"),
            },
            **(
                {"onnx": {**file_entry(folder, ONNX), "opset_version": opset, "parent": "pytorch_state_dict"}}
                if opset is not None
                else {}
            ),
        },
        "config": {
            "bioimageio": {
                "architecture_type": "U-Net",
                "architecture_description": "the U-Net of Ronneberger et al. 2015 as biounet builds it: "
                f"depth {cfg.depth}, base width {cfg.base_width}, {cfg.padding} padding, "
                f"batch norm {'on' if cfg.batch_norm else 'off'}",
                "task": "semantic segmentation",
                "model_parameter_count": about["parameters"],
                **({"modality": "electron microscopy", "target_structure": ["membranes"]} if isbi else {}),
            },
            "biounet": meta,
        },
    }
    if isbi:
        rdf["training_data"] = _training_data()
    return rdf


# ---------------------------------------------------------------- running a package biounet wrote

REWRITE = "write it again with `biounet export --format bioimageio`"


def read_package(path: str | Path) -> tuple[zipfile.ZipFile, dict[str, Any]]:
    """(the open zip, rdf.yaml) of a package biounet wrote; a PackageError naming the problem otherwise."""
    path = Path(path)
    if not path.is_file():
        raise PackageError(f"--model {path}: no such file; give a .zip written by `biounet export --format bioimageio`")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PackageError(f"{path} is not a readable zip file ({exc}; truncated or damaged?); {REWRITE}") from None
    try:
        return zf, _checked_rdf(zf, path)
    except BaseException:  # the zip is the caller's only on success: no open file left per failed attempt
        zf.close()
        raise


def _checked_rdf(zf: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    """rdf.yaml of an open package, checked to be a 2D model of a format biounet wrote."""
    name = next((n for n in (RDF_NAME, "bioimageio.yaml") if n in zf.namelist()), None)
    if name is None:
        raise PackageError(
            f"{path} is a zip file but not a bioimage.io package (no rdf.yaml at its top level); pass a package "
            f"written by `biounet export --format bioimageio`"
        )
    try:
        rdf = yaml.safe_load(zf.read(name))
    except (yaml.YAMLError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise PackageError(f"{path}: its {name} is not readable YAML ({str(exc)[:200]}); {REWRITE}") from None
    if not isinstance(rdf, dict) or rdf.get("type") != "model" or not str(rdf.get("format_version")).startswith("0.5."):
        kind = rdf.get("type") if isinstance(rdf, dict) else None
        version = rdf.get("format_version") if isinstance(rdf, dict) else None
        raise PackageError(
            f"{path} describes a bioimage.io {kind} of format {version}; biounet runs models of format 0.5 "
            f"that it wrote: {REWRITE}"
        )
    meta = (rdf.get("config") or {}).get("biounet")
    if not isinstance(meta, dict) or not isinstance((meta.get("contract") or {}).get("config"), dict):
        raise PackageError(
            f"{path} is a bioimage.io model that biounet did not write (no config.biounet in its {name}); "
            f"run it with bioimage.io software (`bioimageio predict`), or export a biounet checkpoint"
        )
    if not isinstance(meta.get("format"), int) or meta["format"] > PACKAGE_FORMAT:
        raise PackageError(f"{path} is a biounet package of format {meta.get('format')}, newer than this biounet reads")
    _check_axes(rdf, path)
    return rdf


def _check_axes(rdf: dict[str, Any], path: Path) -> None:
    want = [["batch", "channel", "space", "space"], ["batch", "channel", "space", "space"]]
    try:
        tensors = [rdf["inputs"][0], rdf["outputs"][0]]
        got = [[a["type"] for a in t["axes"]] for t in tensors]
    except (KeyError, IndexError, TypeError):
        raise PackageError(f"{path}: its rdf.yaml has no inputs or outputs with axes (damaged?); {REWRITE}") from None
    if got != want or len(rdf["inputs"]) != 1 or len(rdf["outputs"]) != 1:
        raise PackageError(
            f"{path} has {len(rdf['inputs'])} input(s) and {len(rdf['outputs'])} output(s), axes "
            f"{' and '.join('(' + ', '.join(axes) + ')' for axes in got)}; biounet runs one 2D input and output of "
            f"axes (batch, channel, y, x): a 3D or multi-tensor model needs bioimage.io software (`bioimageio predict`)"
        )


def package_file(zf: zipfile.ZipFile, entry: Any, path: str | Path) -> bytes:
    """The bytes of the file an rdf.yaml entry names, checked against its sha256."""
    source = entry.get("source") if isinstance(entry, dict) else None
    try:
        data = zf.read(str(source))
    except KeyError:
        raise PackageError(
            f"{path}: {source}, named in its rdf.yaml, is not in the zip (damaged?); {REWRITE}"
        ) from None
    if _sha256(data) != entry.get("sha256"):
        raise PackageError(
            f"{path}: {source} does not match its sha256 in rdf.yaml (the file or rdf.yaml was damaged or "
            f"edited); {REWRITE}"
        )
    return data


def open_package(
    path: str | Path, device: str = "auto", precision: str = "auto", threads: int = 0
) -> tuple[Any, TrainConfig, dict[str, Any]]:
    """(predictor, TrainConfig, description) of a package biounet wrote: its ``pytorch_state_dict``
    run by biounet's UNet under ``precision``, or, where PyTorch is not installed, its ONNX weights
    on onnxruntime (float32)."""
    zf, rdf = read_package(path)
    with zf:
        meta = rdf["config"]["biounet"]
        cfg = from_dict(meta["contract"]["config"], source=f"{path} (config.biounet)")
        weights = rdf.get("weights")
        weights = weights if isinstance(weights, dict) else {}
        if not {"pytorch_state_dict", "onnx"} & set(weights):
            raise PackageError(
                f"{path} has weights in {', '.join(weights) or 'no format'}; biounet runs pytorch_state_dict or "
                f"onnx: {REWRITE}"
            )
        try:
            import torch  # noqa: F401  (present: the state dict; absent: the ONNX weights)
        except ImportError:
            predictor = _onnx_predictor(zf, weights, path, device, precision, threads)
        else:
            predictor = _torch_predictor(zf, weights, cfg, path, device, precision, threads)
    description = {"path": str(path), "step": meta.get("step"), "train_digests": meta.get("train_digests") or []}
    return predictor, cfg, description


def _torch_predictor(zf, weights, cfg: TrainConfig, path, device: str, precision: str, threads: int) -> Any:
    import torch

    from biounet.core.device import resolve_device, resolve_precision, set_threads
    from biounet.model.unet import build_model
    from biounet.segment.inference import torch_predictor

    entry = weights.get("pytorch_state_dict")
    if entry is None:
        return _onnx_predictor(zf, weights, path, device, precision, threads)
    kwargs = (entry.get("architecture") or {}).get("kwargs")
    if kwargs != unet_kwargs(cfg):
        raise PackageError(f"{path}: the UNet kwargs in rdf.yaml ({kwargs}) do not fit config.biounet; {REWRITE}")
    state = torch.load(io.BytesIO(package_file(zf, entry, path)), map_location="cpu", weights_only=True)
    model = build_model(cfg)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise PackageError(f"{path}: its weights do not fit its UNet ({str(exc)[:200]}); {REWRITE}") from None
    set_threads(threads)
    dev = resolve_device(device)
    return torch_predictor(model.eval(), dev, resolve_precision(precision, dev))


def _onnx_predictor(zf, weights, path, device: str, precision: str, threads: int) -> Any:
    from biounet.deploy.export import ExportError, OnnxPredictor

    entry = weights.get("onnx")
    if entry is None:
        raise PackageError(f"{path} has no onnx weights, and its pytorch_state_dict needs PyTorch: install torch")
    if precision not in ("auto", "fp32"):
        raise ConfigError(f"--precision {precision}: the ONNX weights run in float32; drop --precision")
    with tempfile.TemporaryDirectory(prefix="biounet-package-") as tmp:
        onnx_path = Path(tmp) / ONNX
        onnx_path.write_bytes(package_file(zf, entry, path))
        try:
            return OnnxPredictor(onnx_path, device, threads)
        except ExportError as exc:  # it names the temporary copy, gone when this returns: name the package
            raise PackageError(str(exc).replace(str(onnx_path), f"{path}: its {ONNX}")) from None
