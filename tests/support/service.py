"""Helpers of the ``biounet serve`` tests: a tiny served model, a real uvicorn server on a free loopback
port (in a thread), an HTTP client of the standard library, and a headless Chromium.

The server is the one ``biounet serve`` runs (uvicorn with the app of ``create_app``), on port 0 so
that the kernel picks a free port; requests go to 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from biounet.integrations.service.work import ServedModel
from biounet.model.checkpoint import atomic_save, payload
from biounet.model.unet import build_model
from biounet.models import open_model
from support import tiny_config

# Debian's chromium, driven by Playwright (whose own browser download is not reachable); the flags keep
# it from contacting anything but the test's server
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def tiny_model(folder: Path, seed: int = 0) -> ServedModel:
    """An untrained tiny U-Net (width 4, depth 2) saved as a checkpoint and opened as the service opens one."""
    import torch

    torch.manual_seed(seed)
    cfg = tiny_config(data=str(folder / "data"))
    path = folder / "tiny.pt"
    atomic_save(payload(cfg.to_saved(), 1, build_model(cfg).state_dict()), path)
    predictor, cfg, _ = open_model(path, "cpu", "fp32", 0)
    return ServedModel(predictor, cfg, "tiny.pt")


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def tiff_bytes(pixels: np.ndarray) -> bytes:
    import tifffile

    out = io.BytesIO()
    tifffile.imwrite(out, pixels, photometric="minisblack")  # (Z, Y, X): slices, never colour planes
    return out.getvalue()


def em_like(seed: int, size: int = 48) -> np.ndarray:
    """A small uint8 grey image, different for every seed."""
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class Client:
    """HTTP/1.1 requests to the server at ``port`` of 127.0.0.1, one connection each."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port, self.token = port, token

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout=60
    ) -> Answer:
        sent = dict(headers or {})
        if self.token and "Authorization" not in sent:
            sent["Authorization"] = f"Bearer {self.token}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            conn.close()

    def get(self, path: str, **kwargs) -> Answer:
        return self.request("GET", path, **kwargs)

    def submit(self, image: bytes, query: str = "labels=watershed&tta=0") -> Answer:
        return self.request("POST", f"/api/v1/jobs?{query}", body=image, headers={"Content-Type": "image/png"})

    def wait_done(self, status_url: str, timeout: float = 60.0) -> dict:
        """The job's last status once it is done or failed (long polls; fails after ``timeout`` s)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            job = self.get(f"{status_url}?wait=5").json()
            if job["status"] in ("done", "failed"):
                return job
        raise AssertionError(f"job {status_url} did not end within {timeout} s")


@contextlib.contextmanager
def running(app, timeout: float = 30.0) -> Iterator[int]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1 in a thread; yields the port, and stops
    the server (its lifespan: the worker and the work folder) on exit."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    end = time.monotonic() + timeout
    while not server.started:
        assert thread.is_alive() and time.monotonic() < end, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout)
        assert not thread.is_alive(), "the server did not stop"


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium (Debian's) under Playwright; yields the browser."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/system-packages)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
