import csv
import math

import numpy as np
import pytest

from biounet.core.errors import DataError
from biounet.instances.measure import COLUMNS, ObjectTally, measure_objects, objects_csv, write_objects_csv


def _two_squares() -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros((20, 30), np.uint32)
    labels[2:6, 3:7] = 1  # 4 x 4
    labels[10:18, 20:28] = 5  # 8 x 8
    image = np.zeros((20, 30), np.uint8)
    image[2:6, 3:7] = 10
    image[10:18, 20:28] = 200
    return labels, image


def test_each_object_is_measured_by_hand_computable_values():
    labels, image = _two_squares()
    rows = measure_objects(labels, image)
    assert [r["label"] for r in rows] == [1, 5]
    small, big = rows
    assert small["area"] == 16 and big["area"] == 64
    assert small["equivalent_diameter"] == pytest.approx(2 * math.sqrt(16 / math.pi))
    assert small["mean_intensity"] == 10 and big["mean_intensity"] == 200
    assert (small["centroid_y"], small["centroid_x"]) == (3.5, 4.5)
    assert big["perimeter"] > small["perimeter"] > 0
    assert {r["unit"] for r in rows} == {"pixel"}


def test_a_stack_is_measured_per_slice_and_calibration_scales_lengths_and_areas():
    labels, image = _two_squares()
    stack = np.stack([labels, np.where(labels == 5, 0, labels)])
    pixels = np.stack([image, image])
    plain = measure_objects(stack, pixels)
    assert [(r["slice"], r["label"]) for r in plain] == [(0, 1), (0, 5), (1, 1)]
    scaled = measure_objects(stack, pixels, pixel_size=(0.5, 0.5), unit="micron")
    for a, b in zip(plain, scaled):
        assert b["area"] == pytest.approx(a["area"] * 0.25)
        assert b["perimeter"] == pytest.approx(a["perimeter"] * 0.5)
        assert b["unit"] == "micron"


def test_the_csv_holds_one_row_per_object(tmp_path):
    labels, image = _two_squares()
    path = write_objects_csv(tmp_path / "x_objects.csv", measure_objects(labels, image))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 2 and rows[1]["area"] == "64"


@pytest.mark.parametrize(
    "labels, image, match",
    [
        (np.zeros((4, 4), np.uint32), np.zeros((4, 5)), "differ"),
        (np.zeros((4, 4), np.float32), np.zeros((4, 4)), "integers"),
        (np.zeros((2, 2, 4, 4), np.uint32), np.zeros((2, 2, 4, 4)), "expected"),
    ],
)
def test_bad_inputs_are_named(labels, image, match):
    with pytest.raises(DataError, match=match):
        measure_objects(labels, image)


def test_a_non_square_pixel_is_refused():
    labels, image = _two_squares()
    with pytest.raises(DataError, match="not square"):
        measure_objects(labels, image, pixel_size=(1.0, 2.0), unit="micron")


def test_an_origin_places_the_rows_in_the_whole_image():
    labels, image = _two_squares()
    rows = measure_objects(labels, image, pixel_size=(0.5, 0.5), unit="micron", origin=(7, 10, 20))
    assert rows[0]["slice"] == 7
    assert (rows[0]["centroid_y"], rows[0]["centroid_x"]) == ((10 + 3.5) * 0.5, (20 + 4.5) * 0.5)


def test_rows_are_written_as_they_come_and_counted():
    labels, image = _two_squares()
    tally = ObjectTally()
    given = []

    def rows():
        for z in range(3):  # one slice at a time
            given.append(z)
            yield from measure_objects(labels, image, origin=(z, 0, 0))

    text = objects_csv(tally.counted(rows()))
    assert given == [0, 1, 2] and len(text.splitlines()) == 1 + 6
    assert (tally.count, tally.summary()) == (6, "6 objects, mean area 40 pixels")
    assert ObjectTally().summary() == "no objects"
    calibrated = ObjectTally()
    list(calibrated.counted(measure_objects(labels, image, pixel_size=(0.5, 0.5), unit="micron")))
    assert calibrated.summary() == "2 objects, mean area 10 micron^2"


def test_a_table_that_fails_half_way_leaves_the_old_one_whole(tmp_path):
    labels, image = _two_squares()
    path = write_objects_csv(tmp_path / "x_objects.csv", measure_objects(labels, image))
    before = path.read_text()

    def failing():
        yield from measure_objects(labels, image)
        raise RuntimeError("slice 1 failed")

    with pytest.raises(RuntimeError, match="slice 1 failed"):
        write_objects_csv(path, failing())
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x_objects.csv"]  # no temporary left
    write_objects_csv(path, [])  # replaced: a table of no objects is its header
    assert path.read_text() == ",".join(COLUMNS) + "\n"
