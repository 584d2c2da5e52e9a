"""Per-object measurements of an instance segmentation: one row per cell of every slice (scikit-image's
``regionprops_table``), written as a CSV beside the labels (``predict --labels``, the napari widget).

Columns: ``slice``, ``label``, ``area``, ``perimeter``, ``equivalent_diameter``, ``mean_intensity``,
``centroid_y``, ``centroid_x`` and ``unit``. Lengths and areas are in the image's calibrated unit when
its pixel size is known (``unit`` names it, areas in unit^2), else in pixels (``unit`` = ``pixel``): one
header whatever the calibration, so that a script reading the table works on every file. The
perimeter is scikit-image's (4-connected contour, corners weighted), the equivalent diameter that of
the disc of the same area. The table is written as it is measured, slice by slice
(:func:`write_objects_csv` takes any iterable of rows), so a volume's never has to be held. No torch.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from biounet.core.errors import DataError
from biounet.io.fileio import atomic_write

COLUMNS = (
    "slice",
    "label",
    "area",
    "perimeter",
    "equivalent_diameter",
    "mean_intensity",
    "centroid_y",
    "centroid_x",
    "unit",
)


def _as_stack(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        return a[None]
    if a.ndim != 3:
        raise DataError(f"{what} of shape {a.shape}: expected (H, W) or (Z, H, W)")
    return a


def measure_objects(
    labels: np.ndarray,
    image: np.ndarray,
    pixel_size: tuple[float, float] | None = None,
    unit: str = "pixel",
    origin: tuple[int, int, int] = (0, 0, 0),
) -> list[dict[str, object]]:
    """Rows of :data:`COLUMNS` for every instance of ``labels`` ((H, W) or (Z, H, W) integers, 0 =
    background) measured on ``image`` of the same shape (the raw intensities). ``pixel_size`` (y, x)
    converts pixels to ``unit``; a non-square pixel is refused (the perimeter would need the contour's
    directions). ``origin`` (z, y, x): where ``labels[0, 0, 0]`` lies in the image the table describes
    (a slice of a stack, a region of interest), added to the slice index and the centroids."""
    from skimage.measure import regionprops_table

    stack, pixels = _as_stack(labels, "labels"), _as_stack(image, "image")
    if stack.shape != pixels.shape:
        raise DataError(
            f"labels of shape {stack.shape} and image of shape {pixels.shape} differ; pass the image segmented"
        )
    if not np.issubdtype(stack.dtype, np.integer):
        raise DataError(f"labels of type {stack.dtype}: expected integers (an instance map)")
    scale = 1.0
    if pixel_size is not None:
        if not np.isclose(pixel_size[0], pixel_size[1]):
            raise DataError(f"pixel size {pixel_size} is not square; measure in pixels (no pixel size)")
        scale = float(pixel_size[0])
    else:
        unit = "pixel"
    rows: list[dict[str, object]] = []
    props = ("label", "area", "perimeter", "equivalent_diameter_area", "intensity_mean", "centroid")
    oz, oy, ox = origin
    for z, (lab, img) in enumerate(zip(stack, pixels)):
        table = regionprops_table(lab.astype(np.int64), intensity_image=img.astype(np.float64), properties=props)
        for k in range(len(table["label"])):
            rows.append(
                {
                    "slice": oz + z,
                    "label": int(table["label"][k]),
                    "area": float(table["area"][k]) * scale**2,
                    "perimeter": float(table["perimeter"][k]) * scale,
                    "equivalent_diameter": float(table["equivalent_diameter_area"][k]) * scale,
                    "mean_intensity": float(table["intensity_mean"][k]),
                    "centroid_y": (oy + float(table["centroid-0"][k])) * scale,
                    "centroid_x": (ox + float(table["centroid-1"][k])) * scale,
                    "unit": unit,
                }
            )
    return rows


def _write_rows(f: IO[str], rows: Iterable[dict[str, object]]) -> None:
    writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def objects_csv(rows: Iterable[dict[str, object]]) -> str:
    """The rows as CSV text with a header (``%.6g`` for measurements)."""
    out = io.StringIO()
    _write_rows(out, rows)
    return out.getvalue()


def write_objects_csv(path: str | Path, rows: Iterable[dict[str, object]]) -> Path:
    """Write the rows as :func:`objects_csv` does, each as it comes (a generator of one slice's rows after
    another holds one slice at a time), into a temporary file renamed over ``path`` at the end: a run
    that fails half-way leaves the old table, or none, never a partial one."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            _write_rows(f, rows)

    return atomic_write(path, write)


@dataclass
class ObjectTally:
    """The objects of rows passing through :meth:`counted`, for the one-line summary."""

    count: int = 0
    area: float = 0.0
    unit: str = "pixel"

    def counted(self, rows: Iterable[dict[str, object]]) -> Iterator[dict[str, object]]:
        """The rows unchanged, counted on their way (to :func:`write_objects_csv`)."""
        for row in rows:
            self.count += 1
            self.area += float(row["area"])  # type: ignore[arg-type]
            self.unit = str(row["unit"])
            yield row

    def summary(self) -> str:
        """E.g. ``412 objects, mean area 0.0213 micron^2`` (in ``pixels`` uncalibrated)."""
        if not self.count:
            return "no objects"
        unit = "pixels" if self.unit == "pixel" else f"{self.unit}^2"
        return f"{self.count} objects, mean area {self.area / self.count:.4g} {unit}"
