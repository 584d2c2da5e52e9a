"""Crash test: SIGKILL ``biounet train`` and ``biounet predict`` at seeded points, then check recovery.

    python tools/crash.py --trials 20 --seed 0 --out /tmp/crash --json /tmp/crash.json

A tiny synthetic dataset is written, one uninterrupted reference run is trained, and then every
trial trains the same run in a subprocess that dies by SIGKILL (no handler runs, nothing is
flushed) at a point drawn from ``random.Random(seed)``:

- ``after_step``: right after step k was logged (before its checkpoint, if one is due);
- ``log_torn``: in the middle of appending step k's line to metrics.jsonl (half the line written);
- ``ckpt_partial``: in the middle of the n-th checkpoint write (a seeded fraction of the bytes on disk);
- ``before_replace`` / ``after_replace``: just before / just after the n-th checkpoint rename;
- ``at_metrics_line`` (killed from outside): when the k-th line of metrics.jsonl appears (the
  steps are slowed by a sleep so the poll can see them; sleeping changes no number);
- ``at_tmp_file`` (killed from outside): while the n-th temporary checkpoint file exists (the
  checkpoint writes are slowed to chunks so the poll catches them mid-write).

The faults that act from inside are installed by this script's ``--child`` entry, which patches
``torch.save`` / ``os.replace`` / the logger and then runs ``biounet.cli.main`` unchanged.

After each kill: every ``*.pt`` of the run folder (temporary ``.NAME.tmp-PID.pt`` files aside, which
are counted) must load with ``biounet.model.checkpoint.load``; ``biounet train --resume RUN`` (or, when
no checkpoint was written yet, the original command again) must exit 0 at the final step with
metrics.jsonl holding each step exactly once; the steps lost (last step logged before the kill
minus the step of last.pt) must be at most ``--checkpoint-every``; and the resumed run's final
weights are compared with the reference run's (``torch.equal``; the largest difference otherwise).

Prediction: a multi-page TIFF and a second stack are segmented with the reference checkpoint,
killed at a seeded point (mid-write of the n-th output TIFF, just before/after its rename, or from
outside after a seeded fraction of an uninterrupted prediction's time); every ``*_membrane.tif`` /
``*_mask.tif`` present must read whole with tifffile, have the right shape and equal the
uninterrupted prediction; re-running must complete and give the same files.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

STEPS, EVERY = 12, 3
TRAIN_KINDS = (
    "after_step",
    "log_torn",
    "ckpt_partial",
    "before_replace",
    "after_replace",
    "at_metrics_line",
    "at_tmp_file",
)
PREDICT_KINDS = ("tiff_partial", "before_replace", "after_replace", "timer")
TMP = re.compile(r"^\..*\.tmp-\d+\.[A-Za-z0-9]+$")  # fileio.atomic_write's temporary names
CHILD_TIMEOUT = 300


# ----------------------------------------------------------------------------------------------
# The child: faults installed inside the process, then biounet's own CLI


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install_faults(spec: dict[str, Any]) -> None:
    """Patch the running process so that it SIGKILLs itself (or slows down) where ``spec`` says."""
    import builtins

    import torch

    from biounet.train import runlog

    kind = spec.get("kind")
    if spec.get("step_sleep") or kind == "after_step":
        real_step = runlog.Logger.step

        def step(self, step, *args, **kwargs):
            real_step(self, step, *args, **kwargs)
            if kind == "after_step" and step == spec["step"]:
                _die()
            time.sleep(spec.get("step_sleep", 0.0))

        runlog.Logger.step = step

    if kind == "log_torn":
        count = {"n": 0}

        class Torn:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, text):
                self.f.write(text[: max(1, int(len(text) * spec["frac"]))])
                self.f.flush()
                os.fsync(self.f.fileno())
                _die()

        def torn_open(path, mode="r", *args, **kwargs):
            f = builtins.open(path, mode, *args, **kwargs)
            if Path(path).name == "metrics.jsonl" and "a" in mode:
                count["n"] += 1
                if count["n"] == spec["step"]:
                    return Torn(f)
            return f

        runlog.open = torn_open  # the module's global shadows the builtin inside runlog only

    if kind in ("ckpt_partial", "slow_write"):
        real_save, saves = torch.save, {"n": 0}

        def save(obj, f, *args, **kwargs):
            saves["n"] += 1
            buf = io.BytesIO()
            real_save(obj, buf, *args, **kwargs)
            data = buf.getvalue()
            if kind == "ckpt_partial" and saves["n"] == spec["nth"]:
                f.write(data[: int(len(data) * spec["frac"])])
                f.flush()
                os.fsync(f.fileno())
                _die()
            if kind == "slow_write":
                for k in range(8):
                    f.write(data[k * len(data) // 8 : (k + 1) * len(data) // 8])
                    f.flush()
                    time.sleep(spec.get("chunk_sleep", 0.03))
            else:
                f.write(data)

        torch.save = save

    if kind == "tiff_partial":
        import tifffile

        real_imwrite, writes = tifffile.imwrite, {"n": 0}

        def imwrite(path, data, *args, **kwargs):
            writes["n"] += 1
            if writes["n"] != spec["nth"]:
                return real_imwrite(path, data, *args, **kwargs)
            buf = io.BytesIO()
            real_imwrite(buf, data, *args, **kwargs)
            raw = buf.getvalue()
            with builtins.open(path, "wb") as f:
                f.write(raw[: int(len(raw) * spec["frac"])])
                f.flush()
                os.fsync(f.fileno())
            _die()

        tifffile.imwrite = imwrite

    if kind in ("before_replace", "after_replace"):
        real_replace, renames = os.replace, {"n": 0}

        def replace(src, dst, *args, **kwargs):
            if str(dst).endswith(spec["suffix"]):
                renames["n"] += 1
                if renames["n"] == spec["nth"] and kind == "before_replace":
                    _die()
            real_replace(src, dst, *args, **kwargs)
            if str(dst).endswith(spec["suffix"]) and renames["n"] == spec["nth"] and kind == "after_replace":
                _die()

        os.replace = replace


def child(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    install_faults(spec)
    from biounet.cli import main

    return main(argv[1:])


# ----------------------------------------------------------------------------------------------
# The parent: data, subprocesses, kills and checks


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    env.pop("BIOUNET_DEBUG", None)
    return env


def make_inputs(folder: Path, seed: int = 0) -> dict[str, Any]:
    """A tiny synthetic training set and two multi-page TIFF stacks to predict on."""
    import tifffile

    from biounet.data import write_synthetic_dataset

    folder.mkdir(parents=True, exist_ok=True)
    data = write_synthetic_dataset(folder / "data", count=4, size=96, seed=seed)
    from biounet.data.synthetic import synthetic_em_image

    stacks = []
    for name, z in (("vol_a", 3), ("vol_b", 2)):
        pages = np.stack(
            [synthetic_em_image(np.random.default_rng([seed, 100 + len(stacks), k]), 80)[0] for k in range(z)]
        )
        path = folder / "predict-in" / f"{name}.tif"
        path.parent.mkdir(exist_ok=True)
        tifffile.imwrite(path, pages, photometric="minisblack")
        stacks.append((path, pages.shape))
    return {"data": data, "stacks": stacks}


def train_argv(data: Path, out: Path, steps: int = STEPS, every: int = EVERY) -> list[str]:
    return [
        "train",
        "--data",
        str(data),
        "--fold",
        "all",
        "--base-width",  # support.TINY_NET's network: this file also runs as a script, without tests/ on the path
        "4",
        "--depth",
        "2",
        "--tile-size",
        "60",
        "--batch-size",
        "4",
        "--steps",
        str(steps),
        "--checkpoint-every",
        str(every),
        "--keep-checkpoints",
        "2",
        "--lr",
        "1e-3",
        "--precision",
        "fp32",
        "--device",
        "cpu",
        "--no-validation",
        "--progress",
        "off",
        "--threads",
        "1",
        "--log-every",
        "100",
        "--seed",
        "0",
        "--out",
        str(out),
    ]


def predict_argv(ckpt: Path, stacks: list[Path], out: Path) -> list[str]:
    return [
        "predict",
        "--model",
        str(ckpt),
        "--out",
        str(out),
        "--precision",
        "fp32",
        "--device",
        "cpu",
        "--threads",
        "1",
        *map(str, stacks),
    ]


def biounet(args: list[str], spec: dict[str, Any] | None = None) -> subprocess.Popen:
    if spec is None:
        cmd = [sys.executable, "-m", "biounet", *args]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env())


def run_ok(args: list[str]) -> tuple[int, str]:
    p = biounet(args)
    out, _ = p.communicate(timeout=CHILD_TIMEOUT)
    return p.returncode, out.decode(errors="replace")


def _tmp_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if TMP.match(p.name)) if folder.is_dir() else []


def kill_run(args: list[str], spec: dict[str, Any], watch: Path) -> dict[str, Any]:
    """Start the child; external kinds are killed from here. Returns how it ended."""
    kind = spec["kind"]
    inside = kind not in ("at_metrics_line", "at_tmp_file", "timer")
    child_spec = dict(spec)
    if kind == "at_metrics_line":
        child_spec = {"kind": None, "step_sleep": 0.15}
    elif kind == "at_tmp_file":
        child_spec = {"kind": "slow_write", "chunk_sleep": 0.03}
    elif kind == "timer":
        child_spec = None
    start = time.perf_counter()
    p = biounet(args, child_spec)
    killed_from_outside = False
    if not inside:
        seen, present = 0, False
        while p.poll() is None:
            if time.perf_counter() - start > CHILD_TIMEOUT:
                break
            if kind == "timer" and time.perf_counter() - start >= spec["delay_s"]:
                p.send_signal(signal.SIGKILL)
                killed_from_outside = True
                break
            if kind == "at_metrics_line":
                metrics = watch / "metrics.jsonl"
                if metrics.is_file() and metrics.read_bytes().count(b"\n") >= spec["line"]:
                    p.send_signal(signal.SIGKILL)
                    killed_from_outside = True
                    break
            if kind == "at_tmp_file":
                now = any(TMP.match(n) and n.endswith(".pt") for n in (os.listdir(watch) if watch.is_dir() else []))
                if now and not present:
                    seen += 1
                    if seen == spec["nth"]:
                        p.send_signal(signal.SIGKILL)
                        killed_from_outside = True
                        break
                present = now
            time.sleep(0.002)
    try:
        out, _ = p.communicate(timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    return {
        "rc": p.returncode,
        "killed": p.returncode == -signal.SIGKILL,
        "outside": killed_from_outside,
        "seconds": round(time.perf_counter() - start, 2),
        "output": out.decode(errors="replace")[-2000:],
    }


def logged_step(metrics: Path) -> int:
    """The last step the killed run logged (a torn last line counts if its step number is whole)."""
    if not metrics.is_file():
        return 0
    text = metrics.read_text(errors="replace")
    steps = [int(m.group(1)) for m in re.finditer(r'\{"step": (\d+)[,}]', text)]
    return max(steps, default=0)


def check_checkpoints(run: Path) -> dict[str, Any]:
    """Load every checkpoint of the folder; temporary files are listed, not loaded."""
    from biounet.core.errors import CheckpointError
    from biounet.model import checkpoint as ckpt_io

    loaded, failed = [], []
    for p in sorted(run.glob("*.pt")):
        if TMP.match(p.name):
            continue
        try:
            ckpt_io.load(p)
            loaded.append(p.name)
        except CheckpointError as exc:
            failed.append(f"{p.name}: {exc}")
    return {"loaded": loaded, "failed": failed, "tmp": [p.name for p in _tmp_files(run)]}


def max_abs_diff(a: dict[str, Any], b: dict[str, Any]) -> tuple[bool, float]:
    import torch

    if set(a) != set(b):
        return False, float("inf")
    exact = all(torch.equal(a[k], b[k]) for k in a)
    diff = max((float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel()), default=0.0)
    return exact, diff


def plan(trials: int, seed: int, kinds: tuple[str, ...], predict: bool = False) -> list[dict[str, Any]]:
    """Seeded kill points; the kinds cycle so that every one is drawn when trials >= len(kinds)."""
    rng = random.Random(seed)
    order = list(kinds)
    rng.shuffle(order)
    specs = []
    n_ckpt = STEPS // EVERY * 2  # step_N.pt then last.pt at every checkpoint
    for t in range(trials):
        kind = order[t % len(order)]
        if predict:
            spec = {
                "kind": kind,
                "nth": rng.randint(1, 4),
                "frac": round(rng.uniform(0.05, 0.95), 3),
                "suffix": ".tif",
                "delay": round(rng.uniform(0.2, 0.7), 3),
            }
        else:
            spec = {
                "kind": kind,
                "step": rng.randint(1, STEPS - 1),
                "line": rng.randint(1, STEPS - 1),
                "nth": rng.randint(1, n_ckpt - 1),
                "frac": round(rng.uniform(0.05, 0.95), 3),
                "suffix": ".pt",
            }
        specs.append({k: v for k, v in spec.items() if k in _PARAMS[kind]} | {"kind": kind})
    return specs


# the parameters each kind uses (timer's delay: a fraction of the uninterrupted prediction's time)
_PARAMS = {
    "after_step": {"step"},
    "log_torn": {"step", "frac"},
    "ckpt_partial": {"nth", "frac"},
    "before_replace": {"nth", "suffix"},
    "after_replace": {"nth", "suffix"},
    "at_metrics_line": {"line"},
    "at_tmp_file": {"nth"},
    "tiff_partial": {"nth", "frac"},
    "timer": {"delay"},
}


def reference_run(root: Path, inputs: dict[str, Any]) -> dict[str, Any]:
    from biounet.model import checkpoint as ckpt_io

    run = root / "reference"
    shutil.rmtree(run, ignore_errors=True)
    rc, out = run_ok(train_argv(inputs["data"], run))
    if rc != 0:
        raise RuntimeError(f"the reference run failed (exit {rc}):\n{out}")
    pred = root / "reference-predict"
    shutil.rmtree(pred, ignore_errors=True)
    start = time.perf_counter()
    rc, out = run_ok(predict_argv(run / "last.pt", [s for s, _ in inputs["stacks"]], pred))
    if rc != 0:
        raise RuntimeError(f"the reference prediction failed (exit {rc}):\n{out}")
    return {
        "run": run,
        "model": ckpt_io.load(run / "last.pt")["model"],
        "predict": pred,
        "predict_s": time.perf_counter() - start,
    }


def train_trial(
    t: int, spec: dict[str, Any], root: Path, inputs: dict[str, Any], ref: dict[str, Any]
) -> dict[str, Any]:
    from biounet.model import checkpoint as ckpt_io

    run = root / f"train-{t:03d}"
    shutil.rmtree(run, ignore_errors=True)
    killed = kill_run(train_argv(inputs["data"], run), spec, run)
    row: dict[str, Any] = {"trial": t, **spec, "killed": killed["killed"], "kill_s": killed["seconds"]}
    if not killed["killed"]:
        row["error"] = f"the child was not killed (exit {killed['rc']}): {killed['output'][-500:]}"
    reached = logged_step(run / "metrics.jsonl")
    if spec["kind"] == "log_torn" and killed["killed"]:
        reached = max(reached, spec["step"])  # the torn line may end before its step number: the step was done
    after = check_checkpoints(run)
    has_last = (run / "last.pt").is_file() and not after["failed"]
    saved = ckpt_io.load(run / "last.pt")["step"] if has_last else 0
    row.update(
        reached=reached,
        saved=saved,
        lost=reached - saved,
        failed_loads=after["failed"],
        tmp_after_kill=after["tmp"],
        ckpt_write_kill=any(n.endswith(".pt") for n in after["tmp"]),
    )
    # resume: the run folder if it holds last.pt, else the original command again (nothing to resume)
    args = ["train", "--resume", str(run)] if (run / "last.pt").exists() else train_argv(inputs["data"], run)
    rc, out = run_ok(args)
    row["resume_rc"] = rc
    row["resume_how"] = "resume" if args[1] == "--resume" else "restart"
    final_step = None
    if rc == 0:
        final = ckpt_io.load(run / "last.pt")
        final_step = final["step"]
        row["exact"], row["max_diff"] = max_abs_diff(final["model"], ref["model"])
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
        row["steps_logged_once"] = [r["step"] for r in rows] == list(range(1, STEPS + 1))
    else:
        row["exact"], row["max_diff"], row["steps_logged_once"] = False, None, False
        row["resume_output"] = out[-1500:]
    end = check_checkpoints(run)
    row["final_step"] = final_step
    row["failed_loads"] = row["failed_loads"] + [f"after resume: {x}" for x in end["failed"]]
    row["tmp_after_resume"] = end["tmp"]
    row["resumed_ok"] = rc == 0 and final_step == STEPS and row["steps_logged_once"]
    return row


def read_outputs(folder: Path, stacks: list[tuple[Path, tuple]]) -> dict[str, Any]:
    """Every final output file present must read whole, with the stack's shape."""
    import tifffile

    present, bad = {}, []
    shapes = {s.stem: shape for s, shape in stacks}
    for p in sorted(list(folder.glob("*_membrane.tif")) + list(folder.glob("*_mask.tif"))):
        if TMP.match(p.name):
            continue
        stem = p.name.rsplit("_", 1)[0]
        try:
            arr = tifffile.imread(p)
        except Exception as exc:  # noqa: BLE001 - any failure to read is a partial file
            bad.append(f"{p.name}: {type(exc).__name__}: {exc}")
            continue
        if arr.shape != shapes.get(stem):
            bad.append(f"{p.name}: shape {arr.shape}, expected {shapes.get(stem)}")
            continue
        present[p.name] = arr
    return {"present": present, "bad": bad, "tmp": [p.name for p in _tmp_files(folder)]}


def predict_trial(
    t: int, spec: dict[str, Any], root: Path, inputs: dict[str, Any], ref: dict[str, Any]
) -> dict[str, Any]:
    out = root / f"predict-{t:03d}"
    shutil.rmtree(out, ignore_errors=True)
    stacks = [s for s, _ in inputs["stacks"]]
    args = predict_argv(ref["run"] / "last.pt", stacks, out)
    killed = kill_run(args, {**spec, "delay_s": spec.get("delay", 0) * ref["predict_s"]}, out)
    row: dict[str, Any] = {"trial": t, **spec, "killed": killed["killed"], "kill_s": killed["seconds"]}
    expected = read_outputs(ref["predict"], inputs["stacks"])["present"]
    after = read_outputs(out, inputs["stacks"]) if out.is_dir() else {"present": {}, "bad": [], "tmp": []}
    wrong = [n for n, a in after["present"].items() if not np.array_equal(a, expected[n])]
    row.update(
        files_after_kill=sorted(after["present"]),
        partial=after["bad"] + [f"{n}: differs" for n in wrong],
        tmp_after_kill=after["tmp"],
    )
    rc, text = run_ok(args)
    again = read_outputs(out, inputs["stacks"])
    row["rerun_rc"] = rc
    row["rerun_ok"] = (
        rc == 0
        and not again["bad"]
        and sorted(again["present"]) == sorted(expected)
        and all(np.array_equal(again["present"][n], expected[n]) for n in expected)
    )
    row["tmp_after_rerun"] = again["tmp"]
    if rc != 0:
        row["rerun_output"] = text[-1500:]
    return row


def figures(train_rows: list[dict], predict_rows: list[dict]) -> dict[str, Any]:
    diffs = [r["max_diff"] for r in train_rows if r.get("max_diff") is not None]
    return {
        "trials": len(train_rows),
        "killed": sum(r["killed"] for r in train_rows),
        "kills_during_checkpoint_write": sum(r["ckpt_write_kill"] for r in train_rows),
        "kills_before_first_checkpoint": sum(r["resume_how"] == "restart" for r in train_rows),
        "resumes_ok": sum(r["resumed_ok"] for r in train_rows),
        "checkpoints_failed_to_load": sum(len(r["failed_loads"]) for r in train_rows),
        "max_steps_lost": max((r["lost"] for r in train_rows), default=0),
        "checkpoint_every": EVERY,
        "exact_resume_matches": sum(bool(r["exact"]) for r in train_rows),
        "max_weight_diff": max(diffs, default=None),
        "stray_tmp_files_after_kill": sum(len(r["tmp_after_kill"]) for r in train_rows),
        "stray_tmp_files_after_resume": sum(len(r["tmp_after_resume"]) for r in train_rows),
        "predict_trials": len(predict_rows),
        "predict_killed": sum(r["killed"] for r in predict_rows),
        "predict_partial_files": sum(len(r["partial"]) for r in predict_rows),
        "predict_reruns_ok": sum(r["rerun_ok"] for r in predict_rows),
        "predict_stray_tmp_files_after_rerun": sum(len(r["tmp_after_rerun"]) for r in predict_rows),
    }


def table(fig: dict[str, Any]) -> str:
    labels = [
        ("trials", "training trials (SIGKILL)"),
        ("killed", "children killed by SIGKILL"),
        ("kills_during_checkpoint_write", "kills during a checkpoint write"),
        ("kills_before_first_checkpoint", "kills before the first checkpoint (restarted)"),
        ("resumes_ok", "resumes ok (exit 0, final step, each step logged once)"),
        ("checkpoints_failed_to_load", "checkpoints that failed to load"),
        ("max_steps_lost", f"max steps lost (limit: checkpoint_every = {fig['checkpoint_every']})"),
        ("exact_resume_matches", "exact-resume matches (torch.equal with the reference)"),
        ("max_weight_diff", "max weight difference to the reference"),
        ("stray_tmp_files_after_kill", "stray temporary files after the kills"),
        ("stray_tmp_files_after_resume", "stray temporary files after the resumes"),
        ("predict_trials", "predict trials (SIGKILL)"),
        ("predict_killed", "predict children killed by SIGKILL"),
        ("predict_partial_files", "partial/corrupt predict outputs found"),
        ("predict_reruns_ok", "predict re-runs ok (same files as uninterrupted)"),
        ("predict_stray_tmp_files_after_rerun", "stray temporary files after the re-runs"),
    ]
    width = max(len(text) for _, text in labels)
    lines = [f"| {'figure':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {text:<{width}} | {fig[key]} |" for key, text in labels]
    return "\n".join(lines)


def run_benchmark(trials: int, seed: int, out: Path, predict_trials: int | None = None, log=print) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    inputs = make_inputs(out / "inputs", seed)
    ref = reference_run(out, inputs)
    predict_trials = max(4, trials // 4) if predict_trials is None else predict_trials
    train_rows, predict_rows = [], []
    for t, spec in enumerate(plan(trials, seed, TRAIN_KINDS)):
        row = train_trial(t, spec, out, inputs, ref)
        train_rows.append(row)
        log(
            f"train {t:2d} {spec['kind']:<16} {json.dumps({k: v for k, v in spec.items() if k != 'kind'}):<34} "
            f"killed {row['killed']!s:<5} reached {row['reached']:2d} saved {row['saved']:2d} lost {row['lost']} "
            f"tmp {len(row['tmp_after_kill'])} {row['resume_how']} rc {row['resume_rc']} exact {row['exact']}"
        )
    for t, spec in enumerate(plan(predict_trials, seed + 1, PREDICT_KINDS, predict=True)):
        row = predict_trial(t, spec, out, inputs, ref)
        predict_rows.append(row)
        log(
            f"predict {t:2d} {spec['kind']:<14} {json.dumps({k: v for k, v in spec.items() if k != 'kind'}):<34} "
            f"killed {row['killed']!s:<5} files {len(row['files_after_kill'])} partial {len(row['partial'])} "
            f"tmp {len(row['tmp_after_kill'])} rerun ok {row['rerun_ok']}"
        )
    return {"seed": seed, "figures": figures(train_rows, predict_rows), "train": train_rows, "predict": predict_rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="training trials (default 20)")
    parser.add_argument("--predict-trials", type=int, default=None, help="predict trials (default trials/4, >= 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/crash"), help="work folder (runs, outputs)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures and every trial here")
    args = parser.parse_args(argv)
    result = run_benchmark(args.trials, args.seed, args.out, args.predict_trials)
    print()
    print(table(result["figures"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    f = result["figures"]
    ok = (
        f["resumes_ok"] == f["trials"]
        and f["checkpoints_failed_to_load"] == 0
        and f["max_steps_lost"] <= EVERY
        and f["predict_partial_files"] == 0
        and f["predict_reruns_ok"] == f["predict_trials"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2:]))
    sys.exit(main())
