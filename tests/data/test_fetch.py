import functools
import http.server
import shutil
import threading

import pytest

from biounet.core.errors import DataError
from biounet.data.fetch import fetch_isbi2012


@pytest.fixture()
def server(tmp_path, isbi_dir):
    """A local HTTP server with a good mirror (/good) and one with a damaged file (/bad)."""
    root = tmp_path / "www"
    (root / "good").mkdir(parents=True)
    (root / "bad").mkdir()
    for name in ("train-volume.tif", "train-labels.tif", "test-volume.tif"):
        shutil.copy(isbi_dir / name, root / "good" / name)
        shutil.copy(
            isbi_dir / "test-volume.tif" if name != "test-volume.tif" else isbi_dir / "train-volume.tif",
            root / "bad" / name,
        )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_fetch_downloads_and_verifies(server, tmp_path):
    out = tmp_path / "isbi"
    # the first mirror serves wrong pixels, the second the real data
    paths = fetch_isbi2012(out, urls=[f"{server}/bad", f"{server}/good"], log=lambda *_: None)
    assert sorted(p.name for p in out.iterdir()) == ["test-volume.tif", "train-labels.tif", "train-volume.tif"]
    assert len(paths) == 3
    # a second fetch only verifies what is there
    assert fetch_isbi2012(out, urls=["http://127.0.0.1:9/"], log=lambda *_: None) == paths


def test_fetch_without_network_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="copy them into .* and run this command again"):
        fetch_isbi2012(tmp_path, urls=["http://127.0.0.1:9"], timeout=2, log=lambda *_: None)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_fetch_refuses_wrong_checksums(server, tmp_path):
    out = tmp_path / "isbi"
    with pytest.raises(DataError, match="do not match the expected SHA-256"):
        fetch_isbi2012(out, urls=[f"{server}/bad"], log=lambda *_: None)
    assert not list(out.iterdir())
