"""The service without HTTP: its settings checked, the addresses it may bind to without a token, the
labels= values, an upload accepted into a file of the service's own naming, and a waiting request woken
when its job ends."""

import asyncio
import time

import numpy as np
import pytest
from support.service import em_like, png_bytes, tiff_bytes, tiny_model

from biounet.core.errors import ConfigError
from biounet.integrations.service.server import (
    Service,
    Settings,
    check_binding,
    check_labels,
    is_loopback,
    label_choices,
)
from biounet.integrations.service.uploads import UploadError


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model"))


@pytest.mark.parametrize(
    "settings, message",
    [
        (Settings(queue_size=0), "--queue-size must be positive"),
        (Settings(job_ttl=-1), "--job-ttl must be positive"),
        (Settings(max_upload_bytes=0), "--max-upload-mb must be positive"),
        (Settings(max_values=0), "--max-pixels must be positive"),
        (Settings(token="short"), "--token is 5 characters long; use at least 16"),
        (Settings(cors_origins=("*",)), "is not a web origin"),
        (Settings(cors_origins=("lab.example.org",)), "is not a web origin"),
    ],
)
def test_bad_settings_name_the_option(settings, message):
    with pytest.raises(ConfigError, match=message):
        settings.check()


def test_good_settings_pass():
    settings = Settings(token="x" * 16, cors_origins=("https://lab.example.org", "http://localhost:3000"))
    assert settings.check() is settings


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "::1", "[::1]"])
def test_loopback_addresses(host):
    assert is_loopback(host)
    check_binding(host, None)  # no token needed


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.org", "my-host"])
def test_any_other_address_needs_a_token(host):
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match=f"--host {host} is not a loopback address.*set --token"):
        check_binding(host, None)
    check_binding(host, "a-token-of-enough-length")


def test_labels_values():
    assert check_labels("none") is None
    assert check_labels("multicut") == "multicut"
    assert "none" in label_choices() and "watershed" in label_choices()
    with pytest.raises(ConfigError, match="labels='../etc' is not an instance method; use one of gasp"):
        check_labels("../etc")


def test_an_upload_becomes_a_job_whose_files_the_service_names(model, tmp_path):
    service = Service(model, Settings(work_dir=str(tmp_path)))
    service.start(asyncio.new_event_loop())
    try:
        png = service.accept(png_bytes(em_like(0)), "watershed", False)
        tif = service.accept(tiff_bytes(np.stack([em_like(1)] * 2)), None, True)
        assert png.options["source"].name == "input.png" and tif.options["source"].name == "input.tif"
        assert png.folder.parent == tif.folder.parent == service.root and png.folder != tif.folder
        assert service.root.parent == tmp_path
        assert png.options["source"].read_bytes() == png_bytes(em_like(0))
        assert (tif.options["labels"], tif.options["tta"], tif.options["declared"]) == (None, True, [2, 48, 48])
        with pytest.raises(UploadError):
            service.accept(b"not an image", None, False)
        assert len(list(service.root.iterdir())) == 2  # nothing left for the refused one
    finally:
        service.stop()
    assert not (tmp_path / service.root.name).exists()


def test_a_waiting_request_is_woken_when_its_job_ends(model, tmp_path):
    service = Service(model, Settings(work_dir=str(tmp_path)))

    async def scenario():
        service.start(asyncio.get_running_loop())
        job = service.accept(png_bytes(em_like(2, 64)), None, False)
        service.store.submit(job)
        started = time.monotonic()
        await service.wait(job, 30)
        waited = time.monotonic() - started
        timed_out_at = time.monotonic()
        await service.wait(job, 30)  # ended: answers at once
        return job, waited, time.monotonic() - timed_out_at

    try:
        job, waited, again = asyncio.run(scenario())
    finally:
        service.stop()
    assert job.status == "done" and waited < 10 and again < 0.1
