"""biounet.data.folders: datasets in folders (the ISBI layout and image/mask pairs) with painted masks; the
dense masks of both layouts are tested in test_readers.py."""

import numpy as np
import pytest
from support import write_pairs

from biounet.core.errors import DataError
from biounet.data.folders import read_dataset, read_isbi, read_pairs
from biounet.data.readers import IGNORE


def _painted_pairs(tmp_path, top=3):
    image = np.arange(24 * 24, dtype=np.uint8).reshape(24, 24)
    painted = np.zeros((24, 24), np.uint8)
    painted[2:6, 2:6], painted[10:12, 10:14], painted[20, 20] = 1, 2, top
    empty = np.zeros((24, 24), np.uint8)  # nothing painted: an image of the dataset all the same
    return write_pairs(tmp_path / "pairs", [image, image], [painted, empty]), painted


def test_painted_pairs_read_unpainted_pixels_as_unlabelled(tmp_path):
    folder, painted = _painted_pairs(tmp_path)
    for data in (read_pairs(folder, classes=3, painted=True), read_dataset(folder, classes=3, painted=True)):
        assert data.names == ["img00", "img01"]
        np.testing.assert_array_equal(data.masks[0], painted.astype(np.int16) - 1)
        assert (data.masks[0] == IGNORE).sum() == 24 * 24 - 16 - 8 - 1 and (data.masks[1] == IGNORE).all()


def test_a_painted_value_above_the_classes_names_the_file(tmp_path):
    folder, _ = _painted_pairs(tmp_path, top=5)
    with pytest.raises(DataError, match=r"masks/img00\.png holds the painted value\(s\) 5, .*set --classes"):
        read_dataset(folder, classes=3, painted=True)


def test_isbi_labels_are_not_painted_annotations(isbi_dir):
    """The ISBI labels are 0/255 class masks: read as painted, 255 is named as a value above --classes."""
    with pytest.raises(DataError, match=r"train-labels\.tif slice 0 holds the painted value\(s\) 255"):
        read_isbi(isbi_dir, painted=True)
