"""Configuration: one dataclass, parsed once in the command's ``main`` and passed down.

Precedence: dataclass defaults < a preset (``biounet demo``) < a YAML file (``--config``) <
command-line flags. The resolved configuration is saved as ``config.yaml`` in the run folder
and inside every checkpoint, so that a run can be reproduced from either. The flags themselves
(one per field) and their resolution are in ``cli/options.py``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from biounet import __version__
from biounet.core.errors import ConfigError

# The schema of saved configurations (config.yaml, checkpoints, exports). Every new or renamed key
# bumps it, and MIGRATIONS[v] turns a version-v dict into a version-(v + 1) one. Version 1 is
# every configuration written before versions were recorded (biounet 0.1.0).
CONFIG_VERSION = 3
VERSION_KEY, WRITER_KEY = "config_version", "biounet_version"
MIGRATIONS: dict[int, typing.Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: lambda values: values,  # 2 added mask_threshold, whose default keeps version 1's behaviour
    2: lambda values: values,  # 3 added masks (a label volume); None, its default, reads --data as before
}


# Options checked by range, in the order their errors are reported (TrainConfig.validate).
_AT_LEAST_ONE = (
    "folds base_width depth in_channels tile_size elastic_grid steps batch_size log_every checkpoint_every "
    "keep_checkpoints"
).split()
_NOT_NEGATIVE = (
    "micro_batch_size threads workers val_every brightness contrast border_weight weight_decay elastic_sigma "
    "warmup_steps memory_gib dice_loss_weight"
).split()


def _opt(default: Any, help: str, choices: tuple | None = None, group: str = "run") -> Any:
    return field(default=default, metadata={"help": help, "choices": choices, "group": group})


@dataclass
class TrainConfig:
    """Every option of ``biounet train``; the names are the YAML keys, flags use dashes."""

    # data
    data: str | None = _opt(
        None,
        "ISBI 2012 folder (train-volume.tif, train-labels.tif), a folder with images/ and masks/ of equal names, "
        "or an image volume (PATH.zarr, PATH.h5:/DATASET, PATH.tif) with --masks",
        group="data",
    )
    masks: str | None = _opt(
        None, "the label volume of an image volume in --data, the same (z, y, x) shape; read lazily", group="data"
    )
    fold: str = _opt(
        "1",
        "cross-validation fold to hold out, 0..folds-1 (the reference's "
        "cross_valid_ind), or 'all' to train on every image",
        group="data",
    )
    folds: int = _opt(5, "number of cross-validation folds", group="data")
    ignore_value: int | None = _opt(
        None, "mask value whose pixels are left out of the loss (sparse annotations); none by default", group="data"
    )
    mask_threshold: float | None = _opt(
        None,
        "binarize two-class masks whose edges were anti-aliased (resized or "
        "painted): mask values above this are cell (255), the rest membrane "
        "(0), e.g. 127; none by default (masks must be exactly 0/255 or 0/1)",
        group="data",
    )
    # model
    base_width: int = _opt(64, "channels of the first level; doubles at every level down", group="model")
    depth: int = _opt(4, "number of 2x2 max-pool steps down (the paper: 4)", group="model")
    padding: str = _opt(
        "valid",
        "'valid': unpadded convolutions as in the paper (572 in, 388 out); 'same': output as large as the input",
        ("valid", "same"),
        group="model",
    )
    batch_norm: bool = _opt(False, "batch normalisation after every convolution", group="model")
    in_channels: int = _opt(1, "image channels (1 grey, 3 RGB)", group="model")
    classes: int = _opt(
        2, "number of classes; 2 reads 0/255 (or 0/1) masks, more read integer class maps", group="model"
    )
    # sampling and augmentation
    tile_size: int = _opt(
        572,
        "input tile side in pixels (valid padding: see biounet.model.geometry."
        "valid_input_size); tiles are cut from full-resolution images with "
        "mirrored borders",
        group="augmentation",
    )
    flip: bool = _opt(True, "random horizontal and vertical flips", group="augmentation")
    rotate90: bool = _opt(True, "random rotations by multiples of 90 degrees", group="augmentation")
    elastic: bool = _opt(
        True,
        "the paper's elastic deformation (random displacements on a coarse grid, smoothly interpolated)",
        group="augmentation",
    )
    elastic_sigma: float = _opt(10.0, "standard deviation of the grid displacements in pixels", group="augmentation")
    elastic_grid: int = _opt(3, "points per side of the coarse displacement grid", group="augmentation")
    brightness: float = _opt(
        0.1, "largest brightness shift, in units of the [-1, 1] image range (0 switches it off)", group="augmentation"
    )
    contrast: float = _opt(0.1, "largest relative contrast change (0 switches it off)", group="augmentation")
    # loss
    border_weight: float = _opt(
        0.0, "w0 of the paper's border weight map (the paper: 10; 0 switches it off)", group="loss"
    )
    border_sigma: float = _opt(5.0, "sigma of the border weight map in pixels", group="loss")
    class_balance: bool = _opt(False, "weight pixels by inverse class frequency", group="loss")
    dice_loss_weight: float = _opt(
        0.0,
        "add this weight times (1 - soft dice) per image, the reference's "
        "dice_coeff, to the cross-entropy (0: cross-entropy only, as the reference)",
        group="loss",
    )
    # optimisation
    steps: int = _opt(600, "optimizer steps to train", group="optimisation")
    batch_size: int = _opt(16, "global batch: tiles per optimizer step", group="optimisation")
    micro_batch_size: int = _opt(
        0,
        "tiles per forward/backward pass (gradient accumulation); 0 chooses the largest that fits the available memory",
        group="optimisation",
    )
    memory_gib: float = _opt(
        0.0,
        "memory the automatic micro-batch may plan for, in GiB (0: half the free "
        "memory, and on the CPU at most 1 GiB of activations, beyond which larger "
        "micro-batches are no faster)",
        group="optimisation",
    )
    lr: float = _opt(1e-4, "Adam learning rate", group="optimisation")
    weight_decay: float = _opt(5e-4, "Adam weight decay (L2, as the reference)", group="optimisation")
    lr_schedule: str = _opt(
        "constant",
        "learning rate over the run: constant (the reference), cosine "
        "(decays to 0 at --steps) or poly (linear decay to 0)",
        ("constant", "cosine", "poly"),
        group="optimisation",
    )
    warmup_steps: int = _opt(0, "steps of linear learning-rate warm-up from 0 to --lr", group="optimisation")
    precision: str = _opt(
        "auto",
        "autocast precision; auto: bf16 on CPUs with AMX or AVX512-BF16, "
        "bf16 (or fp16 with a gradient scaler) on CUDA, else fp32",
        ("auto", "bf16", "fp16", "fp32"),
        group="optimisation",
    )
    device: str = _opt("auto", "cpu, cuda or cuda:N; auto picks CUDA when present", group="optimisation")
    threads: int = _opt(0, "CPU threads for PyTorch (0: PyTorch's default, one per core)", group="optimisation")
    compile: bool | None = _opt(
        None,
        "compile the training step's network with torch.compile (TorchInductor: "
        "Triton on CUDA, a C++ compiler on the CPU); the first step spends a minute or "
        "more compiling. Unset: on for CUDA, off on the CPU",
        group="optimisation",
    )
    workers: int = _opt(0, "DataLoader worker processes preparing tiles (0: in the main process)", group="optimisation")
    seed: int = _opt(0, "seed of the weights and of every sample's randomness", group="optimisation")
    dist_timeout: float = _opt(
        600.0,
        "under torchrun: seconds a collective waits for the other processes "
        "before the job fails (a dead or stuck rank)",
        group="optimisation",
    )
    # run folder and checkpoints
    out: str | None = _opt(None, "run folder; none given: runs/<name>")
    name: str | None = _opt(
        None, "run name, the folder's name under runs/ when --out is not given; none given: the date and time"
    )
    log_every: int = _opt(10, "log a line every N steps")
    checkpoint_every: int = _opt(100, "save a checkpoint every N steps (and always at the end)")
    keep_checkpoints: int = _opt(10, "rotated weight checkpoints to keep (last.pt is always kept)")
    validation: bool = _opt(
        True,
        "segment and score the held-out fold at full resolution at the end of "
        "training (and every --val-every steps); the best dice_coeff is kept as best.pt",
    )
    val_every: int = _opt(0, "validate every N steps as well (0: only at the end)")
    val_tta: bool = _opt(
        False,
        "validate with test-time augmentation: average the 8 flips/rotations (8x the "
        "validation compute), as `biounet evaluate --tta`",
    )
    progress: str = _opt("auto", "progress bar: auto (on a terminal), on, off", ("auto", "on", "off"))
    resume: str | None = _opt(None, "continue a run: its folder or a last.pt checkpoint")
    init_from: str | None = _opt(
        None, "start from trained weights (fine-tuning); the output layer is skipped when the class count differs"
    )

    def validate(self) -> TrainConfig:
        """Check ranges and combinations; raise ConfigError naming the option and the fix."""
        self._check_ranges()
        self._check_combinations()
        self._check_choices()
        check_device(self.device)
        return self

    def _check_ranges(self) -> None:
        """Every number within its bounds: counts at least 1, sizes and weights not negative, all finite."""
        for name in _AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise ConfigError(f"--{flag(name)} must be at least 1, got {getattr(self, name)}")
        for name in _NOT_NEGATIVE:
            if getattr(self, name) < 0:
                raise ConfigError(f"--{flag(name)} must not be negative, got {getattr(self, name)}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"--{flag(f.name)} must be a finite number, got {value}")
        for name in ("lr", "dist_timeout", "border_sigma"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{flag(name)} must be positive, got {getattr(self, name)}")
        if self.classes < 2:
            raise ConfigError(f"--classes must be at least 2, got {self.classes}")

    def _check_combinations(self) -> None:
        """Options bounded by others: the held-out fold by the number of folds, the micro-batch by the batch."""
        if self.folds < 2 and self.fold != "all":
            raise ConfigError(
                f"--folds must be at least 2 for a held-out fold (got {self.folds}); "
                "use --fold all to train on every image"
            )
        if self.fold != "all":
            if not str(self.fold).isdigit() or not 0 <= int(self.fold) < self.folds:
                raise ConfigError(f"--fold must be 0..{self.folds - 1} or 'all', got {self.fold!r}")
        if self.micro_batch_size and self.batch_size % self.micro_batch_size:
            raise ConfigError(
                f"--micro-batch-size {self.micro_batch_size} does not divide --batch-size "
                f"{self.batch_size}; pick a divisor or 0 for automatic"
            )

    def _check_choices(self) -> None:
        """Every option with a fixed set of values has one of them; the mask threshold is a grey level."""
        for name, meta_choices in _choices().items():
            if meta_choices and getattr(self, name) not in meta_choices:
                raise ConfigError(
                    f"--{flag(name)} must be one of {', '.join(meta_choices)}, got {getattr(self, name)!r}"
                )
        if self.mask_threshold is not None and not 0 <= self.mask_threshold < 255:
            raise ConfigError(
                f"--mask-threshold must be in [0, 255) (mask values above it are cell), got {self.mask_threshold}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_saved(self) -> dict[str, Any]:
        """Every option plus the schema version and the biounet release that wrote it: what
        config.yaml, checkpoints and exports store."""
        return {VERSION_KEY: CONFIG_VERSION, WRITER_KEY: __version__, **self.to_dict()}

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def check_device(name: str) -> str:
    """``name`` if it is a device biounet can be asked for, else a ConfigError naming the choices."""
    if not (name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    return name


def flag(name: str) -> str:
    """The command-line spelling of an option: ``batch_size`` -> ``batch-size``."""
    return name.replace("_", "-")


def _choices() -> dict[str, tuple | None]:
    return {f.name: f.metadata.get("choices") for f in fields(TrainConfig)}


# every option's annotation (``int | None`` ...), by field name
FIELD_TYPES = typing.get_type_hints(TrainConfig)


def base_type(name: str) -> type:
    """The non-None type of a field: int for ``int | None``."""
    hint = FIELD_TYPES[name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def coerce(name: str, value: Any) -> Any:
    """Check one value read from YAML or a checkpoint against the field's type."""
    if name not in FIELD_TYPES:
        known = difflib.get_close_matches(name, list(FIELD_TYPES), n=1)
        hint = f" (did you mean {known[0]!r}?)" if known else ""
        raise ConfigError(f"unknown config key {name!r}{hint}; `biounet train --help` lists every option")
    typ = base_type(name)
    if value is None:
        if FIELD_TYPES[name] is typ:
            raise ConfigError(f"config key {name!r} must not be empty")
        return None
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {name!r} must be true or false, got {value!r}")
    elif typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {name!r} must be a number, got {value!r}")
        value = float(value)
    elif typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {name!r} must be an integer, got {value!r}")
    elif typ is str:
        if not isinstance(value, (str, int)):
            raise ConfigError(f"config key {name!r} must be a string, got {value!r}")
        value = str(value)
    return value


def migrate(values: dict[str, Any], source: str = "the configuration") -> dict[str, Any]:
    """Option values of a saved configuration of any schema version, as the current schema has them.

    A dict without a version is version 1 (written before versions were recorded, or by hand). A
    newer version than this biounet knows is refused with the release to upgrade to.
    """
    values = dict(values)
    version, writer = values.pop(VERSION_KEY, 1), values.pop(WRITER_KEY, None)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"{source}: {VERSION_KEY} must be a positive integer, got {version!r}")
    if version > CONFIG_VERSION:
        raise ConfigError(
            f"{source} was written by biounet {writer or '(unknown)'} with config version {version}; "
            f"this biounet {__version__} reads config versions up to {CONFIG_VERSION}: upgrade to "
            f"biounet {writer or 'the newest release'} or later (pip install -U biounet)"
        )
    for v in range(version, CONFIG_VERSION):
        values = MIGRATIONS[v](values)
    return values


def from_dict(
    values: dict[str, Any], base: TrainConfig | None = None, source: str = "the configuration"
) -> TrainConfig:
    """A config from ``base`` (default: the defaults) with ``values`` applied; unknown keys fail.

    ``values`` may be a saved configuration of an older schema version (see :func:`migrate`).
    """
    changes = {k: coerce(k, v) for k, v in migrate(values, source).items()}
    return dataclasses.replace(base or TrainConfig(), **changes)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict of option values (not yet checked)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file to --config")
    try:
        values = yaml.safe_load(path.read_bytes())  # PyYAML decodes (and refuses bad UTF-8)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(exc)}; fix it there") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must map option names to values, got a {type(values).__name__}")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def _yaml_problem(exc: Exception) -> str:
    """PyYAML's error on one line: the problem and where (PyYAML's own text spans several lines and
    repeats the offending line with a caret)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or type(exc).__name__
    position = getattr(exc, "position", None)
    where = (
        f" at line {mark.line + 1}, column {mark.column + 1}"
        if mark is not None
        else f" at character {position}"
        if isinstance(position, int)
        else ""
    )
    return " ".join(f"{problem}{where}".split())


def to_yaml(cfg: TrainConfig) -> str:
    """The resolved configuration (every option, with its schema version) as YAML text; a run writes it
    as ``config.yaml`` (:func:`biounet.io.fileio.atomic_write_text`)."""
    return yaml.safe_dump(cfg.to_saved(), sort_keys=False)
