import argparse
import re
from pathlib import Path

import pytest

from biounet.config import TrainConfig, add_config_arguments, from_dict, load_yaml, resolve, save_yaml
from biounet.errors import ConfigError


def _parse(argv, defaults=TrainConfig()):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, defaults)
    return resolve(parser.parse_args(argv), defaults)


def test_yaml_sets_options_and_flags_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base_width: 32\nsteps: 50\nelastic: false\nlr: 0.001\n")
    cfg, explicit = _parse(["--config", str(path), "--steps", "7"])
    assert (cfg.base_width, cfg.steps, cfg.elastic, cfg.lr) == (32, 7, False, 0.001)
    assert explicit == {"base_width": 32, "steps": 7, "elastic": False, "lr": 0.001}
    assert cfg.batch_size == 16  # untouched default


def test_unknown_and_mistyped_keys_fail_loudly(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'base_widht'.*did you mean 'base_width'"):
        from_dict({"base_widht": 3})
    with pytest.raises(ConfigError, match="must be an integer"):
        from_dict({"steps": "many"})
    path = tmp_path / "bad.yaml"
    path.write_text("- a\n- list\n")
    with pytest.raises(ConfigError, match="must map option names"):
        load_yaml(path)


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = TrainConfig(fold="all", ignore_value=128, padding="same")
    save_yaml(cfg, tmp_path / "config.yaml")
    assert from_dict(load_yaml(tmp_path / "config.yaml")) == cfg


@pytest.mark.parametrize("changes,match", [
    (dict(fold="9"), "--fold must be 0..4"),
    (dict(batch_size=16, micro_batch_size=5), "does not divide"),
    (dict(precision="fp8"), "--precision must be one of"),
    (dict(device="gpu"), "--device must be"),
    (dict(steps=0), "--steps must be at least 1"),
])
def test_validation_names_the_option(changes, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**changes).validate()


def _help_by_option(defaults):
    """Each config option's flags and help text, read from its own argparse action (not the whole page)."""
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, defaults)
    return {a.dest: (a.option_strings, a.help) for a in parser._actions if a.dest in TrainConfig.__dataclass_fields__}


@pytest.mark.parametrize("defaults", [
    TrainConfig(),
    TrainConfig(tile_size=252, lr=0.5, flip=False, fold="all", out="somewhere", ignore_value=7, compile=True),
], ids=["defaults", "preset"])
def test_every_option_has_help_with_its_default(defaults):
    """Every option has its own flag, a description, and a help line ending with *its own* default as
    given to add_config_arguments (a preset such as the demo's shows the preset's values)."""
    helps = _help_by_option(defaults)
    assert set(helps) == set(TrainConfig().to_dict())
    for name, value in defaults.to_dict().items():
        flags, text = helps[name]
        flag = f"--{name.replace('_', '-')}"
        assert flag in flags, (name, flags)
        assert text and not text.startswith("(default"), f"{flag} has no description"
        shown = re.findall(r"\(default: ([^()]*)\)$", text)
        assert shown == [str(value)], f"{flag}: help {text!r} does not end with (default: {value})"


SHIPPED = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_the_repository_ships_its_recipes():
    assert {p.name for p in SHIPPED} >= {"seed.yaml", "isbi-cpu.yaml", "isbi-best.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_load_and_validate(path):
    """A misspelt key or an out-of-range value in a recipe fails here, not in a user's first run."""
    values = load_yaml(path)
    assert values, f"{path.name} sets no option"
    from_dict(values).validate()
