"""Atomic file writes (JSON, text, PNG pictures): a crash leaves either the old file or the new one, whole,
never a mix; and output checks made before any work."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from biounet.core.errors import ConfigError, DataError
from biounet.core.system import process_alive


def atomic_write(path: str | Path, write: Callable[[Path], object], durable: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    The temporary name keeps the suffix (writers that pick a format from it still work). With
    ``durable`` the data and the rename are flushed to disk (checkpoints). On any failure the
    temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")  # see remove_stale_temporaries
    try:
        write(tmp)
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        try:
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
    remove_stale_temporaries(path)
    return path


def _temporary_pattern(path: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(path.stem)}\.tmp-(\d+){re.escape(path.suffix)}")


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporary files of ``path`` left by writers that were killed mid-write.

    A SIGKILL or power cut between creating ``.NAME.tmp-PID.EXT`` and renaming it leaves it behind
    (a partial checkpoint can be as large as the whole one). A temporary of ``path`` whose process
    no longer exists on this machine can only be such a leftover; a live writer's file is kept.
    POSIX only (elsewhere nothing is deleted); never raises.
    """
    path = Path(path)
    if os.name != "posix":
        return []
    pattern, removed = _temporary_pattern(path), []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    for name in names:
        match = pattern.fullmatch(name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or process_alive(pid):
            continue
        try:
            (path.parent / name).unlink()
            removed.append(path.parent / name)
        except OSError:
            pass
    return removed


def write_json(obj: Any, path: str | Path) -> Path:
    """The one JSON writer: ``obj`` indented by 2 with a final newline, written atomically (folders made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_png(path: str | Path, pixels: np.ndarray) -> Path:
    """The one PNG writer: an (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA uint8 picture, written atomically."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4))):
        raise DataError(
            f"a PNG picture is (H, W), (H, W, 3) or (H, W, 4) uint8, not {pixels.dtype} of shape {pixels.shape}: "
            "convert it to uint8 (0..255) with the colours, if any, on the last axis"
        )
    from PIL import Image

    return atomic_write(path, lambda p: Image.fromarray(pixels).save(p, format="PNG"))


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(path: str | Path, flag: str) -> Path:
    """Refuse, before any work, an output folder that cannot be made or written (exit status 2)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a folder; give a folder name (it is created if missing)")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise ConfigError(f"{flag} {path}: {base} is a file, so the folder cannot be made there; choose another path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {base} is not writable; choose a folder you may write to")
    return path


def check_output_file(path: str | Path, flag: str) -> Path:
    """Refuse, before any work, an output file that cannot be written (exit status 2)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name")
    check_output_dir(path.parent, flag)
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{flag} {path} exists and is not writable; choose another file name")
    return path
