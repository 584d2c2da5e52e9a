import numpy as np
import pytest
from PIL import Image

from biounet.core.errors import DataError
from biounet.io.fileio import atomic_write, atomic_write_text, write_png


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_text(target, "old")

    def half_then_crash(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, half_then_crash, durable=True)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_the_temporary_keeps_the_suffix(tmp_path):
    seen = []
    atomic_write(tmp_path / "x.png", lambda tmp: (seen.append(tmp.suffix), tmp.write_bytes(b"1")))
    assert seen == [".png"] and (tmp_path / "x.png").read_bytes() == b"1"


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    """SIGKILL mid-write leaves .NAME.tmp-PID.EXT; the next write of NAME deletes it if PID is gone."""
    import os
    import subprocess
    import sys

    from biounet.io.fileio import remove_stale_temporaries

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f".last.tmp-{gone.pid}.pt"
    live = tmp_path / f".last.tmp-{os.getppid()}.pt"  # a writer still running: kept
    other = tmp_path / f".step_0000003.tmp-{gone.pid}.pt"  # another target's: left to its own next write
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    atomic_write(tmp_path / "last.pt", lambda tmp: tmp.write_bytes(b"whole"), durable=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["last.pt", live.name, other.name])
    assert remove_stale_temporaries(tmp_path / "step_0000003.pt") == [other]
    assert remove_stale_temporaries(tmp_path / "step_0000003.pt") == []


@pytest.mark.parametrize("shape", [(8, 18), (8, 18, 3), (8, 18, 4)])
def test_a_png_reads_back_pixel_for_pixel_and_leaves_no_temporary(tmp_path, shape):
    picture = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    assert write_png(tmp_path / "o.png", picture) == tmp_path / "o.png"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), picture)
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"]


@pytest.mark.parametrize(("dtype", "shape"), [(np.float32, (8, 8, 3)), (np.uint8, (8, 8, 2)), (np.uint8, (2, 8, 8, 3))])
def test_a_png_of_another_type_or_shape_is_refused_before_writing(tmp_path, dtype, shape):
    with pytest.raises(DataError, match=r"uint8.*convert it"):
        write_png(tmp_path / "o.png", np.zeros(shape, dtype))
    assert not list(tmp_path.iterdir())
