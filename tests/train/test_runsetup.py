"""Setting up a run: the run folder is checked before any work."""

import pytest

from biounet.core.errors import ConfigError
from biounet.train.runsetup import check_new_run_dir


def test_a_new_or_empty_folder_is_accepted(tmp_path):
    check_new_run_dir(tmp_path / "new" / "run")  # made later, by the run
    (tmp_path / "empty").mkdir()
    check_new_run_dir(tmp_path / "empty")


def test_a_folder_holding_a_run_names_resume(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match=f"already holds a run; continue it with --resume {tmp_path}"):
        check_new_run_dir(tmp_path)


def test_a_file_is_not_a_run_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_new_run_dir(tmp_path / "f")
    with pytest.raises(ConfigError, match="is a file, so the folder cannot be made there"):
        check_new_run_dir(tmp_path / "f" / "run")


def test_context_for_independent_images_is_refused_before_the_run_starts(tmp_path):
    import numpy as np
    from support import tiny_config, write_pairs

    from biounet.train.engine import train

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64), dtype=np.uint8) for _ in range(3)]
    masks = [np.where(rng.random((64, 64)) > 0.3, 255, 0).astype(np.uint8) for _ in range(3)]
    folder = write_pairs(tmp_path / "pairs", images, masks)
    cfg = tiny_config(data=str(folder), out=str(tmp_path / "run"), context=1, fold="all")
    with pytest.raises(ConfigError, match="--context 1 .*independent 2D images.*use --context 0"):
        train(cfg, quiet=True)
    assert not (tmp_path / "run").exists()
