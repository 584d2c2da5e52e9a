"""Memory planning: the micro-batch that fits."""

import torch
from support import tiny_config

from biounet.train import memory


def test_auto_micro_batch_follows_available_memory(monkeypatch):
    cfg = tiny_config(base_width=64, depth=4, tile_size=572, batch_size=16, micro_batch_size=0)
    per_sample = memory.activation_bytes_per_sample(cfg, "fp32")
    assert 0.5e9 < per_sample < 8e9  # a 572x572 sample at width 64 needs gigabytes of activations
    monkeypatch.setattr(memory, "available_memory_bytes", lambda d: 100 * 2**30)
    # a GPU takes what fits; the CPU stops at CPU_ACTIVATION_CAP (larger micro-batches are no faster there)
    assert memory.choose_micro_batch(cfg, 16, torch.device("cuda"), "fp32") == 16
    cpu_micro = memory.choose_micro_batch(cfg, 16, torch.device("cpu"), "fp32")
    assert 1 <= cpu_micro < 16 and cpu_micro * per_sample <= memory.CPU_ACTIVATION_CAP
    # an explicit budget overrides both
    assert memory.choose_micro_batch(cfg.replace(memory_gib=200.0), 16, torch.device("cpu"), "fp32") == 16
    monkeypatch.setattr(memory, "available_memory_bytes", lambda d: int(2.2 * per_sample + 2e9))
    assert memory.choose_micro_batch(cfg, 16, torch.device("cpu"), "fp32") == 1
    assert memory.choose_micro_batch(cfg.replace(micro_batch_size=8), 16, torch.device("cpu"), "fp32") == 8
