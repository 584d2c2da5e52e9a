"""``predict --labels``'s table of objects: ``<stem>_objects.csv`` beside the cells, one row per cell of every
slice, measured by :mod:`biounet.instances.measure` on the input's own intensities (not the network's
scaled input) and in the input's calibrated unit when it declares one.

Image files and stacks are measured from the arrays ``predict`` holds; a volume's table is made after
its store is complete, one slice at a time (its cells read back from the store, its pixels from the
input), so that the whole volume is never held. Either way the table is written into a temporary file
renamed into place at the end: a run that stops half-way leaves the previous table or none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from biounet.instances.measure import ObjectTally, measure_objects, write_objects_csv
from biounet.io.metadata import UNCALIBRATED, unit_name
from biounet.io.omezarr import OutputStore
from biounet.io.volumes import Volume

OBJECTS_SUFFIX = "_objects.csv"  # beside <stem>_labels.tif (image files) and <stem>.ome.zarr (volumes)

# (slice index in the input, (H, W) cell ids, (H, W) or (H, W, C) raw pixels of the same region)
Slice = tuple[int, np.ndarray, np.ndarray]


def objects_path(out_dir: str | Path, stem: str) -> Path:
    """Where the table of input ``stem``'s objects goes: ``out_dir/<stem>_objects.csv``."""
    return Path(out_dir) / f"{stem}{OBJECTS_SUFFIX}"


def intensities(pixels: np.ndarray, alpha: bool = False) -> np.ndarray:
    """(H, W) intensities of raw (H, W) or (H, W, C) pixels: a grey image as it is, the mean of the channels
    for more than one. ``alpha``: the last of 2 or 4 channels is an (opaque) alpha channel, left out."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        return pixels
    if alpha and pixels.shape[-1] in (2, 4):
        pixels = pixels[..., :-1]
    return pixels.astype(np.float64).mean(-1)


def calibration(
    pixel_size: tuple[float, float] | None, unit: str | None, name: str, log: Callable[[str], object] = print
) -> tuple[tuple[float, float] | None, str]:
    """((y, x) pixel size or None, unit) to measure in: the input's calibration, or pixels when it declares
    none or no unit; a non-square pixel is measured in pixels too, with one line saying so."""
    if pixel_size is None or unit is None or unit_name(unit) in UNCALIBRATED:
        return None, "pixel"
    if not np.isclose(pixel_size[0], pixel_size[1]):
        y, x = pixel_size
        log(f"{name}: pixels of {y:g} x {x:g} {unit} (y x) are not square; its objects are measured in pixels")
        return None, "pixel"
    return (float(pixel_size[0]), float(pixel_size[1])), unit_name(unit)


def write_objects(
    path: str | Path,
    slices: Iterable[Slice],
    pixel_size: tuple[float, float] | None = None,
    unit: str = "pixel",
    origin: tuple[int, int] = (0, 0),
    alpha: bool = False,
    tally: ObjectTally | None = None,
) -> ObjectTally:
    """Measure the cells of each slice as it comes and write the table to ``path`` (atomically, at the end);
    ``origin`` (y, x): where the slices' first pixel lies in the input (a region of interest). Returns the
    tally (``tally`` if given) for the summary line."""
    tally = tally if tally is not None else ObjectTally()

    def rows() -> Iterator[dict[str, object]]:
        for z, cells, pixels in slices:
            image = intensities(pixels, alpha)
            yield from measure_objects(cells, image, pixel_size, unit, origin=(z, *origin))

    write_objects_csv(path, tally.counted(rows()))
    return tally


def write_volume_objects(
    volume: Volume, store: OutputStore, roi: tuple[slice, ...], log: Callable[[str], object] = print
) -> Path:
    """The table of the cells in ``store`` (complete, with labels), measured on ``volume``'s pixels of the
    region ``roi`` slice by slice, written beside the store; logs the summary. Returns the table's path."""
    oz, oy, ox = (s.start for s in roi)
    depth, h, w = store.spec.shape

    def slices() -> Iterator[Slice]:
        for z in range(depth):
            cells = store.read("cells", (slice(z, z + 1), slice(0, h), slice(0, w)))[0]
            yield oz + z, cells, volume.read(oz + z, roi[1], roi[2])

    size = (volume.voxel_size[1], volume.voxel_size[2]) if volume.voxel_size else None
    scale, unit = calibration(size, volume.unit, volume.spec, log)
    path = objects_path(store.path.parent, volume.name)
    tally = write_objects(path, slices(), scale, unit, origin=(oy, ox))
    log(f"{volume.spec}: {tally.summary()} -> {path}")
    return path
