"""The running service without its HTTP: its settings (limits, token, origins), its work folder, the
job store and the worker, and the acceptance of an upload as a job. The web app (:mod:`.app`) holds
one :class:`Service` and turns its answers into responses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biounet.core.errors import ConfigError
from biounet.instances.methods import METHODS
from biounet.integrations.service.jobs import FINISHED, Job, JobStore, Worker, new_job_id
from biounet.integrations.service.uploads import SUFFIXES, check_upload
from biounet.integrations.service.work import INPUT_STEM, ServedModel, run_job

NO_LABELS = "none"  # labels=none: the membrane probability only
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class Settings:
    """What a service allows. ``token``: the bearer token every API call but health must carry (None:
    no token); ``cors_origins``: the web origins allowed to call it from a browser (none: same origin
    only); ``queue_size``: jobs that may wait; ``job_ttl``: seconds a finished job is kept;
    ``max_upload_bytes`` and ``max_values`` (pixel values declared by the header): the largest image;
    ``work_dir``: where the jobs' folders are made (None: the system's temporary folder)."""

    token: str | None = None
    cors_origins: tuple[str, ...] = ()
    queue_size: int = 8
    job_ttl: float = 600.0
    max_upload_bytes: int = 64 * 2**20
    max_values: int = 2**26
    work_dir: str | None = None

    def check(self) -> Settings:
        """Self, or a ConfigError naming the option and what it must be."""
        limits = {
            "--queue-size": self.queue_size,
            "--job-ttl": self.job_ttl,
            "--max-upload-mb": self.max_upload_bytes,
            "--max-pixels": self.max_values,
        }
        for flag, value in limits.items():
            if not value > 0:
                raise ConfigError(f"{flag} must be positive, got {value}")
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"--token is {len(self.token)} characters long; use at least {MIN_TOKEN_LENGTH} random ones, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe())'`"
            )
        for origin in self.cors_origins:
            if origin == "*" or not origin.startswith(("http://", "https://")):
                raise ConfigError(
                    f"--cors-origin {origin!r} is not a web origin; give one like https://lab.example.org "
                    "(scheme and host, no wildcard), once per origin"
                )
        return self


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost); any other name or address
    may be reachable from elsewhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"--host {host} is not a loopback address, so anyone who reaches this machine could use the "
            f"service; set --token (or BIOUNET_SERVE_TOKEN) to require it, or serve on 127.0.0.1"
        )


def check_labels(labels: str) -> str | None:
    """The instance method of ``labels=`` (None for 'none'), or a ConfigError listing the choices."""
    if labels == NO_LABELS:
        return None
    if labels not in METHODS:
        raise ConfigError(f"labels={labels[:40]!r} is not an instance method; use one of {', '.join(label_choices())}")
    return labels


def label_choices() -> list[str]:
    return [*sorted(METHODS), NO_LABELS]


class Service:
    """One model served: the job store, its worker thread and the folder of the jobs' files."""

    def __init__(self, model: ServedModel, settings: Settings) -> None:
        self.model, self.settings = model, settings.check()
        self.store = JobStore(settings.queue_size, settings.job_ttl, on_finish=self._finished)
        self.worker = Worker(self.store, self._work)
        self.root: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, asyncio.Event] = {}

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make the work folder and start the worker (``loop``: the server's, to wake waiting requests)."""
        self._loop = loop
        self.root = Path(tempfile.mkdtemp(prefix="biounet-serve-", dir=self.settings.work_dir))
        self.worker.start()

    def stop(self) -> None:
        """Stop the worker (after its current slice) and delete every job's files."""
        self.worker.stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def accept(self, body: bytes, labels: str | None, tta: bool) -> Job:
        """A new job for an upload whose header passed the checks (:func:`.uploads.check_upload`: 413 or
        415 otherwise), its bytes written to a file of the service's choosing. Not yet queued."""
        assert self.root is not None, "Service.start makes the work folder"
        upload = check_upload(body, self.settings.max_values)
        folder = Path(tempfile.mkdtemp(prefix="job-", dir=self.root))
        source = folder / f"{INPUT_STEM}{SUFFIXES[upload.format]}"
        source.write_bytes(body)
        options: dict[str, Any] = {"labels": labels, "tta": tta, "source": source, "declared": list(upload.shape)}
        aliases = {str(source): "the uploaded image", str(folder): "the job's folder"}
        return Job(new_job_id(), folder, options, aliases=aliases)

    def delete(self, job_id: str) -> bool:
        """Forget a job and its files (see :meth:`.jobs.JobStore.delete`); its waiting requests answer."""
        self._wake(job_id)
        return self.store.delete(job_id)

    def _work(self, job: Job, progress) -> dict[str, Any]:
        opts = job.options
        return run_job(self.model, job.folder, opts["source"], opts["labels"], opts["tta"], progress)

    def _finished(self, job: Job) -> None:
        """From the worker thread: wake the requests waiting for ``job`` (on the server's loop)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake, job.id)

    def _wake(self, job_id: str) -> None:
        event = self._waiters.pop(job_id, None)
        if event is not None:
            event.set()

    async def wait(self, job: Job, seconds: float) -> None:
        """Return when ``job`` has ended, or after ``seconds``."""
        if seconds <= 0 or job.status in FINISHED:
            return
        event = self._waiters.setdefault(job.id, asyncio.Event())
        if job.status in FINISHED:  # it ended between the first look and the event's creation
            return
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def reap(self) -> None:
        """Delete expired jobs, forever (cancelled when the server stops)."""
        interval = min(30.0, max(0.1, self.settings.job_ttl / 2))
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.store.expire)
