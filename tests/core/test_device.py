"""Device and precision: the switch that makes `precision auto` resolve as on any CPU kind."""

import pytest
import torch

from biounet.core.device import CPU_BF16_ENV, autocast, resolve_precision
from biounet.core.errors import ConfigError

CPU = torch.device("cpu")


@pytest.mark.parametrize("value,expected", [("1", "bf16"), ("0", "fp32")])
def test_switch_decides_what_auto_means_on_the_cpu(monkeypatch, value, expected):
    monkeypatch.setenv(CPU_BF16_ENV, value)
    assert resolve_precision("auto", CPU) == expected
    # an explicit precision is never changed by the switch
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"


def test_auto_under_the_switch_really_runs_in_bf16(monkeypatch):
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    layer = torch.nn.Conv2d(1, 2, 3)
    with autocast(CPU, resolve_precision("auto", CPU)):
        assert layer(torch.zeros(1, 1, 8, 8)).dtype == torch.bfloat16


def test_a_bad_switch_value_is_refused(monkeypatch):
    monkeypatch.setenv(CPU_BF16_ENV, "yes")
    with pytest.raises(ConfigError, match="BIOUNET_CPU_BF16='yes': set it to 1"):
        resolve_precision("auto", CPU)


def test_fp16_on_the_cpu_names_the_alternatives():
    with pytest.raises(ConfigError, match="use bf16 or fp32"):
        resolve_precision("fp16", CPU)
