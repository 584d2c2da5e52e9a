"""The options' declarations: every field has its help and group; TrainConfig is exactly these fields."""

from dataclasses import fields

from biounet.core.config import TrainConfig
from biounet.core.fields import TrainFields


def test_train_config_has_exactly_the_declared_fields_in_their_order():
    assert [f.name for f in fields(TrainConfig)] == [f.name for f in fields(TrainFields)]
    assert TrainConfig() == TrainConfig(**{f.name: f.default for f in fields(TrainFields)})
    assert repr(TrainConfig()).startswith("TrainConfig(")


def test_every_field_says_what_it_does_and_where_it_belongs():
    for f in fields(TrainFields):
        assert f.metadata["help"] and not f.metadata["help"].endswith("."), f.name
        assert f.metadata["group"] in ("data", "model", "augmentation", "loss", "affinities", "optimisation", "run")
        choices = f.metadata["choices"]
        assert choices is None or f.default in choices, f.name


def test_the_affinity_options_sit_together():
    group = [f.name for f in fields(TrainFields) if f.metadata["group"] == "affinities"]
    assert group == ["affinities", "membrane_mode", "affinity_loss", "affinity_weight"]
    model = [f.name for f in fields(TrainFields) if f.metadata["group"] == "model"]
    assert "context" in model
