import argparse
import re

import pytest
from support import ROOT

from biounet.cli.options import add_config_arguments, resolve
from biounet.core.config import TrainConfig, from_dict, load_yaml, to_yaml
from biounet.core.errors import ConfigError


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
    (tmp_path / "config.yaml").write_text(to_yaml(cfg))
    assert from_dict(load_yaml(tmp_path / "config.yaml")) == cfg


@pytest.mark.parametrize(
    "changes,match",
    [
        (dict(fold="9"), "--fold must be 0..4"),
        (dict(batch_size=16, micro_batch_size=5), "does not divide"),
        (dict(precision="fp8"), "--precision must be one of"),
        (dict(device="gpu"), "--device must be"),
        (dict(steps=0), "--steps must be at least 1"),
    ],
)
def test_validation_names_the_option(changes, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**changes).validate()


def _help_by_option(defaults):
    """Each config option's flags and help text, read from its own argparse action (not the whole page)."""
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, defaults)
    return {a.dest: (a.option_strings, a.help) for a in parser._actions if a.dest in TrainConfig.__dataclass_fields__}


@pytest.mark.parametrize(
    "defaults",
    [
        TrainConfig(),
        TrainConfig(tile_size=252, lr=0.5, flip=False, fold="all", out="somewhere", ignore_value=7, compile=True),
    ],
    ids=["defaults", "preset"],
)
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


SHIPPED = sorted((ROOT / "configs").glob("*.yaml"))


def test_the_repository_ships_its_recipes():
    assert {p.name for p in SHIPPED} >= {
        "seed.yaml",
        "isbi-cpu.yaml",
        "isbi-best.yaml",
        "isbi-aff-cpu.yaml",
        "isbi-aff-gpu.yaml",
    }


def test_the_affinity_recipes_are_the_cpu_recipe_with_affinities_and_context():
    """isbi-aff-cpu.yaml changes the CPU recipe only where docs/training.md says: the affinities, the context
    sections and the number of steps (the 2-hour budget)."""
    cpu, aff = load_yaml(ROOT / "configs" / "isbi-cpu.yaml"), load_yaml(ROOT / "configs" / "isbi-aff-cpu.yaml")
    changed = {k for k in set(cpu) | set(aff) if cpu.get(k) != aff.get(k)}
    assert changed == {"affinities", "context", "steps", "val_every"}
    assert (aff["affinities"], aff["context"]) == ("mws12", 1)
    gpu = from_dict(load_yaml(ROOT / "configs" / "isbi-aff-gpu.yaml")).validate()
    assert (gpu.affinities, gpu.context, gpu.base_width) == ("mws12", 1, 64)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_load_and_validate(path):
    """A misspelt key or an out-of-range value in a recipe fails here, not in a user's first run."""
    values = load_yaml(path)
    assert values, f"{path.name} sets no option"
    from_dict(values).validate()


# The option names of each schema version. A new or renamed option must bump CONFIG_VERSION, add a
# migration and a line here; this test fails until all three are done.
SCHEMA_KEYS = {
    2: "data fold folds ignore_value mask_threshold base_width depth padding batch_norm in_channels classes "
    "tile_size flip rotate90 elastic elastic_sigma elastic_grid brightness contrast border_weight "
    "border_sigma class_balance dice_loss_weight steps batch_size micro_batch_size memory_gib lr "
    "weight_decay lr_schedule warmup_steps precision device threads compile workers seed "
    "dist_timeout out name log_every checkpoint_every keep_checkpoints validation val_every val_tta "
    "progress resume init_from",
    3: "data masks fold folds ignore_value mask_threshold base_width depth padding batch_norm in_channels classes "
    "tile_size flip rotate90 elastic elastic_sigma elastic_grid brightness contrast border_weight "
    "border_sigma class_balance dice_loss_weight steps batch_size micro_batch_size memory_gib lr "
    "weight_decay lr_schedule warmup_steps precision device threads compile workers seed "
    "dist_timeout out name log_every checkpoint_every keep_checkpoints validation val_every val_tta "
    "progress resume init_from",
    4: "data masks fold folds ignore_value mask_threshold base_width depth padding batch_norm in_channels classes "
    "context tile_size flip rotate90 elastic elastic_sigma elastic_grid brightness contrast border_weight "
    "border_sigma class_balance dice_loss_weight affinities membrane_mode affinity_loss affinity_weight steps "
    "batch_size micro_batch_size memory_gib lr weight_decay lr_schedule warmup_steps precision device threads "
    "compile workers seed dist_timeout out name log_every checkpoint_every keep_checkpoints validation val_every "
    "val_tta progress resume init_from",
    5: "data masks fold folds ignore_value painted mask_threshold base_width depth padding batch_norm in_channels "
    "classes context tile_size flip rotate90 elastic elastic_sigma elastic_grid brightness contrast border_weight "
    "border_sigma class_balance dice_loss_weight affinities membrane_mode affinity_loss affinity_weight steps "
    "batch_size micro_batch_size memory_gib lr weight_decay lr_schedule warmup_steps precision device threads "
    "compile workers seed dist_timeout out name log_every checkpoint_every keep_checkpoints validation val_every "
    "val_tta progress resume init_from",
}


def test_every_option_change_bumps_the_schema_version():
    from biounet.core.config import CONFIG_VERSION, MIGRATIONS

    assert set(TrainConfig().to_dict()) == set(SCHEMA_KEYS[CONFIG_VERSION].split())
    assert sorted(MIGRATIONS) == list(range(1, CONFIG_VERSION))


def test_saved_config_round_trips_with_its_version(tmp_path):
    from biounet import __version__
    from biounet.core.config import CONFIG_VERSION, VERSION_KEY, WRITER_KEY, to_yaml

    cfg = TrainConfig(steps=7, mask_threshold=100.0)
    (tmp_path / "config.yaml").write_text(to_yaml(cfg))
    values = load_yaml(tmp_path / "config.yaml")
    assert values[VERSION_KEY] == CONFIG_VERSION and values[WRITER_KEY] == __version__
    assert from_dict(values) == cfg


def test_version_one_config_without_new_keys_is_migrated(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("steps: 5\nbase_width: 8\n")  # no version: written by hand or by biounet 0.1.0
    assert from_dict(load_yaml(path)) == TrainConfig(steps=5, base_width=8)


@pytest.mark.parametrize("version", [0, -1, "two", True])
def test_a_nonsense_schema_version_is_refused(version):
    from biounet.core.config import VERSION_KEY

    with pytest.raises(ConfigError, match="config_version must be a positive integer"):
        from_dict({VERSION_KEY: version})


@pytest.mark.parametrize(
    "text, where",
    [(b"a: b: c\n", "line 1, column 5"), (b"key: {\n", "line 2, column 1"), (b"steps: \x13\n", "character 7")],
)
def test_broken_yaml_is_refused_on_one_line_with_its_place(tmp_path, text, where):
    # found by tests/support/fuzzing.py: PyYAML's message spans lines and repeats the file with a caret
    path = tmp_path / "c.yaml"
    path.write_bytes(text)
    with pytest.raises(ConfigError, match="is not valid YAML") as info:
        load_yaml(path)
    assert "\n" not in str(info.value) and where in str(info.value), str(info.value)


@pytest.mark.parametrize("text", [b"steps: \xff\xfe 5\n", b"\xc3"])
def test_a_config_that_is_not_utf8_is_a_config_error(tmp_path, text):
    # found by tests/support/fuzzing.py: Path.read_text raised UnicodeDecodeError, which escaped biounet's errors
    path = tmp_path / "c.yaml"
    path.write_bytes(text)
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_yaml(path)


def test_a_version_3_config_gets_the_2d_network_without_affinities():
    from biounet.core.config import VERSION_KEY

    cfg = from_dict({VERSION_KEY: 3, "steps": 9, "classes": 2})
    assert cfg == TrainConfig(steps=9)
    assert (cfg.context, cfg.affinities, cfg.membrane_mode, cfg.affinity_loss, cfg.affinity_weight) == (
        0,
        "none",
        "grow",
        "dice",
        1.0,
    )


@pytest.mark.parametrize(
    "changes,match",
    [
        (dict(affinities="mws12", classes=3), "--affinities mws12 needs two-class masks.*use --affinities none"),
        (dict(affinities="mws24"), "--affinities must be one of none, mws12"),
        (dict(context=-1), "--context must not be negative"),
        (dict(affinity_weight=-0.5), "--affinity-weight must not be negative"),
        (dict(affinity_loss="bce"), "--affinity-loss must be one of dice, dice\\+bce"),
        (dict(membrane_mode="drop"), "--membrane-mode must be one of grow, keep"),
    ],
)
def test_affinity_and_context_options_are_checked(changes, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**changes).validate()


def test_num_classes_names_the_class_channels():
    assert TrainConfig(classes=3).num_classes == 3
    assert TrainConfig(affinities="mws12").validate().num_classes == 2


def test_painted_masks_conflict_with_an_ignore_value_or_a_threshold():
    """Painted masks mark their unlabelled pixels with 0: an ignore value or a threshold would read them
    another way, so either is refused in one line naming both options."""
    for other in (dict(ignore_value=0), dict(mask_threshold=127.0)):
        with pytest.raises(ConfigError, match=r"--painted and --(ignore-value|mask-threshold) .* conflict.*drop"):
            TrainConfig(painted=True, **other).validate()
    TrainConfig(painted=True).validate()


def test_a_version_4_config_reads_dense_masks_as_before():
    from biounet.core.config import VERSION_KEY

    cfg = from_dict({VERSION_KEY: 4, "ignore_value": 7, "classes": 3})
    assert cfg.painted is False and cfg.mask_reading() == {
        "classes": 3,
        "in_channels": 1,
        "ignore_value": 7,
        "mask_threshold": None,
        "painted": False,
    }


def test_mask_reading_of_painted_masks_drops_the_ignore_value_and_threshold():
    """evaluate --painted scores a model trained with an ignore value on painted masks: 0 is their unlabelled."""
    cfg = TrainConfig(ignore_value=128, mask_threshold=100.0)
    assert cfg.mask_reading(painted=True)["ignore_value"] is None and cfg.mask_reading(True)["mask_threshold"] is None
    assert TrainConfig(painted=True).mask_reading()["painted"] is True
    assert TrainConfig(painted=True).mask_reading(painted=False)["painted"] is False
