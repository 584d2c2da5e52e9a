"""The versioned API (``/api/v1``): health and info, jobs submitted with the image as the body, their
status (with an optional long poll), their results and their deletion. The handlers check, queue and
read; an upload's header checks and its file run in a thread of the pool, the segmentation in the
service's worker thread (:mod:`.server`), so the event loop always answers.

A client's input only ever picks a job from a dictionary or a result from :data:`RESULTS`, never a path.
"""

from __future__ import annotations

import hmac
import shutil
import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from biounet import __version__
from biounet.core.errors import ConfigError
from biounet.integrations.service.jobs import DONE, Job, QueueFull
from biounet.integrations.service.server import Service, check_labels, label_choices
from biounet.integrations.service.uploads import UploadError
from biounet.segment.inference import describe_predictor

API = "/api/v1"
MAX_WAIT = 60.0  # the longest ?wait= a status request may hold its connection
# what each result is: its media type, and whether a browser shows it (inline) or saves it
RESULTS = {
    "membrane.tif": ("image/tiff", "attachment"),
    "mask.tif": ("image/tiff", "attachment"),
    "labels.tif": ("image/tiff", "attachment"),
    "membrane.png": ("image/png", "inline"),
    "overlay.png": ("image/png", "inline"),
}
PICTURES = ("membrane.png", "overlay.png")  # one per slice: ?z= picks it
DEFAULT_LABELS = "watershed"  # the page shows cells unless told otherwise


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(status_code=status, detail=message, headers=headers)


def get_service(request: Request) -> Service:
    return request.app.state.service


BEARER = HTTPBearer(auto_error=False, description="the token the service was started with (--token)")


def authorize(
    service: Service = Depends(get_service), credentials: HTTPAuthorizationCredentials | None = Depends(BEARER)
) -> None:
    """Let a request through when it carries the service's bearer token (any request when it has none)."""
    token = service.settings.token
    if token is None:
        return
    given = credentials.credentials.encode() if credentials else b""
    if not hmac.compare_digest(given, token.encode()):  # constant time: a comparison that reveals no prefix
        raise _error(
            401, "a valid bearer token is required (Authorization: Bearer TOKEN)", {"WWW-Authenticate": "Bearer"}
        )


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes (a declared
    Content-Length before anything is read; a chunked or lying body as it streams in)."""
    declared = request.headers.get("content-length", "")
    too_large = f"the upload is larger than this service's limit of {limit} bytes; send a smaller image"
    if declared.isdigit() and int(declared) > limit:
        raise _error(413, too_large)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _error(413, too_large)
        chunks.append(chunk)
    return b"".join(chunks)


def describe(service: Service, job: Job) -> dict[str, Any]:
    """A job's status as the API shows it."""
    url = f"{API}/jobs/{job.id}"
    out: dict[str, Any] = {
        "id": job.id,
        "status": job.status,
        "queue_position": service.store.position(job),
        "slices_done": job.slices_done,
        "slices_total": job.slices_total,
        "labels": job.options["labels"],
        "tta": job.options["tta"],
        "error": job.error,
        "status_url": url,
    }
    if job.status == DONE:
        out["slices"], out["shape"] = job.results["slices"], job.results["shape"]
        out["results"] = {name: f"{url}/{name}" for name in RESULTS if name in job.results}
        ended = time.monotonic() - (job.finished or 0.0)
        out["expires_in_s"] = round(max(0.0, service.settings.job_ttl - ended), 1)
    return out


router = APIRouter(prefix=API)


def _job(service: Service, job_id: str) -> Job:
    job = service.store.get(job_id)
    if job is None:
        raise _error(
            404,
            f"no job {job_id[:40]!r}: unknown, deleted or expired (results are kept "
            f"{service.settings.job_ttl:g} s after a job ends)",
        )
    return job


@router.get("/health", summary="Liveness and queue depth (no token needed)")
def health(service: Service = Depends(get_service)) -> dict[str, Any]:
    counts = service.store.counts()
    return {"status": "ok", "queue_depth": counts["queued"], "queue_size": service.settings.queue_size, **counts}


@router.get("/info", summary="The model, its classes and the service's limits", dependencies=[Depends(authorize)])
def info(service: Service = Depends(get_service)) -> dict[str, Any]:
    model, settings = service.model, service.settings
    return {
        "biounet": __version__,
        "model": model.name,
        "classes": ["membrane", "cell"],
        "in_channels": model.cfg.in_channels,
        **describe_predictor(model.predictor),
        "labels": label_choices(),
        "default_labels": DEFAULT_LABELS,
        "limits": {
            "max_upload_bytes": settings.max_upload_bytes,
            "max_pixel_values": settings.max_values,
            "queue_size": settings.queue_size,
            "job_ttl_s": settings.job_ttl,
            "max_wait_s": MAX_WAIT,
        },
        "token_required": settings.token is not None,
    }


@router.post(
    "/jobs",
    status_code=202,
    summary="Submit an image (PNG or TIFF: 2D or a small stack) as the request body",
    dependencies=[Depends(authorize)],
    responses={
        413: {"description": "too large"},
        415: {"description": "not a PNG or TIFF"},
        429: {"description": "queue full"},
    },
)
async def submit(
    request: Request,
    labels: str = Query(DEFAULT_LABELS, description="instance method for the cells, or none"),
    tta: int = Query(0, ge=0, le=1, description="1: average the 8 flips/rotations (8x the compute)"),
    service: Service = Depends(get_service),
) -> JSONResponse:
    try:
        method = check_labels(labels)
    except ConfigError as exc:
        raise _error(422, str(exc)) from None
    if service.store.full():  # before reading the body: an overloaded service does no work for it
        raise _queue_full(service)
    body = await _read_body(request, service.settings.max_upload_bytes)
    try:
        job = await run_in_threadpool(service.accept, body, method, bool(tta))
    except UploadError as exc:
        raise _error(exc.status, str(exc)) from None
    try:
        service.store.submit(job)
    except QueueFull:
        await run_in_threadpool(shutil.rmtree, job.folder, True)
        raise _queue_full(service) from None
    url = f"{API}/jobs/{job.id}"
    return JSONResponse({"id": job.id, "status_url": url}, status_code=202, headers={"Location": url})


def _queue_full(service: Service) -> HTTPException:
    wait = service.store.retry_after()
    return _error(
        429,
        f"the queue is full ({service.settings.queue_size} jobs waiting); try again in {wait} s",
        {"Retry-After": str(wait)},
    )


@router.get(
    "/jobs/{job_id}", summary="A job's status: queued, running, done or failed", dependencies=[Depends(authorize)]
)
async def status(
    job_id: str,
    wait: float = Query(0.0, ge=0.0, le=MAX_WAIT, description="seconds to wait for the job to end before answering"),
    service: Service = Depends(get_service),
) -> dict[str, Any]:
    job = _job(service, job_id)
    await service.wait(job, wait)
    return describe(service, job)


@router.delete(
    "/jobs/{job_id}", status_code=204, summary="Cancel a job, or delete its results", dependencies=[Depends(authorize)]
)
def delete(job_id: str, service: Service = Depends(get_service)) -> Response:
    _job(service, job_id)
    service.delete(job_id)
    return Response(status_code=204)


def _finished_job(service: Service, job_id: str, name: str) -> Job:
    """The job of ``job_id`` if it is done and has result ``name``, else the error that says why not."""
    job = _job(service, job_id)
    if job.status != DONE:
        raise _error(409, f"job {job_id[:40]!r} is {job.status}; its results come when its status is done")
    if name not in job.results:
        raise _error(404, f"job {job_id[:40]!r} has no {name}: submit it with labels=METHOD for cell labels")
    return job


def _add_file_route(name: str) -> None:
    media_type, disposition = RESULTS[name]

    def result(job_id: str, service: Service = Depends(get_service)) -> FileResponse:
        path = _finished_job(service, job_id, name).results[name]
        return FileResponse(path, media_type=media_type, filename=name, content_disposition_type=disposition)

    router.add_api_route(
        f"/jobs/{{job_id}}/{name}", result, methods=["GET"], summary=f"The job's {name}", **_RESULT_ROUTE
    )


def _add_picture_route(name: str) -> None:
    media_type, disposition = RESULTS[name]

    def picture(
        job_id: str, z: int = Query(0, ge=0, description="slice of a stack"), service: Service = Depends(get_service)
    ) -> FileResponse:
        paths = _finished_job(service, job_id, name).results[name]
        if z >= len(paths):
            raise _error(404, f"job {job_id[:40]!r} has {len(paths)} slice(s); z={z} is not one of them")
        return FileResponse(paths[z], media_type=media_type, filename=name, content_disposition_type=disposition)

    summary = f"The job's {name} of slice z"
    router.add_api_route(f"/jobs/{{job_id}}/{name}", picture, methods=["GET"], summary=summary, **_RESULT_ROUTE)


_RESULT_ROUTE: dict[str, Any] = {"dependencies": [Depends(authorize)], "response_class": FileResponse}
for _name in RESULTS:
    (_add_picture_route if _name in PICTURES else _add_file_route)(_name)
