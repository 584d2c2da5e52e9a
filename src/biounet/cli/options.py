"""The command line's vocabulary: every flag that more than one command takes is defined here once, as
an argparse parent parser (``parents=[...]``), so that it has one name, one meaning and one help text
in every command.

- ``--model REF`` (predict, evaluate, export): a checkpoint file, a run folder, a built-in model's name
  or, where the network is only run, a file written by ``biounet export`` (.onnx, .pt2, .zip).
- ``--device``, ``--precision``, ``--threads``, ``--progress`` (every command that runs the network):
  the :class:`TrainConfig` fields of those names.
- ``--painted`` (train, cv, evaluate): masks are painted annotations (0 unlabelled); evaluate's default is the
  model's.
- ``--tile`` (the side of an inference tile), ``--tile-batch`` (tiles per inference pass), ``--tta``
  (predict, evaluate; bench times ``--tile-batch``).
- the training options: one flag per :class:`TrainConfig` field (``--tile-size``, ``--batch-size``,
  ``--folds``...), and the YAML file (``--config``) that sets them; bench takes the network's.

A flag keeps the name of its config key wherever it means that key: ``--tile-size`` and
``--batch-size`` are the training sample's side and the optimizer step's tiles, in train and in bench
alike; at inference, where the tile is a choice of speed and memory that leaves the model alone, the
tile is ``--tile`` and the tiles per pass ``--tile-batch``.

Old spellings stay one release as :class:`Deprecated` aliases: they work and say what to use instead.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from functools import cache
from typing import Any

from biounet.core.config import FIELD_TYPES, TrainConfig, base_type, coerce, flag, from_dict, load_yaml, migrate

RUNTIME_FIELDS = ("device", "precision", "threads", "progress")
# How a path or reference option reads in --help (the others: the field's name in capitals).
METAVARS = {"data": "PATH", "masks": "PATH", "out": "DIR", "resume": "RUN_OR_CKPT", "init_from": "REF"}
# What the help of a field says beyond the config's own text, on the command line only.
HELP_SUFFIX = {"init_from": "; REF: a checkpoint, a run folder or a built-in model's name (`biounet models`)"}
MODEL_HELP = (
    "the model: a checkpoint (.pt), a run folder (its best.pt, else last.pt) or a built-in model's name "
    "(`biounet models`)"
)
EXPORTED_HELP = "; or a file written by `biounet export`: .onnx (run by onnxruntime), .pt2, or .zip (bioimage.io)"


class Deprecated(argparse.Action):
    """An old spelling kept for one release: it stores its value where the new flag does and says, on
    one line of stderr, what to use instead (``biounet: --checkpoint is deprecated; use --model``)."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", hint: str = "", **kwargs: Any) -> None:
        self.new, self.hint = new, hint
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(f"biounet: {option_string} is deprecated; use {self.new}{self.hint}", file=sys.stderr, flush=True)
        setattr(namespace, self.dest, values)


def deprecated(container: Any, old: str, new: str, dest: str, hint: str = "", **kwargs: Any) -> None:
    """Add ``old`` as a deprecated spelling of ``new`` (whose value lands in ``dest``). It has no default
    of its own, so that the new flag's default stands; --help lists it in the epilog only
    (:func:`note_deprecated`)."""
    container.add_argument(
        old,
        dest=dest,
        action=Deprecated,
        new=new,
        hint=hint,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
        **kwargs,
    )


def note_deprecated(parser: argparse.ArgumentParser) -> None:
    """Name a command's deprecated spellings at the end of its --help."""
    old = [(a.option_strings[0], a.new) for a in parser._actions if isinstance(a, Deprecated)]
    if old:
        listed = ", ".join(f"{o} (now {n})" for o, n in old)
        parser.epilog = f"Old spellings, still accepted until the next release with a notice: {listed}."


def _parse_value(name: str):
    typ = base_type(name)

    def parse(text: str):
        if FIELD_TYPES[name] is not typ and text.lower() in ("none", "null", ""):
            return None
        try:
            return typ(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {typ.__name__}, got {text!r}") from None

    parse.__name__ = typ.__name__
    return parse


def _add_field(container: Any, name: str, default: Any, suppress: bool) -> None:
    """The flag of config field ``name``, its help ending in ``default``. ``suppress``: absent from the
    parsed namespace unless given, so that :func:`resolve` tells what the user typed from defaults."""
    meta = next(f for f in fields(TrainConfig) if f.name == name).metadata
    help_text = f"{meta['help']}{HELP_SUFFIX.get(name, '')} (default: {default})"
    kwargs: dict[str, Any] = dict(dest=name, default=argparse.SUPPRESS if suppress else default, help=help_text)
    if base_type(name) is bool:
        if not suppress and default is not None:
            kwargs["help"] = meta["help"]  # argparse's BooleanOptionalAction appends the default itself
        container.add_argument(f"--{flag(name)}", action=argparse.BooleanOptionalAction, **kwargs)
        return
    metavar = METAVARS.get(name, name.upper().replace("_", "-")) if not meta["choices"] else None
    container.add_argument(
        f"--{flag(name)}", type=_parse_value(name), choices=meta["choices"], metavar=metavar, **kwargs
    )


def add_config_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig, skip: tuple[str, ...] = ()) -> None:
    """``--config FILE`` and one flag per config field (but ``skip``), grouped as the fields are, each
    help showing the default; values not given stay absent (see :func:`_add_field`)."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="YAML file setting any of the options below (flags win)",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        group = groups.setdefault(f.metadata["group"], parser.add_argument_group(f.metadata["group"]))
        _add_field(group, f.name, getattr(defaults, f.name), suppress=True)


def resolve(args: argparse.Namespace, defaults: TrainConfig) -> tuple[TrainConfig, dict[str, Any]]:
    """Defaults < YAML file < flags. Returns the config and the options the user set explicitly."""
    given = {k: v for k, v in vars(args).items() if k in FIELD_TYPES}
    explicit: dict[str, Any] = {}
    if getattr(args, "config", None):
        explicit.update({k: coerce(k, v) for k, v in migrate(load_yaml(args.config), args.config).items()})
    explicit.update(given)
    return from_dict(explicit, defaults), explicit


# --- the parent parsers: built once each, shared by every command that takes their flags ---------
# (a parent's actions are shared, not copied: nothing may change them after they are built)


@cache
def runtime_options(training: bool, progress: bool = True) -> argparse.ArgumentParser:
    """``--device``, ``--precision``, ``--threads`` and (``progress``) ``--progress``. ``training``: as the
    other training options, absent unless given (a YAML file may set them); else with the config's
    defaults."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("device and precision")
    defaults = TrainConfig()
    for name in RUNTIME_FIELDS if progress else tuple(f for f in RUNTIME_FIELDS if f != "progress"):
        _add_field(group, name, getattr(defaults, name), suppress=training)
    return parent


@cache
def config_options(names: tuple[str, ...]) -> argparse.ArgumentParser:
    """The flags of the config fields ``names`` with the config's defaults, for a command that is not
    training but takes the training's network (bench)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("network (as `biounet train`)")
    defaults = TrainConfig()
    for name in names:
        _add_field(group, name, getattr(defaults, name), suppress=False)
    return parent


@cache
def model_options(exported: bool) -> argparse.ArgumentParser:
    """``--model REF`` (required) and its old spelling ``--checkpoint``. ``exported``: REF may also be an
    exported model (a command that only runs the network)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_mutually_exclusive_group(required=True)
    group.add_argument("--model", metavar="REF", help=MODEL_HELP + (EXPORTED_HELP if exported else ""))
    deprecated(group, "--checkpoint", "--model", dest="model", metavar="REF")
    return parent


@cache
def tile_batch_options() -> argparse.ArgumentParser:
    """``--tile-batch``: tiles per inference pass (predict, evaluate, bench)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument_group("inference").add_argument(
        "--tile-batch",
        type=int,
        default=4,
        metavar="N",
        help="tiles per inference pass: more is faster up to the memory it takes (default: 4)",
    )
    return parent


@cache
def tile_options() -> argparse.ArgumentParser:
    """``--tile-batch`` and ``--tile`` (predict, evaluate, serve)."""
    parent = argparse.ArgumentParser(add_help=False, parents=[tile_batch_options()])
    group = next(g for g in parent._action_groups if g.title == "inference")  # --tile-batch's, copied in
    group.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="SIDE",
        help="input tile side in pixels (default: the geometry that wastes least compute)",
    )
    return parent


@cache
def inference_options() -> argparse.ArgumentParser:
    """``--tile``, ``--tta`` and ``--tile-batch`` (predict, evaluate), with their old spellings."""
    parent = argparse.ArgumentParser(add_help=False, parents=[tile_options()])
    group = next(g for g in parent._action_groups if g.title == "inference")
    group.add_argument("--tta", action="store_true", help="average the 8 flips/rotations (8x the compute)")
    deprecated(group, "--batch-size", "--tile-batch", dest="tile_batch", type=int, metavar="N")
    return parent


@cache
def painted_options() -> argparse.ArgumentParser:
    """``--painted`` / ``--no-painted`` for a command that scores a model on masks (evaluate): the training's
    flag, with its help, whose default is the model's own setting (None here)."""
    parent = argparse.ArgumentParser(add_help=False)
    meta = next(f for f in fields(TrainConfig) if f.name == "painted").metadata
    parent.add_argument(
        "--painted",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"{meta['help']} (default: as the model was trained)",
    )
    return parent
