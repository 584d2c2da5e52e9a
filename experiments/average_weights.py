"""Average the weights of a run's last step checkpoints into one checkpoint, to score it.

    python benchmarks/average_weights.py RUN_DIR --from-step 300 --out averaged.pt
    biounet evaluate --model averaged.pt --data ../shared/data/isbi2012 --tta

The lever measured in the README ("Averaging the weights of the last checkpoints"): the mean of
the rotated ``step_*.pt`` weight checkpoints from ``--from-step`` on (stochastic weight
averaging's idea, taken at the checkpoints a run already keeps). Every floating-point tensor is
averaged, batch-norm running statistics included; integer buffers (batch-norm's step counters)
come from the newest checkpoint, as do the config and the step recorded in the output, which
also lists the averaged steps under ``averaged_steps``. The output is written atomically (its folder
is made if needed) and an existing file is never overwritten.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

from biounet.core.errors import BiounetError, CheckpointError, ConfigError
from biounet.model import checkpoint as ckpt_io


def step_checkpoints(run_dir: Path, from_step: int) -> list[Path]:
    """The run's step checkpoints at or after ``from_step``, oldest first; a clear error for none."""
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a run folder; pass the folder that holds the step_*.pt checkpoints")
    found = {int(m[1]): p for p in run_dir.glob("step_*.pt") if (m := re.fullmatch(r"step_(\d+)\.pt", p.name))}
    chosen = [found[step] for step in sorted(found) if step >= from_step]
    if len(chosen) < 2:
        steps = ", ".join(map(str, sorted(found))) or "none"
        raise ConfigError(
            f"{run_dir} holds {len(chosen)} step checkpoint(s) at or after step {from_step} "
            f"(its steps: {steps}); averaging needs at least 2: lower --from-step"
        )
    return chosen


def average(paths: list[Path]) -> dict:
    """A weights-only checkpoint whose floating-point tensors are the mean over ``paths``."""
    ckpts = [ckpt_io.load(p) for p in paths]
    newest = ckpts[-1]
    keys = set(newest["model"])
    for c in ckpts[:-1]:
        if set(c["model"]) != keys or any(c["model"][k].shape != newest["model"][k].shape for k in keys):
            raise CheckpointError(
                f"{c['path']} and {newest['path']} hold different networks; average the checkpoints of one run only"
            )
    weights = {}
    for key, value in newest["model"].items():
        if value.is_floating_point():
            weights[key] = torch.stack([c["model"][key].double() for c in ckpts]).mean(0).to(value.dtype)
        else:
            weights[key] = value.clone()
    out = ckpt_io.payload(newest["config"], newest["step"], weights)
    out["averaged_steps"] = [int(c["step"]) for c in ckpts]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="run folder holding step_*.pt checkpoints")
    parser.add_argument("--from-step", type=int, required=True, help="average the checkpoints from this step on")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint file to write (must not exist)")
    args = parser.parse_args(argv)
    try:
        if args.out.exists():
            raise ConfigError(f"{args.out} already exists; choose another --out (nothing is overwritten)")
        paths = step_checkpoints(args.run_dir, args.from_step)
        result = average(paths)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        ckpt_io.atomic_save(result, args.out)
    except BiounetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"averaged steps {', '.join(map(str, result['averaged_steps']))} of {args.run_dir} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
