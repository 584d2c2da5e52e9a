"""``biounet serve``'s options: defaults, the checks made before the model loads (one clear line each),
and the command itself in a subprocess (``python -m biounet serve``): it serves on a free
loopback port, refuses a public address without a token, and cleans up when stopped."""

import argparse
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from support.service import Client, em_like, png_bytes, tiny_model

from biounet.cli import build_parser
from biounet.core.errors import ConfigError
from biounet.integrations.service import command

pytestmark = pytest.mark.timeout(180)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def test_the_defaults_serve_the_built_in_model_on_this_machine_only():
    args = parse()
    assert (args.model, args.host, args.port, args.cors_origin) == ("isbi2012-membranes", "127.0.0.1", 8000, [])
    settings = command.settings_from(args)
    assert settings.cors_origins == () and settings.max_upload_bytes == 64 * 2**20


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--threads", "-1"], "--threads must not be negative"),
        (["--tile-batch", "0"], "--tile-batch must be at least 1"),
        (["--tile", "0"], "--tile must be between 1 and"),
        (["--device", "gpu"], "--device must be auto, cpu, cuda or cuda:N"),
        (["--queue-size", "0"], "--queue-size must be positive"),
        (["--token", "abc"], "--token is 3 characters long"),
        (["--cors-origin", "*"], "is not a web origin"),
        (["--host", "0.0.0.0"], "--host 0.0.0.0 is not a loopback address"),
    ],
)
def test_bad_options_fail_before_the_model_loads(argv, message):
    with pytest.raises(ConfigError, match=message):
        command.settings_from(parse(*argv))


def test_a_public_address_is_served_with_a_token_from_the_environment(monkeypatch):
    monkeypatch.setenv(command.TOKEN_ENV, "from-the-environment-0123")
    settings = command.settings_from(parse("--host", "0.0.0.0"))
    assert settings.token == "from-the-environment-0123"


def test_the_model_is_opened_as_every_command_opens_one(tmp_path):
    tiny_model(tmp_path)
    served = command.open_served(parse("--model", str(tmp_path / "tiny.pt"), "--tile-batch", "2", "--tile", "92"))
    assert served.name == "tiny.pt"  # the file's name, not the server's path
    assert (served.batch_size, served.tile, served.cfg.classes) == (2, 92, 2)
    with pytest.raises(ConfigError, match="not a built-in model"):
        command.open_served(parse("--model", "no-such-model"))


def start(*argv: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "biounet", "serve", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_the_command_serves_until_stopped_and_leaves_nothing_behind(tmp_path):
    tiny_model(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    server = start("--model", str(tmp_path / "tiny.pt"), "--port", "0", "--threads", "1", "--work-dir", str(work))
    try:
        port, deadline = None, time.monotonic() + 120
        while port is None and time.monotonic() < deadline:
            line = server.stderr.readline()
            assert line or server.poll() is None, f"the server ended: {server.stderr.read()}"
            found = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
            port = int(found.group(1)) if found else None
        assert port, "the server did not say where it listens"
        client = Client(port)
        job = client.wait_done(client.submit(png_bytes(em_like(0))).json()["status_url"])
        assert job["status"] == "done" and len(list(work.iterdir())) == 1
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    # uvicorn stops gracefully, then (recent versions) ends by the signal it was sent, as a shell expects
    assert server.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in err, err
    assert "biounet serve: tiny.pt on cpu" in out
    assert list(work.iterdir()) == []  # every job's files went with the server


def test_the_command_refuses_a_public_address_without_a_token_in_one_line():
    server = start("--host", "0.0.0.0", env={command.TOKEN_ENV: ""})
    out, err = server.communicate(timeout=120)
    assert server.returncode == 2
    assert err.strip().splitlines() == [
        "biounet serve: error: --host 0.0.0.0 is not a loopback address, so anyone who reaches this machine could "
        "use the service; set --token (or BIOUNET_SERVE_TOKEN) to require it, or serve on 127.0.0.1"
    ]
