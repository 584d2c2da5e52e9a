"""biounet.cli.fetch: the folder and the mirrors checked before any download (the download itself is
tests/data/test_fetch.py's)."""

import pytest

import biounet.data.fetch as fetcher
from biounet.cli import main


@pytest.fixture
def handed(monkeypatch):
    calls = []
    monkeypatch.setattr(
        fetcher, "fetch_isbi2012", lambda folder, urls=None, timeout=60.0: calls.append((folder, urls, timeout))
    )
    return calls


def test_the_mirrors_and_timeout_reach_the_downloader(tmp_path, handed):
    urls = ["https://example.org/isbi", "file:///srv/isbi"]
    assert main(["fetch", "isbi2012", str(tmp_path / "d"), "--url", urls[0], "--url", urls[1], "--timeout", "5"]) == 0
    assert handed == [(str(tmp_path / "d"), urls, 5.0)]
    assert main(["fetch", "isbi2012", str(tmp_path / "d")]) == 0
    assert handed[-1][1] is None  # the known public locations


@pytest.mark.parametrize(
    "args, message",
    [
        (["--url", "example.org/isbi"], "--url 'example.org/isbi' is not a base URL; give one such as https://"),
        (["--url", "https://"], "--url 'https://' is not a base URL"),
        (["--timeout", "inf"], "--timeout must be a positive number"),  # found by fuzzing: overflowed the socket
        (["--timeout", "nan"], "--timeout must be a positive number"),
        (["--timeout", "0"], "--timeout must be a positive number"),
    ],
)
def test_bad_mirrors_and_timeouts_are_one_line(capsys, tmp_path, handed, args, message):
    assert main(["fetch", "isbi2012", str(tmp_path / "d"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not handed


def test_a_folder_that_is_a_file(capsys, tmp_path, handed):
    (tmp_path / "taken").write_text("mine")
    assert main(["fetch", "isbi2012", str(tmp_path / "taken")]) == 2
    assert "DIR" in capsys.readouterr().err and not handed
