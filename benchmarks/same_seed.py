"""Same seed, same weights: a fingerprint of two short trainings, to compare across refactorings.

    python benchmarks/same_seed.py --out /tmp/same-seed --json docs/same_seed.json   # record
    python benchmarks/same_seed.py --out /tmp/same-seed --expect docs/same_seed.json # compare

Runs, each in a fresh process through ``biounet.cli.main``:

- ``demo``: ``biounet demo --steps 20 --out DIR/demo --precision fp32 --progress off``;
- ``isbi``: ``biounet train --config configs/isbi-cpu.yaml --data ../shared/data/isbi2012 --fold 1
  --steps 20 --no-compile --no-validation --precision fp32 --progress off --out DIR/isbi``;

then prints the SHA-256 of each run's final ``last.pt`` model state dict (keys sorted, each key's
name, dtype, shape and raw tensor bytes). ``--expect FILE`` compares with hashes recorded earlier
and exits 1 on any difference. A behaviour-preserving change must leave both hashes equal.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def commands(out: Path, data: str) -> dict[str, list[str]]:
    common = ["--steps", "20", "--precision", "fp32", "--progress", "off"]
    return {
        "demo": ["demo", *common, "--out", str(out / "demo")],
        "isbi": [
            "train",
            "--config",
            str(ROOT / "configs" / "isbi-cpu.yaml"),
            "--data",
            data,
            "--fold",
            "1",
            "--no-compile",
            "--no-validation",
            *common,
            "--out",
            str(out / "isbi"),
        ],
    }


def state_hash(path: Path) -> str:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def run(argv: list[str]) -> None:
    code = "import sys; from biounet.cli import main; sys.exit(main(sys.argv[1:]))"
    subprocess.run([sys.executable, "-c", code, *argv], check=True, cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="scratch folder for the two runs (emptied first)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "isbi2012"))
    parser.add_argument("--json", help="write the hashes (and the commit measured) to this file")
    parser.add_argument("--expect", help="compare with the hashes in this JSON file; exit 1 if any differs")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    hashes = {}
    for name, argv in commands(out, args.data).items():
        run(argv)
        hashes[name] = state_hash(out / name / "last.pt")
        print(f"{name}: {hashes[name]}", flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if args.json:
        record = {"commit": commit, "command": "python benchmarks/same_seed.py --out DIR", "sha256": hashes}
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    if args.expect:
        expected = json.loads(Path(args.expect).read_text())["sha256"]
        diff = {k for k in expected.keys() | hashes.keys() if expected.get(k) != hashes.get(k)}
        for k in sorted(diff):
            print(f"DIFFERENT {k}: expected {expected.get(k)}, got {hashes.get(k)}")
        print("same weights as recorded" if not diff else "weights differ", flush=True)
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
