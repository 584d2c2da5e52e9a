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
