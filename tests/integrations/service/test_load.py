"""A bounded load test of the service on loopback: a fixed number of jobs from a fixed number of
concurrent clients against a small queue. No request is lost (every accepted job ends done), none is
answered wrongly (each result is the segmentation of its own image), the overload is refused with 429
and Retry-After (never a timeout or a 5xx), and health answers quickly all along."""

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tifffile
from support.service import em_like, png_bytes

from biounet.data.readers import scale_image
from biounet.segment.inference import segment

pytestmark = pytest.mark.timeout(300)
REQUESTS, CONCURRENCY, QUEUE_SIZE = 24, 8, 3
MAX_ATTEMPTS = 400  # per request: a client retries a 429 every 50 ms, for 20 s at most
HEALTH_LIMIT_S = 1.0


def test_a_bounded_load_loses_nothing_and_refuses_the_overload(serve, served_model):
    client = serve(slow=0.05, queue_size=QUEUE_SIZE)
    images = [em_like(100 + i, 48) for i in range(REQUESTS)]
    cfg = served_model.cfg
    expected = [segment(scale_image(im, 1), served_model.predictor, cfg.depth, cfg.padding)[0] for im in images]
    start = threading.Barrier(CONCURRENCY)  # the first round arrives at once: more than the queue holds
    health, stop = [], threading.Event()

    def watch_health() -> None:
        while not stop.is_set():
            began = time.perf_counter()
            answer = client.get("/api/v1/health", timeout=10)
            health.append((answer.status, time.perf_counter() - began))
            stop.wait(0.05)

    def one(i: int) -> tuple[str, np.ndarray, int]:
        if i < CONCURRENCY:
            start.wait(timeout=30)
        refusals = 0
        for _ in range(MAX_ATTEMPTS):
            answer = client.submit(png_bytes(images[i]), "labels=none")
            if answer.status == 202:
                break
            assert answer.status == 429, (answer.status, answer.body)
            assert int(answer.headers["retry-after"]) >= 1
            refusals += 1
            time.sleep(0.05)  # sooner than Retry-After says, to keep the test short
        else:
            raise AssertionError(f"request {i} was refused {MAX_ATTEMPTS} times")
        job = client.wait_done(answer.json()["status_url"], timeout=120)
        assert job["status"] == "done", job
        membrane = tifffile.imread(io.BytesIO(client.get(job["results"]["membrane.tif"]).body))
        return job["id"], membrane, refusals

    watcher = threading.Thread(target=watch_health)
    watcher.start()
    try:
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            results = list(pool.map(one, range(REQUESTS)))
    finally:
        stop.set()
        watcher.join()
    ids = [job_id for job_id, _, _ in results]
    assert len(set(ids)) == REQUESTS  # every request got its own job
    for i, (_, membrane, _) in enumerate(results):  # and its own answer
        np.testing.assert_allclose(membrane, expected[i], atol=1e-6, err_msg=f"request {i}")
    assert sum(refusals for _, _, refusals in results) >= CONCURRENCY - QUEUE_SIZE - 1
    assert len(health) >= 5 and all(status == 200 for status, _ in health)
    slowest = max(seconds for _, seconds in health)
    assert slowest < HEALTH_LIMIT_S, f"health took {slowest:.2f} s under load"
    after = client.get("/api/v1/health").json()
    assert (after["queue_depth"], after["running"], after["jobs"]) == (0, 0, REQUESTS)
