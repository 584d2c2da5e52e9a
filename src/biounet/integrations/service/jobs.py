"""The service's jobs: a bounded queue in front of one worker thread, and the jobs' lifetimes.

A job is queued, running, done or failed. Its files live in a folder the service made for it (never
a name a client chose). Jobs wait in a bounded queue (a full queue is refused at once: the client is
told to come back, with an estimate of when); one worker thread runs them in order, so the network
and the image never compete for the model. A finished job is kept for ``ttl`` seconds, then its
folder is deleted. Nothing here knows HTTP: the web app (:mod:`.app`) turns these into responses.
"""

from __future__ import annotations

import logging
import math
import secrets
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biounet.core.errors import BiounetError, describe_os_error

LOG = logging.getLogger("biounet.service")
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
FINISHED = (DONE, FAILED)


class QueueFull(Exception):
    """The queue holds ``capacity`` jobs already; ``retry_after`` seconds is a fair time to try again."""

    def __init__(self, capacity: int, retry_after: int) -> None:
        super().__init__(f"the queue is full ({capacity} jobs waiting); try again in {retry_after} s")
        self.retry_after = retry_after


class Cancelled(Exception):
    """Raised inside a running job (from its progress callback) when the job was deleted."""


def new_job_id() -> str:
    """128 random bits, URL-safe: a job's id is also its only key, so it must not be guessable."""
    return secrets.token_urlsafe(16)


@dataclass
class Job:
    """One request's work. ``options`` are what the worker passes on (labels method, tta...);
    ``results`` what it left, filled in by the worker when the job is done."""

    id: str
    folder: Path
    options: dict[str, Any]
    created: float = field(default_factory=time.monotonic)
    status: str = QUEUED
    slices_done: int = 0
    slices_total: int = 0
    error: str | None = None
    started: float | None = None
    finished: float | None = None
    results: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False
    # text -> what the client is told instead, in error messages: the service's paths stay private
    aliases: dict[str, str] = field(default_factory=dict)

    def redact(self, message: str) -> str:
        """``message`` on one line, each alias replaced (longest first: a file before its folder)."""
        for text in sorted(self.aliases, key=len, reverse=True):
            message = message.replace(text, self.aliases[text])
        return " ".join(message.split())


# The work: run ``job`` (its folder holds the input), call ``progress(done, total)`` after each
# slice, return the results (names -> files in the folder). Raise BiounetError for bad input.
Work = Callable[[Job, Callable[[int, int], None]], dict[str, Any]]


class JobStore:
    """The jobs by id, the queue of waiting ones (at most ``capacity``), and their expiry ``ttl``
    seconds after they end. Thread-safe: the web app and the worker share it.

    ``on_finish(job)`` is called (from the worker thread) when a job ends, so that a waiting request
    can answer at once instead of polling."""

    def __init__(self, capacity: int, ttl: float, on_finish: Callable[[Job], None] | None = None) -> None:
        self.capacity, self.ttl, self.on_finish = capacity, ttl, on_finish
        self._jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._lock = threading.Condition()
        self._mean_seconds = 1.0  # running mean of a job's duration, for Retry-After
        self._closed = False

    def submit(self, job: Job) -> None:
        """Queue ``job``, or raise :class:`QueueFull` (its folder is then the caller's to delete)."""
        with self._lock:
            if len(self._queue) >= self.capacity:
                raise QueueFull(self.capacity, self.retry_after())
            self._jobs[job.id] = job
            self._queue.append(job)
            self._lock.notify_all()

    def full(self) -> bool:
        with self._lock:
            return len(self._queue) >= self.capacity

    def retry_after(self) -> int:
        """Seconds until a place in the queue is likely free: the mean job's duration, at least 1."""
        with self._lock:
            return max(1, math.ceil(self._mean_seconds))

    def get(self, job_id: str) -> Job | None:
        """The job of ``job_id``, or None for an unknown or expired one."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and self._expired(job, time.monotonic()):
                return None
            return job

    def position(self, job: Job) -> int | None:
        """1 for the next job to run, 2 for the one after...; None when ``job`` is not waiting."""
        with self._lock:
            for index, queued in enumerate(self._queue):
                if queued is job:
                    return index + 1
            return None

    def counts(self) -> dict[str, int]:
        with self._lock:
            running = sum(job.status == RUNNING for job in self._jobs.values())
            return {"queued": len(self._queue), "running": running, "jobs": len(self._jobs)}

    def delete(self, job_id: str) -> bool:
        """Forget a job and delete its files; a running one is stopped after its current slice (its
        folder goes when it stops). False when there was no such job."""
        with self._lock:
            job = self._jobs.pop(job_id, None)
            if job is None:
                return False
            job.cancelled = True
            if job in self._queue:
                self._queue.remove(job)
            running = job.status == RUNNING
        if not running:
            shutil.rmtree(job.folder, ignore_errors=True)
        return True

    def expire(self) -> int:
        """Delete the jobs that ended more than ``ttl`` seconds ago; returns how many."""
        now = time.monotonic()
        with self._lock:
            old = [job for job in self._jobs.values() if self._expired(job, now)]
            for job in old:
                del self._jobs[job.id]
        for job in old:
            shutil.rmtree(job.folder, ignore_errors=True)
        return len(old)

    def _expired(self, job: Job, now: float) -> bool:
        return job.finished is not None and now - job.finished > self.ttl

    def take(self) -> Job | None:
        """The next job, marked running (blocks while the queue is empty); None once closed."""
        with self._lock:
            while not self._queue and not self._closed:
                self._lock.wait()
            if self._closed:
                return None
            job = self._queue.popleft()
            job.status, job.started = RUNNING, time.monotonic()
            return job

    def finish(self, job: Job, results: dict[str, Any] | None, error: str | None) -> None:
        """Record the end of a running job; a job deleted while it ran loses its folder now."""
        with self._lock:
            job.results, job.error = results or {}, error
            job.status = DONE if error is None else FAILED
            job.finished = time.monotonic()
            if job.started is not None:
                self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * (job.finished - job.started)
            gone = job.cancelled
        if gone:
            shutil.rmtree(job.folder, ignore_errors=True)
        if self.on_finish is not None:
            self.on_finish(job)

    def close(self) -> list[Job]:
        """Stop handing out jobs (the worker's :meth:`take` returns None); returns every job left."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            return list(self._jobs.values())


def run_one(job: Job, work: Work, store: JobStore) -> None:
    """Run ``job`` and record its end: a BiounetError (bad input) as its message, anything else as an
    internal error (logged with its traceback: a bug, not the client's fault)."""

    def progress(done: int, total: int) -> None:
        job.slices_done, job.slices_total = done, total
        if job.cancelled:
            raise Cancelled

    results, error = None, None
    try:
        results = work(job, progress)
    except Cancelled:
        error = "deleted while it ran"
    except BiounetError as exc:
        error = job.redact(str(exc))
    except OSError as exc:  # the disk full or unwritable: the service's problem, said without its paths
        error = job.redact(f"the service could not write the results ({describe_os_error(exc)})")
    except MemoryError:
        error = "out of memory: the image needs more memory than the service has; send a smaller image"
    except Exception as exc:  # the worker must outlive any one job
        LOG.exception("job %s failed", job.id)
        error = f"internal error ({type(exc).__name__}); the service's log has the details"
    store.finish(job, results, error)


class Worker:
    """The one inference thread: takes jobs from ``store`` and runs ``work`` on them, one at a time,
    until :meth:`stop`."""

    def __init__(self, store: JobStore, work: Work) -> None:
        self.store, self.work = store, work
        self._thread = threading.Thread(target=self._loop, name="biounet-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while (job := self.store.take()) is not None:
            run_one(job, self.work, self.store)

    def stop(self, timeout: float = 30.0) -> None:
        """Close the queue and wait for the running job's end (up to ``timeout`` seconds)."""
        for job in self.store.close():
            job.cancelled = True  # a running job stops after its current slice
        if self._thread.is_alive():
            self._thread.join(timeout)
