"""Fuzz the command line and the readers with hypothesis: damaged images, broken configs, nonsense flags.

Every input must end in one of two ways: success, or a clean error (exit status 1 or 2 and exactly one
stderr line starting with ``biounet``, no traceback); a reader called directly returns a valid array
or raises ``biounet.errors.BiounetError``. Anything else (an exception escaping ``main``, a traceback,
several lines, a wrong exit status, more than ``--time-limit`` seconds) is a failure, saved as a
reproducer.

    python benchmarks/fuzz.py --inputs 10000 --seed 0 --time-limit 30 --json fuzz.json

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
        if tag in (256, 257) and count == 1:
            buf[at + 2 : at + 12] = struct.pack(e + "HII", 4, 1, side)
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
INFER_FLAGS = ("--precision", "--device", "--tile", "--batch-size", "--threads")
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

    def __post_init__(self):
        self.data, self.run = self.root / "data", self.root / "run"
        self.junk, self.text = self.root / "junk", self.root / "file.txt"
        self.labels, self.probs = self.root / "labels.tif", self.root / "probs.tif"

    @classmethod
    def create(cls, root: str | Path) -> "Workspace":
        import tifffile

        from biounet.config import TrainConfig
        from biounet.data import write_synthetic_dataset
        from biounet.engine import train

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
        return ws

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
    "--base-width",
    "4",
    "--depth",
    "2",
    "--tile-size",
    "60",
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
        if command == "cv":  # cv's --folds is the list of folds to run; the fold count stays 2
            argv = [
                command,
                "--data",
                data,
                "--out",
                str(case / "out"),
                *TINY[: TINY.index("--folds")],
                "--folds",
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
                    ["--checkpoint", str(ws.run)],
                    ["--checkpoint", str(ws.run)],
                    ["--checkpoint", str(case / "fuzz.pt")],
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
        return ["export", "--checkpoint", ckpt, "--format", fmt, "--out", out, "--opset", opset]
    if command == "bench":  # always one value that is refused before any work starts
        bad = draw(
            st.sampled_from(
                (
                    ["--device", draw(st.sampled_from(("gpu", "", "cuda:x", "ü")))],
                    ["--micro-sweep", draw(st.sampled_from(("x", "1,,a", "0", "-1", "3", "1e3")))],
                    [
                        draw(
                            st.sampled_from(
                                ("--depth", "--repeats", "--tile-size", "--batch-size", "--infer-batch", "--base-width")
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
    from biounet.data.readers import mask_to_classes, read_image_file, scale_image
    from biounet.errors import BiounetError

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
    from biounet.config import from_dict, load_yaml
    from biounet.errors import ConfigError

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


# ------------------------------------------------------------------------------------ the long run

KINDS = ("image", "config", "argv", "checkpoint")


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
    files = draw(fuzz_files())
    damage = draw(checkpoint_damage) if kind == "checkpoint" else None
    write_files(case, files, ws, damage)
    if kind == "checkpoint":
        command = draw(st.sampled_from(("predict", "evaluate", "export")))
        argv = {
            "predict": [
                "predict",
                str(case / "fuzz.png"),
                "--checkpoint",
                str(case / "fuzz.pt"),
                "--out",
                str(case / "out"),
                "--device",
                "cpu",
            ],
            "evaluate": ["evaluate", "--checkpoint", str(case / "fuzz.pt"), "--data", str(ws.data), "--device", "cpu"],
            "export": [
                "export",
                "--checkpoint",
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

    mix = mix or {"image": 35, "config": 20, "argv": 40, "checkpoint": 5}
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
                    index=i, status=outcome.status, detail=outcome.detail[-3000:], stderr=outcome.stderr[-2000:]
                )
                failures.append(repro)
                if len(failures) <= 20:
                    dest = out_dir / f"{len(failures):02d}-{kind}"
                    shutil.copytree(case, dest, dirs_exist_ok=True)
                    (dest / "repro.json").write_text(json.dumps(repro, indent=1, default=str))
                last = outcome.detail.strip().splitlines()[-1] if outcome.detail.strip() else ""
                log(f"[{i}] {kind} {outcome.status}: {last} {repro.get('argv', '')}")
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
    args = p.parse_args(argv)
    import logging

    logging.getLogger("biounet").propagate = False
    result = run(
        args.inputs,
        args.seed,
        args.time_limit,
        Path(args.repro_dir),
        log=lambda t: print(t, flush=True),
        max_seconds=args.max_seconds,
    )
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return 1 if result["failures"] or result["hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())
