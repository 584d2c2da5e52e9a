"""biounet.cli.score: the challenge's measures of any tool's probability TIFF, and its files checked."""

import json
import struct

import numpy as np
import pytest
import tifffile

from biounet.cli import main


@pytest.fixture
def files(tmp_path):
    labels = np.full((2, 32, 32), 255, np.uint8)
    labels[:, 15:17, :] = 0  # a membrane across each slice
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    tifffile.imwrite(tmp_path / "probs.tif", (labels == 0).astype(np.float32))  # a perfect membrane map
    return tmp_path


def test_a_perfect_map_scores_perfectly(capsys, files):
    assert main(["score", str(files / "labels.tif"), str(files / "probs.tif"), "--json", str(files / "r.json")]) == 0
    report = json.loads((files / "r.json").read_text())
    assert report["v_rand"] == pytest.approx(1.0) and "v_rand" in capsys.readouterr().out


@pytest.mark.parametrize("which", ["LABELS", "PROBS"])
def test_a_file_that_is_not_there_is_named(capsys, files, which):
    args = [files / "labels.tif", files / "probs.tif"]
    args[which == "PROBS"] = files / "gone.tif"
    assert main(["score", *map(str, args)]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        f"{which} {files / 'gone.tif'}: no such file or folder; give the (Z, H, W)" in err
        and len(err.splitlines()) == 1
    )


def test_bad_indices(capsys, files):
    assert main(["score", str(files / "labels.tif"), str(files / "probs.tif"), "--indices", "0,x"]) == 2
    assert "--indices must be comma-separated slice numbers" in capsys.readouterr().err


def test_a_damaged_tiff_gives_one_line_without_tifffile_log_lines(tmp_path, capsys):
    # found by tests/support/fuzzing.py: tifffile logs each broken page ("<tifffile.TiffPages @8> invalid page
    # offset ...") on stderr before raising, above biounet's one-line error
    good, bad = tmp_path / "labels.tif", tmp_path / "probs.tif"
    tifffile.imwrite(good, np.zeros((8, 8), np.uint8))
    data = bytearray(good.read_bytes())
    data[4:8] = struct.pack("<I", len(data) + 1000)  # the first page lies past the end of the file
    bad.write_bytes(bytes(data))
    assert main(["score", str(good), str(bad)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("biounet score: error:"), err
