"""The API on a real uvicorn server (loopback, free port): a job from upload to results, the answers for
what is refused (413, 415, 422, 429, 401, 404, 409), deletion, expiry and the long poll."""

import http.client
import io
import time

import numpy as np
import pytest
import tifffile
from support.service import em_like, png_bytes, tiff_bytes

from biounet.data.readers import scale_image
from biounet.segment.inference import segment

pytestmark = pytest.mark.timeout(120)
TOKEN = "t0k3n-of-enough-length"


def test_a_job_from_upload_to_results(serve, served_model):
    client = serve()
    assert client.get("/api/v1/health").json()["status"] == "ok"
    info = client.get("/api/v1/info").json()
    assert info["model"] == "tiny.pt" and info["classes"] == ["membrane", "cell"] and "multicut" in info["labels"]
    pixels = em_like(3, 64)
    answer = client.submit(png_bytes(pixels))
    assert answer.status == 202
    job_id, url = answer.json()["id"], answer.json()["status_url"]
    assert url == f"/api/v1/jobs/{job_id}" and answer.headers["location"] == url
    job = client.wait_done(url)
    assert job["status"] == "done" and job["error"] is None and job["shape"] == [64, 64]
    assert set(job["results"]) == {"membrane.tif", "mask.tif", "labels.tif", "membrane.png", "overlay.png"}
    membrane = client.get(job["results"]["membrane.tif"])
    assert membrane.status == 200 and membrane.headers["content-type"] == "image/tiff"
    assert membrane.headers["cache-control"] == "no-store"
    expected = segment(scale_image(pixels, 1), served_model.predictor, served_model.cfg.depth, served_model.cfg.padding)
    np.testing.assert_allclose(tifffile.imread(io.BytesIO(membrane.body)), expected[0], atol=1e-6)
    overlay = client.get(job["results"]["overlay.png"])
    assert overlay.status == 200 and overlay.body.startswith(b"\x89PNG")
    assert client.get(job["results"]["labels.tif"]).status == 200


def test_a_stack_gives_a_picture_per_slice(serve):
    client = serve()
    job = client.wait_done(client.submit(tiff_bytes(np.stack([em_like(s, 40) for s in range(3)]))).json()["status_url"])
    assert job["slices"] == 3 and job["slices_done"] == job["slices_total"] == 3
    pictures = [client.get(f"{job['results']['membrane.png']}?z={z}").body for z in range(3)]
    assert len(set(pictures)) == 3
    missing = client.get(f"{job['results']['membrane.png']}?z=3")
    assert missing.status == 404 and "has 3 slice(s); z=3" in missing.json()["detail"]


def test_labels_none_gives_no_cell_labels(serve):
    client = serve()
    job = client.wait_done(client.submit(png_bytes(em_like(4)), "labels=none").json()["status_url"])
    assert "labels.tif" not in job["results"] and job["labels"] is None
    answer = client.get(f"{job['status_url']}/labels.tif")
    assert answer.status == 404 and "submit it with labels=METHOD" in answer.json()["detail"]


def test_uploads_over_the_size_limit_are_refused_declared_or_streamed(serve):
    client = serve(max_upload_bytes=10_000)
    body = png_bytes(np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8))
    assert len(body) > 10_000
    answer = client.submit(body)
    assert answer.status == 413 and "larger than this service's limit of 10000 bytes" in answer.json()["detail"]
    # a chunked body declares no length: it is refused as it streams in
    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=30)
    chunks = (body[i : i + 4096] for i in range(0, len(body), 4096))
    conn.request("POST", "/api/v1/jobs", body=chunks, encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413
    conn.close()
    assert client.get("/api/v1/health").json()["jobs"] == 0


def test_what_is_not_an_image_or_too_many_pixels_is_refused(serve):
    client = serve(max_values=50 * 50)
    assert client.submit(b"<html>not an image</html>").status == 415
    assert client.submit(b"").status == 415
    too_many = client.submit(png_bytes(em_like(0, 51)))
    assert too_many.status == 413 and "51 x 51 = 2601 pixel values" in too_many.json()["detail"]
    assert client.submit(png_bytes(em_like(0, 50))).status == 202


def test_bad_query_values_are_unprocessable(serve):
    client = serve()
    answer = client.submit(png_bytes(em_like(0)), "labels=../../etc/passwd")
    assert answer.status == 422 and "is not an instance method" in answer.json()["detail"]
    assert client.submit(png_bytes(em_like(0)), "tta=2").status == 422
    assert client.get("/api/v1/jobs/x?wait=999").status == 422


def test_a_corrupt_image_fails_its_job_with_the_readers_message(serve):
    client = serve()
    body = png_bytes(em_like(5, 64))
    job = client.wait_done(client.submit(body[: len(body) // 2]).json()["status_url"])
    assert job["status"] == "failed" and "cannot read the uploaded image" in job["error"]
    assert "not a readable PNG or TIFF" in job["error"] and "/" not in job["error"]  # no path of the server


def test_unknown_jobs_and_results_before_the_end(serve):
    client = serve(slow=0.3)
    assert client.get("/api/v1/jobs/no-such-job").status == 404
    assert client.request("DELETE", "/api/v1/jobs/no-such-job").status == 404
    url = client.submit(png_bytes(em_like(6, 96))).json()["status_url"]
    early = client.get(f"{url}/membrane.tif")
    assert early.status == 409 and "its results come when its status is done" in early.json()["detail"]
    assert client.wait_done(url)["status"] == "done"


def test_a_full_queue_answers_429_with_retry_after(serve):
    client = serve(slow=0.5, queue_size=1)
    first = client.submit(png_bytes(em_like(7, 64)))  # taken by the worker
    waiting = []
    for _ in range(5):  # the worker is busy for seconds: the second or third fills the queue of one
        answer = client.submit(png_bytes(em_like(8, 64)))
        if answer.status == 429:
            break
        waiting.append(answer)
    assert answer.status == 429 and int(answer.headers["retry-after"]) >= 1
    assert "the queue is full" in answer.json()["detail"]
    assert len(waiting) <= 2
    status = client.get(waiting[-1].json()["status_url"]).json()
    assert status["status"] == "queued" and status["queue_position"] == 1
    assert client.get("/api/v1/health").json()["queue_depth"] == 1
    assert client.wait_done(first.json()["status_url"])["status"] == "done"


def test_deleting_jobs_waiting_and_finished(serve):
    client = serve(slow=0.3)
    running = client.submit(png_bytes(em_like(9, 96))).json()["status_url"]
    queued = client.submit(png_bytes(em_like(10, 96))).json()["status_url"]
    assert client.get(queued).json()["status"] == "queued"
    assert client.request("DELETE", queued).status == 204
    assert client.get(queued).status == 404
    assert client.wait_done(running)["status"] == "done"
    assert client.request("DELETE", running).status == 204
    assert client.get(f"{running}/membrane.tif").status == 404
    assert client.get("/api/v1/health").json()["jobs"] == 0


def test_finished_jobs_expire(serve):
    client = serve(job_ttl=0.5)
    url = client.submit(png_bytes(em_like(11))).json()["status_url"]
    assert client.wait_done(url)["expires_in_s"] <= 0.5
    time.sleep(0.8)
    gone = client.get(url)
    assert gone.status == 404 and "expired" in gone.json()["detail"]


def test_the_long_poll_answers_when_the_job_ends(serve):
    client = serve(slow=0.2)
    url = client.submit(png_bytes(em_like(12, 64))).json()["status_url"]
    assert client.get(url).json()["status"] in ("queued", "running")
    job = client.get(f"{url}?wait=30").json()  # one request, answered at the job's end
    assert job["status"] == "done"


def test_the_token_guards_everything_but_health(serve):
    client = serve(token=TOKEN)
    no_token = {"Authorization": ""}
    assert client.get("/api/v1/health", headers=no_token).status == 200
    for headers in ({}, {"Authorization": "Bearer wrong-token-of-same-size"}, {"Authorization": f"Basic {TOKEN}"}):
        anonymous = client.request("GET", "/api/v1/info", headers=headers or no_token)
        assert anonymous.status == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    refused = client.request("POST", "/api/v1/jobs", body=png_bytes(em_like(0)), headers=no_token)
    assert refused.status == 401
    assert client.get("/api/v1/info").status == 200  # the client sends the token
    job = client.wait_done(client.submit(png_bytes(em_like(13))).json()["status_url"])
    assert client.get(job["results"]["membrane.tif"], headers=no_token).status == 401
    assert client.get(job["results"]["membrane.tif"]).status == 200


def test_the_openapi_description_lists_the_api(serve):
    schema = serve().get("/api/v1/openapi.json").json()
    paths = set(schema["paths"])
    assert {"/api/v1/health", "/api/v1/info", "/api/v1/jobs", "/api/v1/jobs/{job_id}"} <= paths
    assert {f"/api/v1/jobs/{{job_id}}/{name}" for name in ("membrane.tif", "labels.tif", "overlay.png")} <= paths
    assert set(schema["paths"]["/api/v1/jobs/{job_id}"]) == {"get", "delete"}
