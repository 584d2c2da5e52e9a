"""The training options on the command line: one flag per :class:`TrainConfig` field, and the
resolution of defaults, a YAML file (``--config``) and flags into one configuration.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from biounet.core.config import FIELD_TYPES, TrainConfig, base_type, coerce, flag, from_dict, load_yaml, migrate


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


def add_config_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig, skip: tuple[str, ...] = ()) -> None:
    """One flag per config field, its help showing the default; values not given stay absent.

    Absent flags (``argparse.SUPPRESS``) let the caller tell what the user typed from what
    a default, preset or YAML file supplied.
    """
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
        group_name = f.metadata["group"]
        group = groups.setdefault(group_name, parser.add_argument_group(group_name))
        default = getattr(defaults, f.name)
        help_text = f"{f.metadata['help']} (default: {default})"
        option = f"--{flag(f.name)}"
        if base_type(f.name) is bool:
            group.add_argument(
                option, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
            )
        else:
            group.add_argument(
                option,
                dest=f.name,
                type=_parse_value(f.name),
                default=argparse.SUPPRESS,
                choices=f.metadata["choices"],
                metavar=f.name.upper().replace("_", "-") if not f.metadata["choices"] else None,
                help=help_text,
            )


def resolve(args: argparse.Namespace, defaults: TrainConfig) -> tuple[TrainConfig, dict[str, Any]]:
    """Defaults < YAML file < flags. Returns the config and the options the user set explicitly."""
    given = {k: v for k, v in vars(args).items() if k in FIELD_TYPES}
    explicit: dict[str, Any] = {}
    if getattr(args, "config", None):
        explicit.update({k: coerce(k, v) for k, v in migrate(load_yaml(args.config), args.config).items()})
    explicit.update(given)
    return from_dict(explicit, defaults), explicit
