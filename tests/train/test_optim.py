"""Optimizer and learning-rate schedule."""

import pytest
from support import tiny_config

from biounet.train import optim


def test_learning_rate_schedules():
    cfg = tiny_config(lr=1e-3, steps=100, warmup_steps=10, lr_schedule="cosine")
    assert optim.lr_at(cfg, 1) == pytest.approx(1e-4) and optim.lr_at(cfg, 10) == pytest.approx(1e-3)
    assert optim.lr_at(cfg, 11) == pytest.approx(1e-3)
    assert optim.lr_at(cfg, 56) == pytest.approx(5e-4, rel=0.05)
    assert optim.lr_at(cfg, 100) < 1e-6
    poly = cfg.replace(lr_schedule="poly", warmup_steps=0)
    assert optim.lr_at(poly, 51) == pytest.approx(5e-4)
    assert optim.lr_at(cfg.replace(lr_schedule="constant", warmup_steps=0), 77) == 1e-3
