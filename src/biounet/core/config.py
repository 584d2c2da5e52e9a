"""Configuration: one dataclass, parsed once in the command's ``main`` and passed down. Its fields (every
option, its default and help) are declared in ``core/fields.py``; this module checks them, migrates saved
configurations of older schema versions and reads and writes the YAML text.

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
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from biounet import __version__
from biounet.core.errors import ConfigError
from biounet.core.fields import TrainFields

# The schema of saved configurations (config.yaml, checkpoints, exports). Every new or renamed key
# bumps it, and MIGRATIONS[v] turns a version-v dict into a version-(v + 1) one. Version 1 is
# every configuration written before versions were recorded (biounet 0.1.0).
CONFIG_VERSION = 5
VERSION_KEY, WRITER_KEY = "config_version", "biounet_version"
MIGRATIONS: dict[int, typing.Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: lambda values: values,  # 2 added mask_threshold, whose default keeps version 1's behaviour
    2: lambda values: values,  # 3 added masks (a label volume); None, its default, reads --data as before
    # 4 added context, affinities, membrane_mode, affinity_loss, affinity_weight: their defaults (2D input,
    # no affinity channels) are the network every older configuration describes
    3: lambda values: values,
    4: lambda values: values,  # 5 added painted, whose default (False) reads masks as every older version did
}


# Options checked by range, in the order their errors are reported (TrainConfig.validate).
_AT_LEAST_ONE = (
    "folds base_width depth in_channels tile_size elastic_grid steps batch_size log_every checkpoint_every "
    "keep_checkpoints"
).split()
_NOT_NEGATIVE = (
    "micro_batch_size threads workers val_every brightness contrast border_weight weight_decay elastic_sigma "
    "warmup_steps memory_gib dice_loss_weight context affinity_weight"
).split()


@dataclass
class TrainConfig(TrainFields):
    """Every option of ``biounet train`` (the fields: core/fields.py), with its checks and derived values."""

    @property
    def num_classes(self) -> int:
        """The class channels of the network's output, first (``--classes``); affinity channels follow."""
        return self.classes

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
        if self.affinities != "none" and self.classes != 2:
            raise ConfigError(
                f"--affinities {self.affinities} needs two-class masks (cell and membrane, --classes 2), from whose "
                f"cells the affinity targets are made; got --classes {self.classes}: use --affinities none"
            )
        for other in ("ignore_value", "mask_threshold"):
            if self.painted and getattr(self, other) is not None:
                raise ConfigError(
                    f"--painted and --{flag(other)} {getattr(self, other)} conflict: painted masks mark unlabelled "
                    f"pixels with 0 and hold the classes as 1..K; drop --{flag(other)} (or --painted)"
                )
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

    def mask_reading(self, painted: bool | None = None) -> dict[str, Any]:
        """How the masks of a dataset are read, as ``open_dataset``'s keywords: the classes and image channels,
        and the ignore value and threshold, or (``painted``; None: this config's ``--painted``) painted
        annotations, which have neither (0 marks their unlabelled pixels)."""
        painted = self.painted if painted is None else painted
        return {
            "classes": self.classes,
            "in_channels": self.in_channels,
            "ignore_value": None if painted else self.ignore_value,
            "mask_threshold": None if painted else self.mask_threshold,
            "painted": painted,
        }

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
