"""Fuzz the command line and the readers with hypothesis: damaged images, broken configs, nonsense flags,
damaged volume stores, --roi texts and predict's volume options.

Every input must end in one of two ways: success, or a clean error (exit status 1 or 2 and exactly one
stderr line starting with ``biounet``, no traceback); a reader called directly returns a valid array
or raises ``biounet.core.errors.BiounetError``. Anything else (an exception escaping ``main``, a traceback,
several lines, a wrong exit status, more than ``--time-limit`` seconds) is a failure, saved as a
reproducer.

Kinds of input (``--kinds``): ``image`` (PNG/TIFF through the readers), ``config`` (YAML), ``argv`` and
``checkpoint`` (command lines), ``volume`` (a small Zarr v2/v3, OME-Zarr 0.4/0.5, HDF5 or TIFF volume,
damaged, through ``open_volume``, ``read`` of every slice and ``value_range``), ``roi`` (``parse_roi``)
and ``volume-argv`` (``predict`` on small volumes with random volume options, sometimes run twice into
one --out with the store damaged in between; a success must leave a store that reads back).

    python tools/fuzz.py --inputs 10000 --seed 0 --time-limit 30 --json fuzz.json
    python tools/fuzz.py --kinds volume=2,roi=1,volume-argv=1 --max-seconds 300

The strategies are importable (tests/test_fuzz.py runs them with a small derandomized budget).
Nothing here touches the network (``fetch`` always gets ``--url http://127.0.0.1:9/``) or starts long
work (``train``/``cv``/``demo`` get a width-4 model and ``--steps 1``; ``bench`` always gets an invalid
value).
"""

import argparse
import contextlib
import io
import json
import os
import re
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from support import TINY_NET

HUGE = 100_000  # the side a patched header declares
DTYPES = ("uint8", "uint16", "int32", "float32", "float64", "bool")
DAMAGE = ("none", "truncate", "flip", "huge", "junk")

# ------------------------------------------------------------------------------------ image files


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray, declared: tuple[int, int] | None = None) -> bytes:
    """A PNG of (H, W) or (H, W, C) pixels (C 1-4; 8 or 16 bit; bool as 1 bit), written by hand so
    that the header may declare any size; other ranks and types are squeezed into 16-bit grey."""
    a = np.asarray(pixels)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] > 4:
        a = a.reshape(a.shape[0] if a.ndim else 1, -1, 1) if a.size else np.zeros((0, 0, 1), a.dtype)
    h, w, c = a.shape
    color = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    if a.dtype == bool and c == 1:
        depth, rows = 1, [np.packbits(r[:, 0]).tobytes() for r in a]
    elif a.dtype == np.uint8:
        depth, rows = 8, [r.tobytes() for r in a]
    else:
        if np.issubdtype(a.dtype, np.floating):
            a = np.nan_to_num(a, nan=0, posinf=65535, neginf=0)
        depth, rows = 16, [r.astype(">u2").tobytes() for r in np.clip(a, 0, 65535).astype(np.uint16)]
    raw = b"".join(b"\x00" + r for r in rows)
    dh, dw = declared or (h, w)
    ihdr = struct.pack(">IIBBBBB", dw, dh, depth, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def patch_tiff_size(data: bytes, side: int = HUGE) -> bytes:
    """The TIFF with ImageWidth and ImageLength of its first page set to ``side`` (as LONG values)."""
    return patch_tiff_tags(data, {256: side, 257: side})


def patch_tiff_tags(data: bytes, values: dict[int, int]) -> bytes:
    """The TIFF with the single-valued tags of its first page that ``values`` names (256 ImageWidth, 257
    ImageLength, 278 RowsPerStrip, ...) set to its values, as LONG values; a BigTIFF or a tag the page does
    not hold is left alone."""
    buf = bytearray(data)
    if len(buf) < 8 or buf[:2] not in (b"II", b"MM"):
        return data
    e = "<" if buf[:2] == b"II" else ">"
    (magic,) = struct.unpack(e + "H", buf[2:4])
    if magic != 42:
        return data  # BigTIFF: left alone
    (ifd,) = struct.unpack(e + "I", buf[4:8])
    if ifd + 2 > len(buf):
        return data
    (n,) = struct.unpack(e + "H", buf[ifd : ifd + 2])
    for k in range(n):
        at = ifd + 2 + 12 * k
        if at + 12 > len(buf):
            break
        tag, _typ, count = struct.unpack(e + "HHI", buf[at : at + 8])
        if tag in values and count == 1:
            buf[at + 2 : at + 12] = struct.pack(e + "HII", 4, 1, values[tag])
    return bytes(buf)


def encode_tiff(pixels: np.ndarray, shaped: bool) -> bytes:
    import warnings

    import tifffile

    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "writing zero-size array to nonconformant TIFF": wanted here
        tifffile.imwrite(out, pixels, metadata={} if shaped else None)
    return out.getvalue()


@st.composite
def pixel_arrays(draw, min_side: int = 0, max_side: int = 12) -> np.ndarray:
    """Random pixels: any of DTYPES, rank 1-5, sides min_side..max_side, NaN/inf in float images."""
    dtype = draw(st.sampled_from(DTYPES))
    rank = draw(st.sampled_from((2, 2, 3, 3, 1, 4, 5)))
    shape = [draw(st.integers(min_side, max_side)) for _ in range(rank)]
    if rank == 3 and draw(st.booleans()):
        shape[-1] = draw(st.integers(1, 5))  # channels last
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    style = draw(st.sampled_from(("noise", "binary", "constant", "labels")))
    if dtype == "bool":
        a = rng.random(shape) < 0.5
    elif style == "binary":
        a = (rng.random(shape) < 0.5).astype(dtype) * (255 if dtype != "bool" else 1)
    elif style == "constant":
        a = np.full(shape, draw(st.integers(0, 255)), dtype)
    elif style == "labels":
        a = rng.integers(0, 4, shape).astype(dtype)
    elif dtype.startswith("float"):
        a = (rng.standard_normal(shape) * draw(st.sampled_from((1.0, 1e30, 1e-30)))).astype(dtype)
    else:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    if dtype.startswith("float") and a.size and draw(st.booleans()):
        flat = a.reshape(-1)
        for v in draw(st.lists(st.sampled_from((np.nan, np.inf, -np.inf)), min_size=1, max_size=3)):
            flat[rng.integers(0, flat.size)] = v
    return a


@st.composite
def image_files(draw, suffixes=(".png", ".tif")) -> tuple[str, bytes, str]:
    """(suffix, file bytes, damage): a PNG or TIFF of random pixels, then possibly truncated, with
    bytes flipped, with a header declaring HUGE x HUGE pixels, or replaced by junk."""
    suffix = draw(st.sampled_from(suffixes))
    damage = draw(st.sampled_from(DAMAGE))
    if damage == "junk":
        return (
            suffix,
            draw(st.sampled_from((b"", b"hello", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*")))
            + draw(st.binary(max_size=64)),
            damage,
        )
    pixels = draw(pixel_arrays())
    try:
        if suffix == ".png":
            declared = (HUGE, HUGE) if damage == "huge" else None
            data = encode_png(pixels, declared)
        else:
            data = encode_tiff(pixels, shaped=draw(st.booleans()))
            if damage == "huge":
                data = patch_tiff_size(data, draw(st.sampled_from((HUGE, 2**31 - 1, 0))))
    except Exception:  # an array the writer refuses (an empty TIFF): fall back to junk
        return suffix, b"II*\x00" + bytes(8), "junk"
    if damage == "truncate" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip" and data:
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
        data = bytes(buf)
    return suffix, data, damage


# ------------------------------------------------------------------------------------ YAML configs

_KEYS = (
    "steps",
    "base_width",
    "depth",
    "tile_size",
    "batch_size",
    "lr",
    "fold",
    "folds",
    "padding",
    "classes",
    "in_channels",
    "precision",
    "device",
    "mask_threshold",
    "ignore_value",
    "elastic",
    "flip",
    "memory_gib",
    "micro_batch_size",
    "elastic_sigma",
    "border_weight",
    "dist_timeout",
    "data",
    "out",
    "resume",
    "threads",
    "lr_schedule",
    "progress",
    "seed",
    "warmup_steps",
    "config_version",
    "biounet_version",
    "stepz",
    "bogus",
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 5),
    st.integers(-(2**70), 2**70),
    st.sampled_from((float("nan"), float("inf"), float("-inf"), 1e308, -0.0, 1e-320, 0.5)),
    st.sampled_from(("", "x", "valid", "same", "all", "cpu", "cuda:99", "bf16", "1", "-1", "nan", "ü∂", "~")),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(_KEYS), inner, max_size=3)),
    max_leaves=6,
)


@st.composite
def yaml_texts(draw) -> str | bytes:
    """A config file's text: a mapping of known, unknown and versioning keys to values of any type,
    a non-mapping, or broken YAML."""
    import yaml

    form = draw(st.sampled_from(("mapping", "mapping", "mapping", "scalar", "list", "broken", "bytes")))
    if form == "broken":
        return draw(
            st.sampled_from(
                (
                    "a: [1, 2",
                    "key: {",
                    ": :",
                    "\t- x",
                    "a: b: c",
                    "*alias",
                    "!!python/object:os.system x",
                    "a: 1\na: 2",
                    "%YAML 9.9\n---\na: 1",
                    "[" * 200,
                    "- " * 500 + "x",
                )
            )
        )
    if form == "bytes":  # not necessarily UTF-8
        return draw(st.binary(max_size=40))
    if form == "scalar":
        return yaml.safe_dump(draw(_SCALARS))
    if form == "list":
        return yaml.safe_dump(draw(st.lists(_SCALARS, max_size=3)))
    values = draw(st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=5))
    if draw(st.booleans()):
        values["config_version"] = draw(st.one_of(st.integers(-2, 4), _SCALARS))
    if draw(st.booleans()):  # keep the run tiny and quick should the config be valid
        values.update(steps=1, base_width=4, depth=2, tile_size=60, batch_size=2)
    text = yaml.safe_dump(values, allow_unicode=True)
    if draw(st.booleans()):
        if draw(st.booleans()):
            text = text.replace("-", "_")
        else:
            text += draw(st.sampled_from(("\n: x", "\n1: 2", "\n? [a]\n: 1")))
    return text


# ------------------------------------------------------------------------------------ argv lists

NONSENSE = (
    "",
    " ",
    "-1",
    "0",
    "1",
    "-0",
    "10" * 15,
    "-" + "9" * 30,
    "nan",
    "inf",
    "-inf",
    "1e309",
    "3.5",
    "0x10",
    "ü∂ß",
    "none",
    "cuda:999",
    "cpu:0",
    "--",
    "all",
    "auto",
    "1,2",
    "0,0",
    "a,b",
    ",",
)
INFER_FLAGS = ("--precision", "--device", "--tile", "--tile-batch", "--threads")
TRAIN_FLAGS = (
    "--fold",
    "--folds",
    "--ignore-value",
    "--mask-threshold",
    "--depth",
    "--padding",
    "--in-channels",
    "--classes",
    "--tile-size",
    "--batch-size",
    "--micro-batch-size",
    "--memory-gib",
    "--lr",
    "--weight-decay",
    "--lr-schedule",
    "--warmup-steps",
    "--precision",
    "--device",
    "--threads",
    "--workers",
    "--seed",
    "--elastic-sigma",
    "--elastic-grid",
    "--brightness",
    "--contrast",
    "--border-weight",
    "--border-sigma",
    "--dice-loss-weight",
    "--dist-timeout",
    "--log-every",
    "--checkpoint-every",
    "--keep-checkpoints",
    "--val-every",
    "--progress",
    "--name",
    "--resume",
    "--init-from",
    "--base-width",
    "--config",
    "--data",
    "--out",
    "--steps",
)
# a valid value of these starts long work: they only ever get values that fail fast
_LONG = {
    "--steps": ("-1", "0", "nan", "", "x"),
    "--workers": ("-1", "x", ""),
    "--base-width": ("-1", "0", "x", ""),
    "--depth": ("-1", "0", "x", "99"),
    "--tile-size": ("-1", "0", "x", "1", "10" * 15),
    "--batch-size": ("-1", "0", "x"),
    "--elastic-grid": ("-1", "0", "x"),
    "--threads": ("-1", "x", ""),
    "--val-every": ("-1", "x"),
    "--warmup-steps": ("-1", "x"),
    "--micro-batch-size": ("-1", "3", "x"),
    "--memory-gib": ("-1", "nan", "inf", "x"),
    "--dist-timeout": ("-1", "0", "nan", "inf"),
}


@dataclass
class Workspace:
    """Files the argv strategies point at: a tiny dataset, a tiny trained run, junk."""

    root: Path
    data: Path = field(init=False)
    run: Path = field(init=False)
    junk: Path = field(init=False)
    text: Path = field(init=False)
    labels: Path = field(init=False)
    probs: Path = field(init=False)
    # small volumes (2 x 40 x 50) for predict's block-wise path, as specs
    volume: str = field(init=False)  # Zarr v3, uint8, chunks (1, 16, 16)
    ome: str = field(init=False)  # OME-Zarr 0.5, uint16, two levels
    h5: str = field(init=False)  # HDF5 float32 dataset /raw
    stack: str = field(init=False)  # multi-page uint16 TIFF
    channels: str = field(init=False)  # Zarr v2, (2 channels, 2, 40, 50) uint8

    def __post_init__(self):
        self.data, self.run = self.root / "data", self.root / "run"
        self.junk, self.text = self.root / "junk", self.root / "file.txt"
        self.labels, self.probs = self.root / "labels.tif", self.root / "probs.tif"
        self.volume, self.ome = str(self.root / "vol.zarr"), str(self.root / "img.ome.zarr")
        self.h5, self.stack = str(self.root / "vol.h5") + ":/raw", str(self.root / "stack.tif")
        self.channels = str(self.root / "channels.zarr")

    @classmethod
    def create(cls, root: str | Path) -> "Workspace":
        import tifffile

        from biounet.core.config import TrainConfig
        from biounet.data import write_synthetic_dataset
        from biounet.train.engine import train

        ws = cls(Path(root))
        ws.root.mkdir(parents=True, exist_ok=True)
        write_synthetic_dataset(ws.data, count=4, size=64)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            train(
                TrainConfig(
                    data=str(ws.data),
                    out=str(ws.run),
                    base_width=4,
                    depth=2,
                    tile_size=60,
                    batch_size=2,
                    steps=1,
                    folds=2,
                    fold="1",
                    precision="fp32",
                    device="cpu",
                    progress="off",
                    validation=False,
                    checkpoint_every=1,
                    log_every=1,
                ),
                quiet=True,
            )
        ws.junk.mkdir(exist_ok=True)
        for name, data in (
            ("a.png", b"not a png"),
            ("b.tif", b"II*\x00junk"),
            ("train-volume.tif", b"\x00" * 9),
            ("c.txt", b"hello"),
        ):
            (ws.junk / name).write_bytes(data)
        ws.text.write_text("just text\n")
        rng = np.random.default_rng(0)
        tifffile.imwrite(ws.labels, (rng.random((2, 32, 32)) < 0.7).astype(np.uint8) * 255)
        tifffile.imwrite(ws.probs, rng.random((2, 32, 32)).astype(np.float32))
        ws.write_volumes()
        return ws

    def write_volumes(self) -> None:
        import warnings

        import h5py
        import tifffile
        import zarr

        rng = np.random.default_rng(1)
        pixels = rng.integers(0, 256, (2, 40, 50), dtype=np.uint8)
        zarr.create_array(self.volume, data=pixels, chunks=(1, 16, 16))
        zarr.create_array(self.channels, data=np.stack([pixels, 255 - pixels]), chunks=(1, 1, 16, 16), zarr_format=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ome_zarr's deprecation notes
            from ome_zarr.writer import write_image

            write_image(
                pixels.astype(np.uint16) * 200,
                zarr.open_group(self.ome, mode="w"),
                axes="zyx",
                scale_factors=[2],
                storage_options={"chunks": (1, 16, 16)},
            )
        with h5py.File(self.h5.removesuffix(":/raw"), "w") as f:
            f.create_dataset("raw", data=rng.random((2, 40, 50)).astype(np.float32), chunks=(1, 20, 25))
        tifffile.imwrite(self.stack, pixels.astype(np.uint16) * 100)

    def paths(self, case: Path) -> tuple[str, ...]:
        """Path values of every sort: file, folder, missing, junk, under a file."""
        return (
            str(self.text),
            str(self.junk),
            str(case / "missing"),
            str(self.text / "under"),
            str(self.root),
            str(self.data),
            str(self.run),
            str(self.run / "last.pt"),
            str(self.labels),
            str(case / "fuzz.png"),
            str(case / "fuzz.tif"),
            "",
            "ü∂ß/x",
        )


def _values(ws: Workspace, case: Path):
    return st.one_of(
        st.sampled_from(NONSENSE),
        st.sampled_from(ws.paths(case)),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6),
    )


def _flags(draw, ws, case, names, long_ok=False, at_most=3) -> list[str]:
    out: list[str] = []
    for name in draw(st.lists(st.sampled_from(names), max_size=at_most)):
        if name in _LONG and not long_ok:
            value = draw(st.sampled_from(_LONG[name]))
        else:
            value = draw(_values(ws, case))
        out += [name, value] if draw(st.integers(0, 9)) else [name]  # sometimes the value is missing
    return out


TINY = [
    "--steps",
    "1",
    *TINY_NET,
    "--batch-size",
    "2",
    "--progress",
    "off",
    "--device",
    "cpu",
    "--precision",
    "fp32",
    "--no-validation",
    "--folds",
    "2",
    "--fold",
    "1",
    "--checkpoint-every",
    "1",
    "--log-every",
    "1",
]
COMMANDS = ("train", "predict", "evaluate", "export", "bench", "fetch", "cv", "score", "demo")


@st.composite
def argvs(draw, ws: Workspace, case: Path, command: str | None = None) -> list[str]:
    """An argv for one subcommand (random if ``command`` is None), with random flags and nonsense values.

    Images the argv names (case/fuzz.png, case/fuzz.tif) are written by :func:`fuzz_files`."""
    command = command or draw(st.sampled_from(COMMANDS))
    paths = st.sampled_from(ws.paths(case))
    if command in ("train", "demo", "cv"):
        data = draw(st.sampled_from((str(ws.data), str(ws.data), str(case / "fuzzdata"))) | paths)
        argv = [command, "--data", data, "--out", str(case / "out"), *TINY]
        if command == "cv":  # cv's --fold is the list of folds to run; the fold count stays 2
            argv = [
                command,
                "--data",
                data,
                "--out",
                str(case / "out"),
                *TINY[: TINY.index("--folds")],
                "--fold",
                draw(st.sampled_from(NONSENSE + ("0", "1", "0,1", "5"))),
            ]
        argv += _flags(draw, ws, case, TRAIN_FLAGS)
        if draw(st.booleans()):
            argv += ["--config", str(case / "config.yaml")]
        return argv
    if command in ("predict", "evaluate"):
        model = draw(
            st.sampled_from(
                (
                    ["--model", str(ws.run)],
                    ["--model", str(ws.run)],
                    ["--model", str(case / "fuzz.pt")],
                    ["--model", str(case / "fuzz.png")],
                )
            )
        )
        model[1] = draw(st.just(model[1]) | paths)
        if command == "predict":
            inputs = draw(
                st.lists(
                    st.sampled_from((str(case / "fuzz.png"), str(case / "fuzz.tif"))) | paths, min_size=1, max_size=2
                )
            )
            argv = ["predict", *inputs, *model, "--out", draw(st.just(str(case / "out")) | paths), "--device", "cpu"]
            argv += draw(st.lists(st.sampled_from(("--labels", "--overlay", "--tta")), max_size=2, unique=True))
        else:
            data = draw(st.sampled_from((str(ws.data), str(case / "fuzzdata"))) | paths)
            argv = ["evaluate", *model, "--data", data, "--device", "cpu"]
            argv += draw(
                st.lists(
                    st.sampled_from(
                        (["--fold", draw(_values(ws, case))], ["--allow-train-slices"], ["--json", draw(paths)])
                    ),
                    max_size=2,
                ).map(lambda ls: sum(ls, []))
            )
        return argv + _flags(draw, ws, case, INFER_FLAGS)
    if command == "export":
        ckpt = draw(st.sampled_from((str(ws.run), str(case / "fuzz.pt"))) | paths)
        fmt = draw(st.sampled_from(("onnx", "program", "tflite", "")))
        out = draw(st.sampled_from((str(case / "m.onnx"), str(case / "m.pt2"), str(case / "m.txt"))) | paths)
        opset = draw(st.sampled_from(("18", "17")) | st.sampled_from(NONSENSE))
        return ["export", "--model", ckpt, "--format", fmt, "--out", out, "--opset", opset]
    if command == "bench":  # always one value that is refused before any work starts
        bad = draw(
            st.sampled_from(
                (
                    ["--device", draw(st.sampled_from(("gpu", "", "cuda:x", "ü")))],
                    ["--micro-sweep", draw(st.sampled_from(("x", "1,,a", "0", "-1", "3", "1e3")))],
                    [
                        draw(
                            st.sampled_from(
                                ("--depth", "--repeats", "--tile-size", "--batch-size", "--tile-batch", "--base-width")
                            )
                        ),
                        draw(st.sampled_from(("0", "-1", "-" + "9" * 30, "x", "", "nan"))),
                    ],
                    ["--warmup", draw(st.sampled_from(("-1", "x")))],
                    ["--precision", "fp8"],
                    ["--json", str(ws.junk)],
                    ["--nonsense"],
                )
            )
        )
        extra = draw(
            st.lists(
                st.sampled_from(
                    (
                        ["--no-baseline"],
                        ["--no-memory"],
                        ["--json", str(case / "b.json")],
                        ["--threads", "1"],
                        ["--compile"],
                    )
                ),
                max_size=2,
            )
        )
        return ["bench", *sum(extra, []), *bad]
    if command == "fetch":
        target = draw(st.sampled_from((str(case / "junkcopy"), str(case / "new"))) | paths)
        urls = ["--url", "http://127.0.0.1:9/"]
        if draw(st.booleans()):
            urls = [
                "--url",
                draw(
                    st.sampled_from(
                        (
                            "",
                            "nonsense",
                            "http://",
                            "ftp://127.0.0.1:9/",
                            "file:///nonexistent/",
                            "http://127.0.0.1:0/",
                            "http://[::1",
                            "ü://x",
                        )
                    )
                ),
            ] + urls
        timeout = draw(st.sampled_from(("2", "0.5")) | st.sampled_from(NONSENSE))
        dataset = draw(st.sampled_from(("isbi2012", "isbi2012", "mnist", "")))
        return ["fetch", dataset, target, *urls, "--timeout", timeout]
    if command == "score":
        labels = draw(st.sampled_from((str(ws.labels), str(case / "fuzz.tif"))) | paths)
        probs = draw(st.sampled_from((str(ws.probs), str(case / "fuzz.tif"), str(case / "fuzz2.tif"))) | paths)
        argv = ["score", labels, probs]
        if draw(st.booleans()):
            indices = st.sampled_from(("0", "1", "0,1", "2", "-1", "0,0")) | st.sampled_from(NONSENSE)
            argv += ["--indices", draw(indices)]
        if draw(st.booleans()):
            argv += ["--polarity", draw(st.sampled_from(("membrane", "cell", "x")))]
        if draw(st.booleans()):
            argv += ["--json", draw(st.just(str(case / "s.json")) | paths)]
        return argv
    raise ValueError(command)


def _bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")


@st.composite
def fuzz_files(draw) -> dict[str, bytes]:
    """The files an argv may name in its case folder: images, a second TIFF, a config, a checkpoint."""
    files = {
        "fuzz.png": draw(image_files((".png",)))[1],
        "fuzz.tif": draw(image_files((".tif",)))[1],
        "fuzz2.tif": draw(image_files((".tif",)))[1],
        "config.yaml": _bytes(draw(yaml_texts())),
    }
    for name in ("fuzzdata/images/a", "fuzzdata/masks/a"):
        suffix, data, _ = draw(image_files())
        files[name + suffix] = data
    return files


def write_files(case: Path, files: dict[str, bytes], ws: Workspace | None = None, ckpt_damage=None) -> None:
    for name, data in files.items():
        path = case / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if ws is not None:
        shutil.copytree(ws.junk, case / "junkcopy", dirs_exist_ok=True)
        src = (ws.run / "last.pt").read_bytes()
        if ckpt_damage is not None:  # (kind, position fraction, byte)
            kind, frac, byte = ckpt_damage
            at = int(frac * (len(src) - 1))
            src = src[:at] if kind == "truncate" else src[:at] + bytes([byte]) + src[at + 1 :]
        (case / "fuzz.pt").write_bytes(src)


checkpoint_damage = st.tuples(st.sampled_from(("truncate", "flip")), st.floats(0, 1), st.integers(0, 255))


# ------------------------------------------------------------------------------------ volume stores

VOLUME_KINDS = ("zarr3", "zarr2", "ome-zarr", "ome-zarr-0.4", "hdf5", "tiff")
VOLUME_DTYPES = ("uint8", "uint16", "int16", "float32", "float64", "bool")
_ZARR_DAMAGE = (
    "none",
    "chunk-junk",
    "chunk-truncate",
    "chunk-delete",
    "meta-junk",
    "meta-truncate",
    "meta-json",
    "meta-json",
    "flip",
)
VOLUME_DAMAGE = {
    "zarr3": _ZARR_DAMAGE,
    "zarr2": _ZARR_DAMAGE,
    "ome-zarr": (*_ZARR_DAMAGE, "ome", "ome", "ome", "level-delete"),
    "ome-zarr-0.4": (*_ZARR_DAMAGE, "ome", "ome", "ome", "level-delete"),
    "hdf5": ("none", "truncate", "truncate", "flip", "junk-range"),
    "tiff": ("none", "truncate", "truncate", "flip", "junk-range"),
}
VOLUME_AXES = (
    "zyx",
    "yx",
    "czyx",
    "zcyx",
    "yxc",
    "zyxc",
    "tzyx",
    "xyz",
    "zxy",
    "zyxx",
    "zy",
    "abc",
    "",
    "ZYX",
    "z y x",
)
DEL = "<delete>"  # a JSON edit that removes the key
# values a metadata key is set to: wrong types, wrong lengths, negative, huge, names of other dtypes
JSON_NONSENSE = (
    DEL,
    None,
    -1,
    0,
    1,
    2**64,
    1.5,
    float("nan"),
    "",
    "x",
    "|u1",
    "<f8",
    "int8",
    "float32",
    "bool",
    "complex64",
    "<U4",
    True,
    [],
    {},
    [-1],
    [0, 0, 0],
    [1, 2],
    [1, 1, 1, 1],
    [1, 100_000, 100_000],
    ["a", "b", "c"],
    [None],
    {"id": "nonsense"},
    [{"name": "bytes"}],
    [{"name": "zstd", "configuration": {"level": "x"}}],
    {"name": "regular", "configuration": {"chunk_shape": [0, 0, 0]}},
)
# (path inside the image's multiscales entry, or inside the "ome" mapping when it starts with "/", value)
OME_EDITS = (
    (("axes",), ["z", "y"]),
    (("axes",), ["q", "y", "x"]),
    (("axes",), [{"name": 1}, {"name": "y"}, {"name": "x"}]),
    (("axes",), "zyx"),
    (("axes",), None),
    (("axes",), [{"type": "space"}] * 3),
    (("axes",), [{"name": "y"}, {"name": "x"}, {"name": "z"}]),
    (("axes",), [{"name": "c"}, {"name": "y"}, {"name": "x"}]),
    (("axes",), []),
    (("axes",), [{"name": n} for n in "tzyx"]),
    (("axes",), [{"name": "z"}, {"name": "y"}, {"name": "y"}]),
    (("axes",), DEL),
    (("datasets",), DEL),
    (("datasets",), []),
    (("datasets",), "s0"),
    (("datasets",), [None]),
    (("datasets",), [{}]),
    (("datasets", 0, "path"), "nope"),
    (("datasets", 0, "path"), ""),
    (("datasets", 0, "path"), None),
    (("datasets", 0, "path"), 1),
    (("datasets", 0, "path"), "../elsewhere"),
    (("datasets", 0, "path"), "/abs"),
    (("datasets", 0, "path"), "s0/c"),
    (("datasets", 0, "path"), "s1"),
    (("datasets", 0, "path"), "."),
    (("datasets", 0, "path"), DEL),
    (("datasets", -1, "path"), "missing-level"),
    (("datasets", 0, "coordinateTransformations"), [{"type": "scale", "scale": ["a", "b", "c"]}]),
    (("datasets", 0, "coordinateTransformations"), [{"type": "scale", "scale": [float("nan"), 0, -1]}]),
    (("datasets", 0, "coordinateTransformations"), [{"type": "scale", "scale": [1, 2]}]),
    (("datasets", 0, "coordinateTransformations"), [{"type": "scale", "scale": [[1], [2], [3]]}]),
    (("datasets", 0, "coordinateTransformations"), [{"type": "scale", "scale": None}]),
    (("datasets", 0, "coordinateTransformations"), [{"type": "scale", "scale": "abc"}]),
    (("datasets", 0, "coordinateTransformations"), [{"type": "scale"}]),
    (("datasets", 0, "coordinateTransformations"), "x"),
    (("datasets", 0, "coordinateTransformations"), [None]),
    (("coordinateTransformations",), [{"type": "scale", "scale": ["x", 1, 1]}]),
    (("coordinateTransformations",), [{"type": "scale", "scale": [1e308, 1e308, 1e308]}]),
    (("axes", 1, "unit"), ["nanometer"]),
    (("axes", 2, "unit"), {"x": 1}),
    (("/multiscales",), []),
    (("/multiscales",), {}),
    (("/multiscales",), "x"),
    (("/multiscales",), [None]),
    (("/multiscales",), [[]]),
    (("/multiscales",), None),
    (("/multiscales",), [{"datasets": [{"path": "s0"}], "axes": [{"name": n} for n in "zyx"]}] * 2),
    (("/version",), "9.9"),
    (("/",), "x"),
    (("/",), []),
)


@st.composite
def volume_cases(draw) -> dict:
    """A volume store to write and then damage, with the ``level`` and ``axes`` to open it with: a
    description (JSON-able but for its ``junk`` bytes) that :func:`write_volume` replays."""
    kind = draw(st.sampled_from(VOLUME_KINDS))
    dtype = draw(st.sampled_from(VOLUME_DTYPES))
    ome = kind.startswith("ome")
    if ome and dtype == "bool":
        dtype = "uint8"  # ome_zarr's pyramid refuses bool
    z = draw(st.integers(1, 3))
    y, x = draw(st.integers(4 if ome else 1, 24)), draw(st.integers(4 if ome else 1, 24))
    if kind == "tiff":
        shape = [z, y, x, 3] if draw(st.integers(0, 4)) == 0 else [z, y, x]
    elif ome:
        shape = [z, y, x]
    else:
        shape = draw(st.sampled_from(([z, y, x], [z, y, x], [z, y, x], [y, x], [2, z, y, x])))
    chunks = [draw(st.integers(min(4, n), n)) for n in shape]
    case = {
        "kind": kind,
        "dtype": dtype,
        "shape": shape,
        "chunks": chunks,
        "compressed": draw(st.booleans()),
        "tiled": draw(st.booleans()),
        "imagej": dtype in ("uint8", "uint16", "int16", "float32") and len(shape) == 3 and draw(st.booleans()),
        "levels": draw(st.sampled_from((1, 2))) if ome else 1,
        "nan": dtype.startswith("float") and draw(st.integers(0, 3)) == 0,
        "seed": draw(st.integers(0, 2**16)),
        "inner": draw(st.sampled_from(("",) * 8 + ("nope", "/", "s0" if ome else "raw", "a/b"))),
        "damage": draw(st.sampled_from(VOLUME_DAMAGE[kind])),
        "which": draw(st.integers(0, 2**16)),  # which file, key or level (modulo how many there are)
        "at": draw(st.floats(0, 1)),  # where a truncation cuts, as a fraction of the length
        "junk": draw(st.binary(max_size=48)),
        "flips": draw(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8)),
        "value": draw(st.sampled_from(JSON_NONSENSE)),
        "ome_edit": draw(st.integers(0, len(OME_EDITS) - 1)),
        "level": draw(st.sampled_from((0,) * 8 + (1, 2, -1))),
        "axes": draw(st.sampled_from((None,) * 10 + VOLUME_AXES)),
    }
    return case


def volume_pixels(case: dict) -> np.ndarray:
    rng = np.random.default_rng(case["seed"])
    shape, dtype = tuple(case["shape"]), case["dtype"]
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith("float"):
        a = (rng.standard_normal(shape) * 100).astype(dtype)
        if case["nan"]:
            a.reshape(-1)[rng.integers(0, a.size)] = np.nan
        return a
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def _volume_files(root: Path, metadata: bool) -> list[Path]:
    names = ("zarr.json", ".zarray", ".zattrs", ".zgroup")
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    return [p for p in files if (p.name in names) == metadata]


def _json_paths(value, path=()) -> list[tuple]:
    """Every key path in a JSON value (the root too), depth-first."""
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _json_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _json_paths(v, (*path, i))
    return out


def _json_set(doc, path: tuple, value):
    """``doc`` with the value at ``path`` replaced by ``value`` (DEL removes it; a missing key is added)."""
    if not path:
        return {} if value == DEL else value
    parent = doc
    for key in path[:-1]:
        try:
            parent = parent[key]
        except (KeyError, IndexError, TypeError):
            return doc  # the path does not exist in this document: left alone
    key = path[-1]
    try:
        if value == DEL:
            del parent[key]
        else:
            parent[key] = value
    except (KeyError, IndexError, TypeError):
        pass
    return doc


def _write_clean_volume(case: dict, folder: Path, pixels: np.ndarray) -> tuple[Path, str]:
    """The valid store of ``case`` in ``folder``: (its file or folder, its spec before ``inner``)."""
    import warnings

    import h5py
    import tifffile
    import zarr

    kind, chunks = case["kind"], tuple(case["chunks"])
    if kind in ("zarr3", "zarr2"):
        path = folder / "vol.zarr"
        options = {} if case["compressed"] else {"compressors": None}
        array = zarr.create_array(
            str(path),
            shape=pixels.shape,
            dtype=pixels.dtype,
            chunks=chunks,
            zarr_format=3 if kind == "zarr3" else 2,
            **options,
        )
        array[...] = pixels
        return path, str(path)
    if kind.startswith("ome"):
        path = folder / "vol.ome.zarr"
        v04 = kind == "ome-zarr-0.4"
        group = zarr.open_group(str(path), mode="w", zarr_format=2 if v04 else 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ome_zarr's deprecation notes
            from ome_zarr.format import FormatV04
            from ome_zarr.writer import write_image

            write_image(
                pixels,
                group,
                axes="zyx",
                scale_factors=[2] * (case["levels"] - 1),
                fmt=FormatV04() if v04 else None,
                storage_options={"chunks": chunks},
            )
        return path, str(path)
    if kind == "hdf5":
        path = folder / "vol.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset(
                "raw",
                data=pixels,
                chunks=chunks if case["tiled"] else None,
                compression="gzip" if case["compressed"] and case["tiled"] else None,
            )
            if case["inner"] == "a/b":
                f.create_dataset("a/b", data=pixels[..., :1])
        return path, str(path)
    path = folder / "vol.tif"
    rgb = pixels.ndim == 4
    options = {"photometric": "rgb" if rgb else "minisblack"}
    if case["imagej"]:
        options.update(imagej=True, metadata={"axes": "ZYX"})  # else ImageJ takes a 3D array's first axis as C
    else:
        options["compression"] = "zlib" if case["compressed"] else None
        if case["tiled"] and pixels.shape[1] >= 16 and pixels.shape[2] >= 16:
            options["tile"] = (16, 16)
    tifffile.imwrite(path, pixels.astype(np.uint8) if pixels.dtype == bool else pixels, **options)
    return path, str(path)


def write_volume(case: dict, folder: Path) -> tuple[str, np.ndarray | None]:
    """Write the store ``case`` describes into ``folder`` and damage it: (the spec to open, the pixels
    a read must give for an undamaged store, else None)."""
    pixels = volume_pixels(case)
    folder.mkdir(parents=True, exist_ok=True)
    path, spec = _write_clean_volume(case, folder, pixels)
    if case["inner"]:
        spec += (":/" if case["kind"] == "hdf5" else "/") + case["inner"].lstrip("/")
    damage, which, at = case["damage"], case["which"], case["at"]
    if damage.startswith("chunk-"):
        chunks = _volume_files(path, metadata=False)
        if chunks:
            target = chunks[which % len(chunks)]
            if damage == "chunk-delete":
                target.unlink()
            elif damage == "chunk-truncate":
                data = target.read_bytes()
                target.write_bytes(data[: int(at * max(len(data) - 1, 0))])
            else:
                target.write_bytes(case["junk"])
    elif damage.startswith("meta-"):
        metas = _volume_files(path, metadata=True)
        target = metas[which % len(metas)]
        data = target.read_bytes()
        if damage == "meta-junk":
            target.write_bytes(case["junk"])
        elif damage == "meta-truncate":
            target.write_bytes(data[: int(at * max(len(data) - 1, 0))])
        else:
            doc = json.loads(data)
            paths = _json_paths(doc)
            doc = _json_set(doc, paths[int(at * (len(paths) - 1))], case["value"])
            target.write_text(json.dumps(doc))
    elif damage == "ome":
        meta = path / ("zarr.json" if case["kind"] == "ome-zarr" else ".zattrs")
        doc = json.loads(meta.read_text())
        where = ("attributes", "ome") if case["kind"] == "ome-zarr" else ()
        keys, value = OME_EDITS[case["ome_edit"]]
        if keys[0].startswith("/"):
            rest = tuple(k for k in (keys[0][1:], *keys[1:]) if k != "")
            doc = _json_set(doc, (*where, *rest), value)
        else:
            doc = _json_set(doc, (*where, "multiscales", 0, *keys), value)
        meta.write_text(json.dumps(doc))
    elif damage == "level-delete":
        levels = sorted(p for p in path.iterdir() if p.is_dir())
        shutil.rmtree(levels[which % len(levels)])
    elif damage in ("truncate", "flip", "junk-range"):
        files = _volume_files(path, metadata=False) + _volume_files(path, metadata=True)
        target = files[which % len(files)]
        buf = bytearray(target.read_bytes())
        if damage == "truncate":
            buf = buf[: int(at * max(len(buf) - 1, 0))]
        elif damage == "flip":
            for frac, byte in case["flips"]:
                if buf:
                    buf[int(frac * (len(buf) - 1))] = byte
        else:
            start = int(at * len(buf))
            buf[start : start + len(case["junk"])] = case["junk"]
        target.write_bytes(bytes(buf))
    clean = damage == "none" and not case["inner"] and case["level"] == 0 and case["axes"] in (None, "zyx")
    if not clean or (pixels.ndim != 3 and case["kind"] != "tiff"):
        return spec, None
    if case["kind"] == "tiff" and 1 in pixels.shape[1:3]:
        return spec, None  # tifffile labels a stack of 1-pixel-wide pages YXQ (a guess --axes overrides)
    return spec, pixels.astype(np.uint8) if case["kind"] == "tiff" and pixels.dtype == bool else pixels


ROI_ALPHABET = "0123456789:,- \tabxyz\u0663"  # \u0663: an Arabic-Indic 3, a digit to int()


@st.composite
def roi_inputs(draw) -> tuple[str, tuple[int, int, int], bool | None]:
    """(--roi text, volume shape, whether the text is valid by parse_roi's documented grammar, or None
    when the text is free-form and only the outcome's form is checked)."""
    shape = (draw(st.integers(1, 40)), draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    form = draw(st.sampled_from(("text", "text", "parts", "parts", "parts", "long")))
    if form == "text":
        return draw(st.text(ROI_ALPHABET, max_size=24)), shape, None
    count = draw(st.sampled_from((3, 3, 3, 2, 2, 1, 4)))
    sizes = shape if count != 2 else shape[1:]
    parts, valid = [], count in (2, 3)
    for i in range(count):
        size = sizes[i] if i < len(sizes) else 1
        bounds = st.none() | st.integers(0, size) | st.integers(0, size) | st.integers(-2, size + 2)
        start, stop = draw(bounds), draw(bounds)
        if start is not None and stop is not None and draw(st.booleans()):  # mostly a plain range
            start, stop = min(start, stop), max(start, stop) + (start == stop)
        colon = draw(st.booleans()) if stop is None else True
        pad = draw(st.sampled_from(("", "", " ")))
        parts.append(f"{pad}{'' if start is None else start}{':' if colon else ''}{'' if stop is None else stop}{pad}")
        if start is None and not colon:
            valid = False
            continue
        lo = start or 0
        hi = (size if stop is None else stop) if colon else lo + 1
        valid = valid and (start is None or start >= 0) and (stop is None or stop >= 0) and 0 <= lo < hi <= size
    text = ",".join(parts)
    if form == "long":  # a bound of more digits than int() converts by default (4300)
        text = text.replace(draw(st.sampled_from(("0", "1", ":"))), "9" * 4400 + ":", 1) if text else "9" * 4400
        return text, shape, None
    return text, shape, valid


# predict's volume options: (values that may work on the workspace's 2 x 40 x 50 volumes, values that must fail)
VOLUME_FLAGS = {
    "--roi": (
        ("0:1,0:40,0:50", "1:2,5:37,3:50", "0:2,:,:", "1,10:20,40:", "10:30,0:17", "0:1,0:20,0:20", ":,:,:", ""),
        ("0:1,0:0,0:1", "0:1,-5:3,0:1", "x", "0:1,0:41,0:50", "2:3,0:40,0:50", "1:0,0:1,0:1", "0:1,0:40,0:50,0:1"),
    ),
    "--axes": (("zyx", "zyx", "zxy", "czyx", "tzyx"), ("yx", "zyxx", "abc", "", "ZYX", "cyx", "yxc")),
    "--level": (("0", "0", "1"), ("2", "-1", "x", "99999999999999999999")),
    "--chunks": (
        ("16,16", "32,48", "64,64", "48,16", " 16 , 32 ", "1024,1024"),
        ("15,16", "0,0", "16", "a,b", "-16,16", "16,16,16", "4,4", ""),
    ),
    "--dtype": (("uint8", "float16", "float32"), ("int8", "")),
    "--format": (("auto", "ome-zarr", "tiff"), ("png",)),
    "--tile": (("60", "64", "76", "92", "44", "61"), ("0", "-1", "x", "1", "9000")),
    "--tile-batch": (("1", "2", "4"), ("0", "-1")),
    "--compression": (("zstd", "lz4", "none"), ("gzip",)),
    "--ngff": (("0.5", "0.4"), ("0.6",)),
}
# what happens to the output store between a first and a second run into the same --out
OUT_DAMAGE = ("none", "none", "interrupt", "interrupt", "chunk-junk", "root-junk", "done-dir", "stale-tmp")


@st.composite
def volume_argvs(draw, ws: "Workspace", case: Path, out: Path | None = None) -> list[str]:
    """``predict`` on one (sometimes two) of the workspace's small volumes with random volume options,
    valid and not; ``out`` (default case/out) is the output folder."""
    h5_file = ws.h5.removesuffix(":/raw")
    choices = st.sampled_from(
        (ws.volume,) * 4
        + (ws.ome,) * 2
        + (ws.h5, h5_file, ws.stack, ws.channels, f"{ws.volume}/nope", f"{h5_file}:/nope", f"{ws.ome}/s1")
        + (str(case / "missing.zarr"), str(ws.junk / "b.tif"), str(ws.text))
    )
    inputs = [draw(choices)] + ([draw(choices)] if draw(st.integers(0, 5)) == 0 else [])
    argv = ["predict", *inputs, "--model", str(ws.run), "--out", str(out or case / "out"), "--device", "cpu"]
    for name in draw(st.lists(st.sampled_from(sorted(VOLUME_FLAGS)), max_size=4, unique=True)):
        valid, invalid = VOLUME_FLAGS[name]
        argv += [name, draw(st.sampled_from(invalid if draw(st.integers(0, 4)) == 0 else valid))]
    for switch, odds in (("--labels", 3), ("--tta", 6), ("--overlay", 12)):  # --tta: 8x the work
        if draw(st.integers(1, odds)) == 1:
            argv.append(switch)
    return argv


@st.composite
def volume_runs(draw, ws: "Workspace", case: Path) -> tuple[list[list[str]], tuple[str, int, bytes]]:
    """One or two ``predict`` command lines into one --out (the second: the same again, a resume, or
    other settings), and the damage done to the output store between them (see :func:`damage_output`)."""
    first = draw(volume_argvs(ws, case))
    runs = [first]
    if draw(st.booleans()):
        runs.append(first if draw(st.booleans()) else draw(volume_argvs(ws, case)))
    return runs, (draw(st.sampled_from(OUT_DAMAGE)), draw(st.integers(0, 2**16)), draw(st.binary(max_size=32)))


def damage_output(out: Path, damage: str, which: int, junk: bytes) -> None:
    """Change each OUT/*.ome.zarr as a killed run or a damaged disk would: "interrupt" (not complete, no
    pyramid, some blocks not done), "chunk-junk" (a level-0 chunk of the image overwritten, the store not
    complete), "root-junk" (its root metadata replaced by junk), "done-dir" (the done records removed),
    "stale-tmp" (a temporary build folder of a dead process left beside it)."""
    for store in sorted(Path(out).glob("*.ome.zarr")):
        meta = next((store / n for n in ("zarr.json", ".zattrs") if (store / n).is_file()), None)
        if damage in ("interrupt", "chunk-junk") and meta is not None:
            doc = json.loads(meta.read_text())
            attrs = doc.get("attributes", doc) if meta.name == "zarr.json" else doc
            if isinstance(attrs.get("biounet"), dict):
                attrs["biounet"].update(complete=False, finished_levels=[])
            meta.write_text(json.dumps(doc))
            done = sorted((store / ".biounet" / "done").glob("*"))
            for marker in done[which % (len(done) + 1) :] if damage == "interrupt" else ():
                marker.unlink()
            chunks = sorted(p for p in (store / "0").rglob("*") if p.is_file() and not p.name.startswith((".", "zarr")))
            if damage == "chunk-junk" and chunks:
                chunks[which % len(chunks)].write_bytes(junk)
        elif damage == "root-junk" and meta is not None:
            meta.write_bytes(junk)
        elif damage == "done-dir":
            shutil.rmtree(store / ".biounet" / "done", ignore_errors=True)
        elif damage == "stale-tmp":
            (store.parent / f".{store.name}.tmp-host-{2**22 + which}" / "0").mkdir(parents=True, exist_ok=True)


# ------------------------------------------------------------------------------------ the checker


class Hang(BaseException):
    """Raised by the timer in the input that ran past the time limit."""


@contextlib.contextmanager
def time_limit(seconds: float):
    def alarm(signum, frame):
        raise Hang(f"no answer within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def _fd2_captured():
    """Capture what is written to file descriptor 2 itself (C code, or logging handlers that hold the
    original sys.stderr), as a user's terminal would show it."""
    box = io.StringIO()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield box
        finally:
            try:
                sys.__stderr__.flush()
            except Exception:  # noqa: BLE001
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box.write(tmp.read().decode("utf-8", "replace"))


@dataclass
class Outcome:
    status: str  # "ok", "clean", "failure", "hang"
    detail: str = ""
    code: int | None = None
    stderr: str = ""


def check_cli(argv: list[str], limit: float = 30.0, expect_codes: tuple[int, ...] = (1, 2)) -> Outcome:
    """Run ``biounet.cli.main(argv)`` in-process and classify what it did."""
    from biounet.cli import main

    err, out = io.StringIO(), io.StringIO()
    code = None
    try:
        with (
            time_limit(limit),
            _fd2_captured() as raw,
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(out),
        ):
            try:
                code = main(list(argv))
            except SystemExit as exc:  # argparse: --help (0) or a bad command line (2)
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Hang as exc:
        return Outcome("hang", str(exc), None, err.getvalue())
    except BaseException as exc:  # noqa: BLE001 - anything escaping main is what we look for
        return Outcome("failure", "".join(traceback.format_exception(exc)), None, err.getvalue())
    text = raw.getvalue() + err.getvalue()  # what reached file descriptor 2 directly, then sys.stderr
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if code == 0:
        if "Traceback" in text:
            return Outcome("failure", "a traceback on stderr of a successful run", code, text)
        return Outcome("ok", "", code, text)
    if code not in (1, 2):
        return Outcome("failure", f"exit status {code!r}", code, text)
    errors = [ln for ln in lines if ": error:" in ln]
    if (
        "Traceback" in text
        or len(errors) != 1
        or lines[-1] != errors[-1]
        or not all(ln.startswith("biounet") for ln in lines)
    ):  # notices ("biounet: ...") may come first
        return Outcome("failure", "the error is not one line starting with 'biounet'", code, text)
    if code not in expect_codes:
        return Outcome("failure", f"exit status {code}, expected {expect_codes}", code, text)
    return Outcome("clean", errors[-1], code, text)


def check_valid_image(pixels) -> str | None:
    if not isinstance(pixels, np.ndarray):
        return f"returned a {type(pixels).__name__}, not an array"
    if pixels.size == 0:
        return f"returned an empty array {pixels.shape}"
    return None


def check_readers(
    path: Path, in_channels: int = 1, classes: int = 2, threshold: float | None = None, limit: float = 30.0
) -> Outcome:
    """read_image_file, then scale_image and mask_to_classes on what it returns: each must give a valid
    array or raise a BiounetError."""
    from biounet.core.errors import BiounetError
    from biounet.data.readers import mask_to_classes, read_image_file, scale_image

    step = "read_image_file"
    try:
        with time_limit(limit):
            pixels = read_image_file(path)
            bad = check_valid_image(pixels)
            if bad:
                return Outcome("failure", f"read_image_file {bad}")
            errors = []
            for step, call in (
                ("scale_image", lambda: scale_image(pixels, in_channels, "x")),
                ("mask_to_classes", lambda: mask_to_classes(pixels, classes, None, "m", threshold)),
            ):
                try:
                    out = call()
                except BiounetError as exc:
                    errors.append(str(exc))
                    continue
                if step == "scale_image":
                    if (
                        out.dtype != np.float32
                        or out.ndim != 3
                        or out.shape[0] != in_channels
                        or not np.all(np.isfinite(out))
                        or out.min() < -1.0001
                        or out.max() > 1.0001
                    ):
                        return Outcome(
                            "failure",
                            f"scale_image gave {out.dtype} {out.shape} range {out.min() if out.size else None}..",
                        )
                elif out.dtype != np.int16 or out.ndim != 2 or out.size and (out.min() < -1 or out.max() >= classes):
                    return Outcome("failure", f"mask_to_classes gave {out.dtype} {out.shape}")
    except Hang as exc:
        return Outcome("hang", f"{step}: {exc}")
    except BiounetError as exc:
        return Outcome("clean", str(exc).splitlines()[0] if str(exc) else "")
    except BaseException as exc:  # noqa: BLE001
        return Outcome("failure", f"{step}: " + "".join(traceback.format_exception(exc)))
    if any("\n" in e for e in errors):
        return Outcome("failure", "a multi-line error message")
    return Outcome("ok" if not errors else "clean", "; ".join(errors)[:200])


def check_config(text: str, path: Path, limit: float = 30.0) -> Outcome:
    """load_yaml, from_dict and validate on a config file: a TrainConfig or a ConfigError."""
    from biounet.core.config import from_dict, load_yaml
    from biounet.core.errors import ConfigError

    path.write_bytes(_bytes(text))
    try:
        with time_limit(limit):
            from_dict(load_yaml(path), source=str(path)).validate()
    except Hang as exc:
        return Outcome("hang", str(exc))
    except ConfigError as exc:
        if "\n" in str(exc).strip():
            return Outcome("failure", "a multi-line ConfigError: " + str(exc)[:300])
        return Outcome("clean", str(exc)[:200])
    except BaseException as exc:  # noqa: BLE001
        return Outcome("failure", "".join(traceback.format_exception(exc)))
    return Outcome("ok")


READ_CAP = 16 * 2**20  # bytes of one slice read whole; a damaged header may declare far more


def _check_volume_reads(volume, expect: np.ndarray | None) -> str | None:
    """Read every slice of ``volume`` whole (a slice declared larger than READ_CAP: its first 64 x 64
    pixels), then its value range; a problem as text, or None."""
    shape, channels, dtype = volume.shape, volume.channels, np.dtype(volume.dtype)
    if len(shape) != 3 or not all(isinstance(n, int) and n >= 1 for n in shape) or channels < 1:
        return f"open_volume gave shape {shape}, {channels} channel(s)"
    zs = range(shape[0]) if shape[0] <= 8 else (0, 1, shape[0] - 1)
    whole = shape[1] * shape[2] * channels * dtype.itemsize <= READ_CAP
    h, w = (shape[1], shape[2]) if whole else (min(shape[1], 64), min(shape[2], 64))
    for z in zs:
        pixels = volume.read(z, slice(None) if whole else slice(0, h), slice(None) if whole else slice(0, w))
        want = (h, w) if channels == 1 else (h, w, channels)
        if not isinstance(pixels, np.ndarray) or pixels.shape != want or pixels.dtype != dtype:
            got = (type(pixels).__name__, getattr(pixels, "shape", None), getattr(pixels, "dtype", None))
            return f"read(z={z}) gave {got}, not an array {want} {dtype}"
        if expect is not None and not np.array_equal(pixels, expect[z], equal_nan=dtype.kind == "f"):
            return f"read(z={z}) of an undamaged store differs from the pixels written"
        if not whole and dtype.kind == "f":
            continue  # value_range would read the whole (huge) slice
        lo, hi = volume.value_range(z)
        if not (isinstance(lo, float) and isinstance(hi, float) and np.isfinite([lo, hi]).all() and lo <= hi):
            return f"value_range(z={z}) gave {(lo, hi)!r}"
    return None


def check_volume(spec: str, level: int = 0, axes: str | None = None, expect=None, limit: float = 30.0) -> Outcome:
    """open_volume, then every slice read whole and its value_range: arrays of the declared shape and
    dtype (the written pixels when ``expect`` is given), or a one-line BiounetError."""
    from biounet.core.errors import BiounetError
    from biounet.io.volumes import open_volume

    step = "open_volume"
    try:
        with time_limit(limit):
            volume = open_volume(spec, level, axes)
            step = "read/value_range"
            try:
                bad = _check_volume_reads(volume, expect)
            finally:
                step = "close"
                volume.close()
    except Hang as exc:
        return Outcome("hang", f"{step}: {exc}")
    except BiounetError as exc:
        if "\n" in str(exc).strip():
            return Outcome("failure", f"{step}: a multi-line {type(exc).__name__}: {str(exc)[:300]}")
        return Outcome("clean", f"{type(exc).__name__}: {str(exc)[:200]}")
    except BaseException as exc:  # noqa: BLE001
        return Outcome("failure", f"{step}: " + "".join(traceback.format_exception(exc)))
    return Outcome("failure", bad) if bad else Outcome("ok")


def check_roi(text: str, shape: tuple[int, int, int], valid: bool | None = None) -> Outcome:
    """parse_roi: three slices with 0 <= start < stop <= size (step None), or a one-line ConfigError;
    ``valid`` (when known) says which of the two the documented grammar expects."""
    from biounet.core.errors import ConfigError
    from biounet.io.volumes import parse_roi

    try:
        roi = parse_roi(text, shape)
    except ConfigError as exc:
        if "\n" in str(exc).strip():
            return Outcome("failure", f"a multi-line ConfigError: {str(exc)[:300]}")
        if valid:
            return Outcome("failure", f"refused a valid ROI: {exc}")
        return Outcome("clean", str(exc)[:200])
    except BaseException as exc:  # noqa: BLE001
        return Outcome("failure", "".join(traceback.format_exception(exc)))
    if not (isinstance(roi, tuple) and len(roi) == 3 and all(isinstance(s, slice) for s in roi)):
        return Outcome("failure", f"parse_roi gave {roi!r}")
    for s, size in zip(roi, shape, strict=True):
        if not (type(s.start) is int and type(s.stop) is int and s.step is None and 0 <= s.start < s.stop <= size):
            return Outcome("failure", f"parse_roi gave {roi!r} for shape {shape}")
    if valid is False:
        return Outcome("failure", f"accepted an invalid ROI as {roi!r}")
    return Outcome("ok")


def _option(argv: list[str], name: str, default=None):
    """The last value of ``name`` in ``argv`` (as argparse takes it)."""
    found = default
    for i, arg in enumerate(argv[:-1]):
        if arg == name:
            found = argv[i + 1]
    return found


def check_volume_store(argv: list[str]) -> str | None:
    """After ``predict`` exited 0: each volume input's OUT/<name>.ome.zarr opens with open_volume, holds
    the --roi's shape in the --dtype, probabilities in [0, 1], a 0/1 mask (and cells with --labels) and is
    marked complete; a problem as text, or None."""
    import zarr

    from biounet.cli import build_parser
    from biounet.io.volumes import is_volume_spec, open_volume, parse_roi

    args = build_parser().parse_args(argv)
    specs = [item for item in args.inputs if args.format == "ome-zarr" or is_volume_spec(item)]
    for spec in specs:
        volume = open_volume(spec, args.level, args.axes)
        roi = parse_roi(args.roi, volume.shape) if args.roi else tuple(slice(0, n) for n in volume.shape)
        shape = tuple(s.stop - s.start for s in roi)
        store = Path(args.out) / f"{volume.name}.ome.zarr"
        if not store.is_dir():
            return f"{store} was not written"
        attrs = zarr.open_group(str(store), mode="r").attrs.asdict()
        if not attrs.get("biounet", {}).get("complete"):
            return f"{store} is not marked complete"
        layers = [("", args.dtype), ("/labels/mask", "uint8")] + [("/labels/cells", None)] * bool(args.labels)
        for inner, dtype in layers:
            out = open_volume(f"{store}{inner}")
            if out.shape != shape or dtype and out.dtype != np.dtype(dtype):
                return f"{store}{inner} holds {out.shape} {out.dtype}, not {shape} {dtype}"
            for z in range(shape[0]):
                a = out.read(z, slice(None), slice(None))
                if inner == "" and a.dtype.kind == "f" and not (np.isfinite(a).all() and 0 <= a.min() <= a.max() <= 1):
                    return f"{store} slice {z}: probabilities outside [0, 1]"
                if inner == "/labels/mask" and not np.isin(a, (0, 1)).all():
                    return f"{store}/labels/mask slice {z} holds values other than 0 and 1"
            out.close()
    return None


def check_volume_cli(argv: list[str], limit: float = 30.0, verify: bool = True) -> Outcome:
    """check_cli, and after a success, :func:`check_volume_store` on what it wrote (unless ``verify`` is
    False: a store the fuzzer damaged itself may keep that damage in blocks recorded as done)."""
    outcome = check_cli(argv, limit)
    if outcome.status != "ok" or not verify:
        return outcome
    try:
        bad = check_volume_store(argv)
    except BaseException as exc:  # noqa: BLE001
        bad = "its store does not read back: " + "".join(traceback.format_exception(exc))
    return Outcome("failure", bad, outcome.code, outcome.stderr) if bad else outcome


def check_volume_runs(runs: list[list[str]], damage: tuple[str, int, bytes], limit: float = 30.0) -> Outcome:
    """:func:`check_volume_cli` on each run in turn, the output store damaged between them: the first
    outcome that is not ok or clean, else the last one."""
    outcome = Outcome("ok")
    for i, argv in enumerate(runs):
        if i and outcome.status != "ok":
            break  # nothing was written to resume or to refuse
        if i:
            damage_output(Path(_option(runs[0], "--out")), *damage)
        outcome = check_volume_cli(argv, limit, verify=not (i and damage[0] in ("chunk-junk", "root-junk")))
        if outcome.status not in ("ok", "clean"):
            outcome.detail = f"run {i + 1} of {len(runs)}: {outcome.detail}"
            return outcome
    return outcome


# ------------------------------------------------------------------------------------ known findings

_FRAME = re.compile(r'File "[^"]*/biounet/[\w/]+\.py", line \d+, in (\w+)\n\s*(.*)')


@dataclass(frozen=True)
class Finding:
    """A raw exception from biounet that this fuzzer found and that is reported but not fixed yet: the
    innermost biounet frame it escaped from (function, a piece of its source line) and its type names."""

    id: str
    function: str
    code: str
    exceptions: tuple[str, ...]  # () = any type
    summary: str


# Found by the fuzzer (the long run, or tests/test_fuzz.py): each one has a deterministic reproducer in
# tests/test_fuzz.py, marked xfail(strict=True) with the finding's id and summary, so that it shows as an
# expected failure until its bug is fixed and then fails the suite (XPASS) until the entry and the xfail
# are removed. The fuzz tests never leave an input out: one that ends in a known finding fails them like
# any other; the long run counts them as failures, marked "known".
KNOWN_FINDINGS: tuple[Finding, ...] = (  # none open. Fixed, each now a one-line error: V1-V6 (damaged volume
    # metadata), R1 (a 4300-digit --roi bound), O1 (a damaged output chunk while the pyramid is built), I1 (a TIFF
    # declaring far more strips than it lists: read_image_file's header check compares the two)
)


def known_finding(outcome: "Outcome") -> str | None:
    """The id of the known finding a failure is, if any."""
    if outcome.status != "failure":
        return None
    frames = _FRAME.findall(outcome.detail)
    if not frames:
        return None
    function, code = frames[-1]
    last = outcome.detail.strip().splitlines()[-1]
    exception = last.split(":", 1)[0].rsplit(".", 1)[-1]
    for f in KNOWN_FINDINGS:
        if f.function == function and f.code in code and (not f.exceptions or exception in f.exceptions):
            return f.id
    return None


# ------------------------------------------------------------------------------------ the long run

KINDS = ("image", "config", "argv", "checkpoint", "volume", "roi", "volume-argv")
MIX = {"image": 30, "config": 15, "argv": 30, "checkpoint": 5, "volume": 10, "roi": 5, "volume-argv": 5}


def _case(kind: str, ws: Workspace, case: Path, draw, limit: float) -> tuple[Outcome, dict]:
    """Draw one input of ``kind`` (files into ``case``), run it and return (outcome, reproducer)."""
    if kind == "image":
        suffix, data, damage = draw(image_files())
        path = case / f"input{suffix}"
        path.write_bytes(data)
        in_channels, classes = draw(st.sampled_from((1, 1, 3))), draw(st.sampled_from((2, 2, 3)))
        threshold = draw(st.sampled_from((None, None, 127.0)))
        repro = {
            "kind": kind,
            "suffix": suffix,
            "damage": damage,
            "in_channels": in_channels,
            "classes": classes,
            "threshold": threshold,
            "file": path.name,
        }
        return check_readers(path, in_channels, classes, threshold, limit), repro
    if kind == "config":
        text = draw(yaml_texts())
        return check_config(text, case / "config.yaml", limit), {"kind": kind, "file": "config.yaml"}
    if kind == "volume":
        volume = draw(volume_cases())
        spec, expect = write_volume(volume, case / "volume")
        outcome = check_volume(spec, volume["level"], volume["axes"], expect, limit)
        return outcome, {"kind": kind, "spec": spec, "case": {**volume, "junk": volume["junk"].hex()}}
    if kind == "roi":
        text, shape, valid = draw(roi_inputs())
        return check_roi(text, shape, valid), {"kind": kind, "text": text, "shape": shape, "valid": valid}
    if kind == "volume-argv":
        runs, damage = draw(volume_runs(ws, case))
        repro = {"kind": kind, "argv": runs[0], "runs": runs, "out_damage": [*damage[:2], damage[2].hex()]}
        return check_volume_runs(runs, damage, limit), repro
    files = draw(fuzz_files())
    damage = draw(checkpoint_damage) if kind == "checkpoint" else None
    write_files(case, files, ws, damage)
    if kind == "checkpoint":
        command = draw(st.sampled_from(("predict", "evaluate", "export")))
        argv = {
            "predict": [
                "predict",
                str(case / "fuzz.png"),
                "--model",
                str(case / "fuzz.pt"),
                "--out",
                str(case / "out"),
                "--device",
                "cpu",
            ],
            "evaluate": ["evaluate", "--model", str(case / "fuzz.pt"), "--data", str(ws.data), "--device", "cpu"],
            "export": [
                "export",
                "--model",
                str(case / "fuzz.pt"),
                "--format",
                "program",
                "--out",
                str(case / "m.pt2"),
            ],
        }[command]
        if command != "predict":
            files = {}
    else:
        argv = draw(argvs(ws, case))
    return check_cli(argv, limit), {"kind": kind, "argv": argv, "checkpoint_damage": damage}


class _OutOfTime(Exception):
    """--max-seconds has passed: the run stops drawing inputs."""


def run(
    inputs: int,
    seed: int,
    limit: float,
    out_dir: Path,
    mix: dict[str, int] | None = None,
    log=print,
    max_seconds: float = float("inf"),
) -> dict:
    """Run ``inputs`` fuzzed inputs (a mix of KINDS drawn by one seeded hypothesis search, no shrinking:
    every outcome is recorded); reproducers of the first failures go to ``out_dir``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    mix = mix or MIX
    kinds = [k for k, n in mix.items() for _ in range(n)]
    stats = {k: {"tried": 0, "ok": 0, "clean": 0, "failure": 0, "hang": 0, "seconds": 0.0} for k in KINDS}
    failures: list[dict] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="biounet-fuzz-") as tmp:
        ws = Workspace.create(Path(tmp) / "ws")
        counter = iter(range(10**9))

        @hseed(seed)
        @settings(
            max_examples=inputs,
            phases=[Phase.generate],
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.data())
        def one(data):
            if time.perf_counter() - start > max_seconds:
                raise _OutOfTime  # skipping examples instead would make hypothesis call the strategy flaky
            i = next(counter)
            kind = data.draw(st.sampled_from(kinds))
            case = Path(tmp) / f"case{i}"
            case.mkdir()
            t0 = time.perf_counter()
            outcome, repro = _case(kind, ws, case, data.draw, limit)
            s = stats[kind]
            s["tried"] += 1
            s[outcome.status] += 1
            s["seconds"] += time.perf_counter() - t0
            if outcome.status in ("failure", "hang"):
                repro.update(
                    index=i,
                    status=outcome.status,
                    known=known_finding(outcome),
                    detail=outcome.detail[-3000:],
                    stderr=outcome.stderr[-2000:],
                )
                failures.append(repro)
                if len(failures) <= 20:
                    dest = out_dir / f"{len(failures):02d}-{kind}"
                    shutil.copytree(case, dest, dirs_exist_ok=True)
                    (dest / "repro.json").write_text(json.dumps(repro, indent=1, default=str))
                last = outcome.detail.strip().splitlines()[-1] if outcome.detail.strip() else ""
                known = f" (known: {repro['known']})" if repro["known"] else ""
                log(f"[{i}] {kind} {outcome.status}{known}: {last} {repro.get('argv', repro.get('text', ''))!s:.300}")
            shutil.rmtree(case, ignore_errors=True)
            if (i + 1) % 100 == 0:
                log(f"{i + 1}/{inputs} inputs, {time.perf_counter() - start:.0f} s, failures {len(failures)}")

        try:
            one()
        except Exception:  # _OutOfTime, or hypothesis's complaint when it replays that example
            if time.perf_counter() - start <= max_seconds:
                raise
            log(f"stopped drawing inputs after {max_seconds:g} s (--max-seconds)")
    tried = sum(s["tried"] for s in stats.values())
    return {
        "inputs": tried,
        "inputs_asked": inputs,
        "max_seconds": max_seconds,
        "seed": seed,
        "time_limit_s": limit,
        "stats": stats,
        "failures": len([f for f in failures if f["status"] == "failure"]),
        "hangs": len([f for f in failures if f["status"] == "hang"]),
        "known_failures": {
            k: sum(f["known"] == k for f in failures) for k in sorted({f["known"] for f in failures} - {None})
        },
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "wall_s": time.perf_counter() - start,
        "first_failures": failures[:20],
    }


def format_table(result: dict) -> str:
    rows = ["| kind | inputs | ok | clean errors | failures | hangs | s/input |", "|---|---:|---:|---:|---:|---:|---:|"]
    total = {"tried": 0, "ok": 0, "clean": 0, "failure": 0, "hang": 0, "seconds": 0.0}
    for kind, s in result["stats"].items():
        for k in total:
            total[k] += s[k]
        rows.append(
            f"| {kind} | {s['tried']} | {s['ok']} | {s['clean']} | {s['failure']} | {s['hang']} | "
            f"{s['seconds'] / max(s['tried'], 1):.3f} |"
        )
    rows.append(
        f"| **all** | {total['tried']} | {total['ok']} | {total['clean']} | {total['failure']} | "
        f"{total['hang']} | {total['seconds'] / max(total['tried'], 1):.3f} |"
    )
    rows.append("")
    rows.append(
        f"peak RSS {result['peak_rss_mib']:.0f} MiB, wall time {result['wall_s']:.0f} s "
        f"({total['tried'] / max(result['wall_s'], 1e-9):.1f} inputs/s), "
        f"time limit {result['time_limit_s']:g} s per input, seed {result['seed']}, "
        f"{result['inputs']} of {result['inputs_asked']} inputs asked"
    )
    known = result.get("known_failures")
    if known:
        rows.append("failures that are known findings: " + ", ".join(f"{k} x{n}" for k, n in known.items()))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inputs", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-limit", type=float, default=30.0, help="seconds per input before it counts as a hang")
    p.add_argument("--json", metavar="FILE", help="write the figures here")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=float("inf"),
        help="stop drawing new inputs after this many seconds (a slow machine: report the rate)",
    )
    p.add_argument("--repro-dir", default="fuzz-repro", help="folder for the first failures' inputs")
    p.add_argument(
        "--max-memory-gib",
        type=float,
        default=0,
        help="cap this process's address space (RLIMIT_AS): an input that allocates without bound then ends in "
        "MemoryError instead of exhausting a shared machine (default 0: no cap)",
    )
    p.add_argument(
        "--kinds",
        default=None,
        metavar="KIND[=WEIGHT],...",
        help=f"the kinds of input and their weights (default: {','.join(f'{k}={n}' for k, n in MIX.items())})",
    )
    args = p.parse_args(argv)
    mix = None
    if args.kinds:
        mix = {}
        for item in args.kinds.split(","):
            kind, _, weight = item.partition("=")
            if kind.strip() not in KINDS or (weight and not weight.strip().isdigit()):
                p.error(f"--kinds {args.kinds!r}: give KIND[=WEIGHT],... with KIND one of {', '.join(KINDS)}")
            mix[kind.strip()] = int(weight or 1)
    if args.max_memory_gib > 0:
        cap = int(args.max_memory_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    import logging

    logging.getLogger("biounet").propagate = False
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)  # its notes on damaged files, as the CLI does
    result = run(
        args.inputs,
        args.seed,
        args.time_limit,
        Path(args.repro_dir),
        mix=mix,
        log=lambda t: print(t, flush=True),
        max_seconds=args.max_seconds,
    )
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return 1 if result["failures"] or result["hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())
