"""What a watershed post-processing buys on V_rand, chosen on other folds than the one it scores.

    python benchmarks/watershed_vrand.py runs/cv-w8 --data ../shared/data/isbi2012 --tta \
        --extra runs/best-w8-f1 --cache runs/ws-cache --json runs/ws-vrand.json

V_rand punishes a gap in a membrane (two cells merge) far more than a pixel count does. The
classic remedy: seed a watershed of the cell probability at its confident cores (components of
``p > core`` of at least ``min_size`` pixels) and draw the one-pixel watershed lines between
neighbouring basins into the map, so that two cores stay apart even where the membrane between
them is faint. The post-processed map is the cell probability with the lines set to 0; the
challenge's scoring (threshold sweep, boundary thinning) then runs on it unchanged.

For every fold folder of a ``biounet cv`` output (``fold-K/last.pt``), the held-out images are
segmented once (``--cache`` keeps their cell probabilities) and scored raw and with each
``--cores`` value. A fold's post-processing is the core threshold best on the *other* folds'
images, so no fold chooses its own setting. ``--extra RUN`` scores more runs (their held-out
fold from their config) with the setting chosen on the CV folds other than theirs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from biounet.core.errors import BiounetError, ConfigError
from biounet.data.folders import read_dataset
from biounet.data.split import kfold_split
from biounet.evaluation.challenge import THRESHOLDS, thinned_segmentation, truth_segmentation, v_rand_score
from biounet.io.fileio import write_json
from biounet.models import load_predictor
from biounet.segment.inference import segment


def watershed_map(cell: np.ndarray, core: float, min_size: int) -> np.ndarray:
    """The cell probability with watershed lines (between basins seeded at confident cores) set to 0.

    Without any core of ``min_size`` pixels the map comes back unchanged.
    """
    from scipy import ndimage
    from skimage.segmentation import watershed

    cores, n = ndimage.label(cell > core)
    sizes = np.bincount(cores.ravel(), minlength=n + 1)
    small = sizes < min_size
    small[0] = True
    cores[small[cores]] = 0
    if not cores.any():
        return cell.astype(np.float32)  # no confident core: nothing to keep apart
    basins = watershed(-cell, cores, watershed_line=True)
    return np.where(basins > 0, cell, 0.0).astype(np.float32)


def vrand_table(cells: list[np.ndarray], truths: list[np.ndarray]) -> np.ndarray:
    """(thresholds, images) V_rand of each image at each of the challenge's thresholds.

    truths: the labels' segments (``truth_segmentation(mask == 1)``, not thinned, as the challenge).
    """
    return np.array(
        [
            [v_rand_score(t, thinned_segmentation(c.astype(np.float64) > th)) for c, t in zip(cells, truths)]
            for th in THRESHOLDS
        ]
    )


def stack_score(table: np.ndarray) -> float:
    """The challenge's V_rand of a stack: the best threshold for the mean over its images."""
    return float(table.mean(axis=1).max())


def held_out_cells(run: Path, data, tta: bool, cache: Path | None) -> tuple[int, list[np.ndarray], list[np.ndarray]]:
    """(fold, cell probabilities, masks) of the images the run's checkpoint held out."""
    predictor, cfg, ckpt = load_predictor(run / "last.pt" if run.is_dir() else run)
    if cfg.fold == "all":
        raise ConfigError(f"{run} was trained on every image (--fold all); it has no held-out images to score")
    fold = int(cfg.fold)
    _, val = kfold_split(len(data.images), fold, cfg.folds)
    masks = [data.masks[i] for i in val]
    file = cache / f"{run.name}-fold{fold}{'-tta' if tta else ''}.npz" if cache else None
    if file and file.is_file():
        stored = np.load(file)
        if list(stored["indices"]) == list(val) and "step" in stored and int(stored["step"]) == ckpt["step"]:
            return fold, list(stored["cell"]), masks
    cells = [segment(data.images[i], predictor, cfg.depth, cfg.padding, None, 4, tta)[1] for i in val]
    if file:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, cell=np.stack(cells), indices=np.array(val), step=ckpt["step"])
        tmp.replace(file)
    return fold, cells, masks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cv_dir", type=Path, help="a `biounet cv` output folder (fold-K/last.pt)")
    parser.add_argument("--data", required=True, help="the ISBI 2012 folder the runs were trained on")
    parser.add_argument("--tta", action="store_true", help="segment with the 8 flips/rotations")
    parser.add_argument(
        "--cores",
        type=float,
        nargs="+",
        default=[0.7, 0.8, 0.9],
        help="core thresholds to choose from (default: 0.7 0.8 0.9)",
    )
    parser.add_argument("--min-size", type=int, default=50, help="smallest core in pixels (default: 50)")
    parser.add_argument("--extra", type=Path, nargs="*", default=[], help="more runs to score")
    parser.add_argument("--cache", type=Path, help="folder to keep the held-out cell probabilities in")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    try:
        folds = sorted(p for p in args.cv_dir.glob("fold-*") if (p / "last.pt").is_file())
        if len(folds) < 2:
            raise ConfigError(
                f"{args.cv_dir} holds {len(folds)} fold folder(s) with a last.pt; "
                "choosing on other folds needs at least 2: pass a `biounet cv` output folder"
            )
        if any(not 0 < c < 1 for c in args.cores) or args.min_size < 1:
            raise ConfigError("--cores must lie in (0, 1) and --min-size be at least 1")
        data = read_dataset(args.data)
        settings = [None] + list(args.cores)

        def tables(cells, masks):
            truths = [truth_segmentation(m == 1) for m in masks]
            return {
                s: vrand_table(cells if s is None else [watershed_map(c, s, args.min_size) for c in cells], truths)
                for s in settings
            }

        scored = {}
        for run in folds:
            fold, cells, masks = held_out_cells(run, data, args.tta, args.cache)
            scored[fold] = tables(cells, masks)
            print(f"{run}: fold {fold} scored", file=sys.stderr, flush=True)

        def choose(exclude: int) -> float:
            other = [k for k in scored if k != exclude]
            return max(args.cores, key=lambda s: stack_score(np.concatenate([scored[k][s] for k in other], axis=1)))

        named = [(f"fold-{k}", k, scored[k]) for k in sorted(scored)]
        for run in args.extra:
            fold, cells, masks = held_out_cells(run, data, args.tta, args.cache)
            named.append((str(run), fold, tables(cells, masks)))
        rows = []
        for name, fold, t in named:
            core = choose(fold)
            row = {
                "run": name,
                "fold": fold,
                "core": core,
                "v_rand_raw": stack_score(t[None]),
                "v_rand_watershed": stack_score(t[core]),
            }
            rows.append(row)
            print(
                f"{name:>24}  fold {fold}  core {core}  v_rand raw {row['v_rand_raw']:.4f}  "
                f"watershed {row['v_rand_watershed']:.4f}  ({row['v_rand_watershed'] - row['v_rand_raw']:+.4f})"
            )
        cv_rows = rows[: len(scored)]
        raw, ws = [r["v_rand_raw"] for r in cv_rows], [r["v_rand_watershed"] for r in cv_rows]
        print(
            f"{'cv mean':>24}  v_rand raw {np.mean(raw):.4f} +- {np.std(raw):.4f}  "
            f"watershed {np.mean(ws):.4f} +- {np.std(ws):.4f}"
        )
        if args.json:
            write_json({"min_size": args.min_size, "cores": args.cores, "tta": args.tta, "rows": rows}, args.json)
    except BiounetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
