"""The run's log: its first lines (what is trained, where, how), ``metrics.jsonl`` (a row per step),
progress lines and bar, ``loss.png`` and ``summary.json``."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from biounet.core.config import TrainConfig
from biounet.evaluation.metrics import CURVE_METRICS
from biounet.io.fileio import atomic_write, atomic_write_text, write_json
from biounet.model.checkpoint import RunState
from biounet.train.distributed import DistInfo

if TYPE_CHECKING:
    import torch


class Logger:
    """Writes metrics.jsonl, prints a line every ``log_every`` steps, and drives a progress bar."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, first_step: int, quiet: bool = False, write: bool = True):
        self.path = run_dir / "metrics.jsonl"
        self.write = write
        if write:
            self._truncate(first_step)
        self.cfg, self.quiet = cfg, quiet
        show_bar = cfg.progress == "on" or (cfg.progress == "auto" and sys.stderr.isatty())
        self.bar = None
        if show_bar and not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.steps, initial=first_step, unit="step", dynamic_ncols=True, leave=False)
        self.window_images, self.window_time = 0, 0.0
        self.window_loss: list[float] = []
        self.losses: list[float] = []  # this session's steps, for the summary
        self.rates: list[float] = []

    def _truncate(self, step: int) -> None:
        """Drop log rows past ``step``: a run killed after its last checkpoint logged steps it redoes.

        A hard kill (SIGKILL, power cut) in the middle of an append leaves a torn last line without
        its newline: it is dropped as well (its step is redone), as is any other line that does not
        parse, so that the next append starts a line of its own and no reader of the log chokes.
        """
        for path in (self.path, self.path.with_name("validation.jsonl")):
            if not path.is_file():
                continue
            text = path.read_text(errors="replace")
            keep = [x for x in text.splitlines() if (row_step := self._row_step(x)) is not None and row_step <= step]
            fixed = "".join(x + "\n" for x in keep)
            if fixed != text:
                atomic_write_text(path, fixed)

    @staticmethod
    def _row_step(line: str) -> int | None:
        """The step of a metrics/validation row; None for a blank, torn or foreign line."""
        try:
            row = json.loads(line)
        except ValueError:
            return None
        step = row.get("step") if isinstance(row, dict) else None
        return step if isinstance(step, int) and not isinstance(step, bool) else None

    def info(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def step(self, step: int, loss: float, images: int, seconds: float, lr: float | None = None) -> None:
        self.window_images += images
        self.window_time += seconds
        self.window_loss.append(loss)
        self.losses.append(loss)
        self.rates.append(images / seconds)
        if not self.write:
            return
        with open(self.path, "a") as f:
            f.write(
                json.dumps(
                    {
                        "step": step,
                        "loss": loss,
                        "images_per_s": images / seconds,
                        "step_s": seconds,
                        "lr": lr,
                        "time": time.time(),
                    }
                )
                + "\n"
            )
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}")
        if step % self.cfg.log_every == 0 or step == self.cfg.steps:
            rate = self.window_images / self.window_time
            eta = (self.cfg.steps - step) * self.window_time / len(self.window_loss)
            self.info(
                f"step {step}/{self.cfg.steps}  loss {np.mean(self.window_loss):.4f}  "
                f"images/s {rate:.2f}  eta {hms(eta)}"
            )
            self.window_images, self.window_time, self.window_loss = 0, 0.0, []

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def describe_run(
    log: Logger,
    run_dir: Path,
    cfg: TrainConfig,
    state: RunState,
    info: DistInfo,
    device: torch.device,
    precision: str,
    threads: int,
    use_compile: bool,
    sizes: tuple[int, int, int, int],
) -> None:
    """The run's first two log lines: data (``sizes``: training and held-out images, tile in and out) and
    network, then device, precision and batch."""
    n_train, n_val, in_tile, out_tile = sizes
    share, micro = cfg.batch_size // info.world, cfg.micro_batch_size
    n_params = sum(p.numel() for p in state.model.parameters())
    log.info(
        f"run {run_dir}: {n_train} training / {n_val} held-out images (fold {cfg.fold}), "
        f"tiles {in_tile}->{out_tile}, U-Net width {cfg.base_width} depth {cfg.depth} "
        f"({n_params / 1e6:.1f} M parameters)"
    )
    split = f" over {info.world} processes, {share} each," if info.enabled else ""
    log.info(
        f"device {device}, precision {precision}, {threads} threads{' per process' if info.enabled else ''}, "
        f"batch {cfg.batch_size}{split} as {share // micro} micro-batch(es) of {micro}"
        + (", compiled (the first step compiles)" if use_compile else "")
    )


def write_summary(
    state: RunState,
    log: Logger,
    run_dir: Path,
    first_step: int,
    wall: float,
    device: torch.device,
    precision: str,
    threads: int,
    micro: int,
    stopped: bool = False,
) -> dict[str, Any]:
    """Plot the loss, write summary.json and say where everything is; returns the summary (``stopped``:
    the hooks stopped the run before its last step)."""
    plot_loss(run_dir)
    steps_done = state.step - first_step
    summary = {
        "run_dir": str(run_dir),
        "step": state.step,
        "stopped": stopped,
        "steps_this_session": steps_done,
        "final_loss": log.losses[-1] if log.losses else None,
        "first_loss": log.losses[0] if log.losses else None,  # of this session
        "images_per_s_median": float(np.median(log.rates)) if log.rates else None,
        "wall_s": wall,
        "device": str(device),
        "precision": precision,
        "threads": threads,
        "micro_batch_size": micro,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    write_json(summary, run_dir / "summary.json")
    if stopped:
        log.info(f"stopped at step {state.step} as asked; continue with: biounet train --resume {run_dir}")
    elif steps_done:
        log.info(
            f"done: step {state.step}, loss {summary['final_loss']:.4f}, "
            f"median {summary['images_per_s_median']:.2f} images/s, {hms(wall)} wall, "
            f"peak memory {summary['peak_rss_gib']:.2f} GiB; checkpoints, metrics.jsonl and loss.png in {run_dir}"
        )
    return summary


def hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def plot_loss(run_dir: Path) -> Path | None:
    """Write loss.png from metrics.jsonl (raw loss and a moving average); atomic like checkpoints."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = np.array([r["step"] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    val_path = run_dir / "validation.jsonl"
    val = [json.loads(x) for x in val_path.read_text().splitlines() if x.strip()] if val_path.is_file() else []
    fig = Figure(figsize=(12 if val else 7, 4), dpi=100)
    FigureCanvasAgg(fig)  # renders without pyplot and without switching the process's backend
    axes = fig.subplots(1, 2 if val else 1, squeeze=False)
    ax = axes[0, 0]
    ax.plot(steps, loss, lw=0.8, alpha=0.45, label="loss per step")
    k = max(1, len(loss) // 20)
    if k > 1:
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], smooth, lw=1.8, label=f"mean of {k} steps")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy per pixel")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{run_dir.name}: training loss")
    if val:
        vx = axes[0, 1]
        vsteps = [r["step"] for r in val]
        for key in CURVE_METRICS:
            if key in val[0]:
                vx.plot(vsteps, [r[key] for r in val], marker="o", label=key)
        vx.set_xlabel("step")
        vx.set_title("validation (held-out fold, full resolution)")
        vx.grid(alpha=0.3)
        vx.legend()
    fig.tight_layout()
    return atomic_write(run_dir / "loss.png", lambda tmp: fig.savefig(tmp, format="png"))
