"""Device and precision: choose the best available, explain what was chosen."""

from __future__ import annotations

import contextlib
import os
from typing import Any, cast

import torch

from biounet.core.errors import ConfigError
from biounet.core.system import available_ram_bytes

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; an absent CUDA device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: PyTorch sees no CUDA GPU here; use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device


# The one switch for what ``precision auto`` believes about the CPU: "1" resolves it as on a CPU
# with native bf16 (AMX or AVX512-BF16), "0" as on one without; unset, the CPU is asked. Tests use
# it to run the precision-dependent cases in both modes on any machine.
CPU_BF16_ENV = "BIOUNET_CPU_BF16"


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with native bf16 matrix units (AMX or AVX512-BF16); elsewhere bf16 is emulated and slow.

    ``BIOUNET_CPU_BF16=1`` or ``0`` overrides the detection (see CPU_BF16_ENV).
    """
    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ConfigError(
            f"{CPU_BF16_ENV}={forced!r}: set it to 1 (resolve precision auto as on a CPU with "
            f"native bf16), 0 (as on one without) or leave it unset (ask the CPU)"
        )
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, c, lambda: False)() for c in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA with bf16 (else fp16) and on CPUs with AMX/AVX512-BF16, else fp32."""
    if precision not in ("auto", *DTYPES):
        raise ConfigError(f"--precision must be auto, bf16, fp16 or fp32, got {precision!r}")
    if device.type == "cuda":
        if precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return precision
    if precision == "fp16":
        raise ConfigError("--precision fp16 needs a CUDA GPU; on the CPU use bf16 or fp32")
    if precision == "auto":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return precision


def tune_for_fixed_shapes(device: torch.device) -> None:
    """Let cuDNN time its convolution algorithms once per input shape (tiles have few shapes)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Mixed-precision context for the forward pass (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def memory_format(device: torch.device, precision: str) -> torch.memory_format:
    """channels_last where oneDNN/cuDNN's fast kernels want it (CUDA, bf16/fp16 on the CPU).

    In float32 on an AVX2 CPU channels_last measured 1.5x slower than NCHW for the width-64
    U-Net (25.7 s vs 16.4 s per 572x572 forward+backward), so fp32 on the CPU keeps NCHW.
    """
    if device.type == "cuda" or precision != "fp32":
        return torch.channels_last
    return torch.contiguous_format


def resolve_compile(compile: bool | None, device: torch.device) -> bool:
    """Whether to compile: as asked, or by default on CUDA (1.48x the training images/s of the
    eager bf16 path on an H200) and not on the CPU (1.16x for the CPU recipe, after about a
    minute of compiling that needs a C++ compiler)."""
    return device.type == "cuda" if compile is None else compile


def compiled(module: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """``torch.compile(module)`` for fixed shapes when ``enabled``, else the module itself.

    The compiled module shares its parameters with ``module``; the work happens at its first
    call (a minute or more), and again for every new input shape.
    """
    # torch.compile of a Module returns a Module (an OptimizedModule); its annotation says only Callable
    return cast(torch.nn.Module, torch.compile(module, dynamic=False)) if enabled else module


def is_compile_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from torch.compile's machinery (Dynamo, Inductor, the C++ or Triton
    toolchain) rather than from the network or the data."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor.exc import CppCompileError, InvalidCxxCompiler

    return isinstance(exc, (TorchDynamoException, InvalidCxxCompiler, CppCompileError))


def compile_failed(exc: Exception) -> ConfigError:
    """The error for a first compiled call that failed (no C++ compiler, no Triton, an unsupported op)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return ConfigError(
        f"compiling the network (torch.compile) failed: {type(exc).__name__}: {first[:300]}. "
        "Run with --no-compile (eager PyTorch), or install what the message names (a C++ "
        "compiler on the CPU, Triton on CUDA)"
    )


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler, active only for fp16 (bf16 has float32's exponent range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def set_threads(threads: int) -> int:
    """Set PyTorch's CPU threads (0 keeps PyTorch's default); returns the count in use."""
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def available_memory_bytes(device: torch.device) -> int:
    """Free memory on ``device``: CUDA's free memory, or MemAvailable (capped by a cgroup limit) on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return available_ram_bytes()
