"""The job queue and its worker, without HTTP: a bounded queue that refuses the job too many, positions
in order, one job at a time, deletion of waiting, running and finished jobs (their folders with them),
expiry, and what a job's failure says."""

import threading
import time

import pytest

from biounet.core.errors import DataError
from biounet.integrations.service.jobs import (
    DONE,
    FAILED,
    RUNNING,
    Job,
    JobStore,
    QueueFull,
    Worker,
    new_job_id,
    run_one,
)


def job(tmp_path, name: str) -> Job:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "input.png").write_bytes(b"x")
    return Job(new_job_id(), folder, {})


def test_job_ids_are_long_random_and_url_safe():
    ids = {new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(
        len(i) >= 22 and set(i) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for i in ids
    )


def test_the_queue_is_bounded_and_keeps_its_order(tmp_path):
    store = JobStore(capacity=2, ttl=60)
    a, b, c = job(tmp_path, "a"), job(tmp_path, "b"), job(tmp_path, "c")
    store.submit(a)
    store.submit(b)
    assert store.full()
    with pytest.raises(QueueFull, match="queue is full") as caught:
        store.submit(c)
    assert caught.value.retry_after >= 1
    assert store.get(c.id) is None  # the refused job was never stored
    assert (store.position(a), store.position(b)) == (1, 2)
    assert store.take() is a and a.status == RUNNING and store.position(a) is None
    assert store.position(b) == 1
    store.submit(c)  # a place is free again
    assert store.counts() == {"queued": 2, "running": 1, "jobs": 3}


def test_deleting_a_waiting_job_takes_it_out_of_the_queue_with_its_files(tmp_path):
    store = JobStore(capacity=4, ttl=60)
    a, b = job(tmp_path, "a"), job(tmp_path, "b")
    store.submit(a)
    store.submit(b)
    assert store.delete(a.id)
    assert not a.folder.exists() and store.get(a.id) is None
    assert store.position(b) == 1 and store.take() is b
    assert not store.delete(a.id)  # gone already


def test_a_running_job_that_is_deleted_stops_after_its_slice_and_loses_its_files(tmp_path):
    store = JobStore(capacity=4, ttl=60)
    a = job(tmp_path, "a")
    store.submit(a)
    assert store.take() is a
    slices = []

    def work(j, progress):
        for z in range(5):
            slices.append(z)
            if z == 1:
                store.delete(j.id)  # as a DELETE request would, while the job runs
            progress(z + 1, 5)
        return {}

    run_one(a, work, store)
    assert slices == [0, 1]  # stopped at the first progress after the deletion
    assert a.status == FAILED and "deleted" in a.error
    assert not a.folder.exists() and store.get(a.id) is None


def test_a_finished_job_expires_after_its_time(tmp_path):
    store = JobStore(capacity=4, ttl=0.2)
    a = job(tmp_path, "a")
    store.submit(a)
    run_one(store.take(), lambda j, progress: {"slices": 1}, store)
    assert store.get(a.id).status == DONE and store.expire() == 0
    time.sleep(0.3)
    assert store.get(a.id) is None  # expired for readers at once, whenever the reaper runs
    assert store.expire() == 1 and not a.folder.exists()


def test_what_a_failed_job_says(tmp_path):
    store = JobStore(capacity=4, ttl=60)
    jobs = [job(tmp_path, n) for n in "abc"]
    for j in jobs:
        store.submit(j)

    def bad_input(j, progress):
        raise DataError("input.png has 3 channel(s) but the model takes 1;\n convert it")

    def bug(j, progress):
        raise KeyError("secret internal detail")

    def no_memory(j, progress):
        raise MemoryError

    for work in (bad_input, bug, no_memory):
        run_one(store.take(), work, store)
    a, b, c = jobs
    assert a.status == FAILED and a.error == "input.png has 3 channel(s) but the model takes 1; convert it"
    assert b.error == "internal error (KeyError); the service's log has the details"  # no internals shown
    assert c.error.startswith("out of memory")
    assert all(j.finished is not None for j in jobs)


def test_the_worker_runs_one_job_at_a_time_in_order_and_reports_each_end(tmp_path):
    ended = []
    store = JobStore(capacity=8, ttl=60, on_finish=lambda j: ended.append(j.id))
    running, overlap = [], []
    lock = threading.Lock()

    def work(j, progress):
        with lock:
            running.append(j.id)
            overlap.append(len(running))
        progress(0, 1)
        time.sleep(0.02)
        progress(1, 1)
        with lock:
            running.remove(j.id)
        return {"slices": 1}

    worker = Worker(store, work)
    jobs = [job(tmp_path, f"j{i}") for i in range(5)]
    for j in jobs:
        store.submit(j)
    worker.start()
    deadline = time.monotonic() + 10
    while len(ended) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert ended == [j.id for j in jobs]
    assert max(overlap) == 1
    assert all(j.status == DONE and (j.slices_done, j.slices_total) == (1, 1) for j in jobs)
    assert store.take() is None  # closed


def test_stopping_the_worker_stops_a_running_job(tmp_path):
    store = JobStore(capacity=2, ttl=60)
    started = threading.Event()

    def endless(j, progress):
        started.set()
        while True:
            progress(0, 1)
            time.sleep(0.01)

    a = job(tmp_path, "a")
    store.submit(a)
    worker = Worker(store, endless)
    worker.start()
    assert started.wait(5)
    worker.stop(timeout=5)
    assert a.status == FAILED and a.finished is not None  # ended, not abandoned mid-slice


def test_errors_name_no_path_of_the_service(tmp_path):
    store = JobStore(capacity=4, ttl=60)
    a, b = job(tmp_path, "a"), job(tmp_path, "b")
    for j in (a, b):
        j.aliases = {str(j.folder / "input.png"): "the uploaded image", str(j.folder): "the job's folder"}
        store.submit(j)

    def unreadable(j, progress):
        raise DataError(f"cannot read {j.folder / 'input.png'} (it is truncated)")

    def disk_full(j, progress):
        raise OSError(28, "No space left on device", str(j.folder / "input_membrane.tif"))

    run_one(store.take(), unreadable, store)
    run_one(store.take(), disk_full, store)
    assert a.error == "cannot read the uploaded image (it is truncated)"
    assert b.error.startswith("the service could not write the results (the job's folder/input_membrane.tif: No space")
    assert str(tmp_path) not in a.error + b.error
