"""The web page in a real browser (Debian's headless Chromium under Playwright) against a real server:
an image chosen through the page's file input is uploaded, its progress shown, the membrane map and the
overlay appear and the download links give the server's files; the token flow; a refused upload's
message; the API docs render. Every request the browser makes goes to the test's server (no CDN), and
the page logs no error (a Content-Security-Policy violation would be one)."""

import io

import numpy as np
import pytest
import tifffile
from PIL import Image
from playwright.sync_api import expect
from support.service import chromium, em_like, png_bytes, tiff_bytes

pytestmark = pytest.mark.timeout(240)
TOKEN = "page-token-0123456789"


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def open_page(browser):
    """``open_page(client)``: a fresh page of the server, with what it requested and logged as errors."""
    contexts = []

    def start(client):
        context = browser.new_context(accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.requests, page.problems = [], []
        page.on("request", lambda request: page.requests.append(request.url))
        page.on("console", lambda message: message.type == "error" and page.problems.append(message.text))
        page.on("pageerror", lambda error: page.problems.append(str(error)))
        page.goto(f"{client.url}/")
        return page

    yield start
    for context in contexts:
        context.close()


def only_local(page, client) -> list[str]:
    return [url for url in page.requests if not url.startswith((client.url, "blob:", "data:"))]


def download(page, link: str):
    with page.expect_download() as info:
        page.click(link)
    return info.value.suggested_filename, open(info.value.path(), "rb").read()


def test_an_image_chosen_on_the_page_is_segmented_shown_and_downloadable(serve, open_page, tmp_path):
    client = serve(slow=0.05)
    page = open_page(client)
    expect(page.locator("#model")).to_contain_text("model tiny.pt on cpu")
    image = tmp_path / "cells.png"
    image.write_bytes(png_bytes(em_like(21, 96)))
    page.set_input_files("#file", str(image))
    expect(page.locator("#status")).to_contain_text("done: 1 slice(s) of 96 × 96 pixels", timeout=60_000)
    for picture in ("#membrane", "#overlay"):
        expect(page.locator(picture)).to_be_visible()
        shown = page.eval_on_selector(picture, "img => [img.complete, img.naturalWidth, img.naturalHeight]")
        assert shown == [True, 96, 96]
    expect(page.locator("#overlay-caption")).to_have_text("Cells (watershed) over the image")
    assert client.get("/api/v1/health").json()["jobs"] == 1
    name, body = download(page, "#download-membrane")
    assert name == "cells_membrane.tif"
    assert tifffile.imread(io.BytesIO(body)).shape == (96, 96)
    url = [u for u in page.requests if u.endswith("/membrane.tif")][0].removeprefix(client.url)
    assert body == client.get(url).body  # the very file the server wrote
    name, body = download(page, "#download-labels")
    assert name == "cells_labels.tif" and tifffile.imread(io.BytesIO(body)).dtype == np.uint32
    name, body = download(page, "#download-overlay")
    assert name == "cells_overlay.png" and Image.open(io.BytesIO(body)).size == (96, 96)
    assert only_local(page, client) == [] and page.problems == []
    page.click("#delete")
    expect(page.locator("#status")).to_have_text("the results were deleted from the server")
    assert client.get("/api/v1/health").json()["jobs"] == 0


def test_a_stack_is_browsed_slice_by_slice(serve, open_page, tmp_path):
    client = serve()
    page = open_page(client)
    stack = tmp_path / "stack.tif"
    stack.write_bytes(tiff_bytes(np.stack([em_like(s, 48) for s in range(3)])))
    page.select_option("#labels", "none")
    page.set_input_files("#file", str(stack))
    expect(page.locator("#status")).to_contain_text("done: 3 slice(s)", timeout=60_000)
    expect(page.locator("#overlay-caption")).to_have_text("Membranes over the image")
    expect(page.locator("#download-labels")).to_be_hidden()
    first = page.get_attribute("#membrane", "src")
    page.fill("#slice", "2")
    page.dispatch_event("#slice", "input")
    expect(page.locator("#slice-number")).to_have_text("2")
    expect(page.locator("#membrane")).not_to_have_attribute("src", first)
    assert any(u.endswith("membrane.png?z=2") for u in page.requests)
    name, _ = download(page, "#download-overlay")
    assert name == "stack_overlay_002.png"
    assert page.problems == []


def test_a_refused_upload_says_why(serve, open_page, tmp_path):
    client = serve()
    page = open_page(client)
    expect(page.locator("#status")).to_have_text("ready")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    page.set_input_files("#file", str(text))
    expect(page.locator("#status")).to_contain_text("is not a PNG or TIFF image")
    expect(page.locator("#status")).to_contain_text("(HTTP 415)")
    expect(page.locator("#status")).to_have_class("error")


def test_the_page_asks_for_the_token_and_then_works(serve, open_page, tmp_path):
    client = serve(token=TOKEN)
    page = open_page(client)
    expect(page.locator("#token-box")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("needs an access token")
    page.fill("#token", TOKEN)
    page.click("#token-save")
    expect(page.locator("#model")).to_contain_text("model tiny.pt")
    expect(page.locator("#token-box")).to_be_hidden()
    image = tmp_path / "cells.png"
    image.write_bytes(png_bytes(em_like(22, 64)))
    page.set_input_files("#file", str(image))
    expect(page.locator("#status")).to_contain_text("done", timeout=60_000)
    assert page.eval_on_selector("#overlay", "img => img.naturalWidth") == 64


def test_the_api_docs_render_from_this_server(serve, open_page):
    client = serve()
    page = open_page(client)
    page.goto(f"{client.url}/api/v1/docs")
    expect(page.locator("#swagger-ui")).to_contain_text("/api/v1/jobs/{job_id}/membrane.tif", timeout=30_000)
    assert only_local(page, client) == []
    assert page.problems == []


def test_a_dropped_stack_shows_its_progress(serve, open_page):
    client = serve(slow=0.5)
    page = open_page(client)
    expect(page.locator("#status")).to_have_text("ready")
    body = tiff_bytes(np.stack([em_like(s, 48) for s in range(3)]))
    # a file dropped on the drop zone, as a person's drag and drop delivers it
    page.evaluate(
        """bytes => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], "dropped.tif", {type: "image/tiff"}));
            const drop = new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true});
            document.getElementById("drop").dispatchEvent(drop);
        }""",
        list(body),
    )
    expect(page.locator("#status")).to_contain_text("segmenting:", timeout=30_000)
    expect(page.locator("#progress")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("done: 3 slice(s)", timeout=60_000)
    expect(page.locator("#progress")).to_be_hidden()
    name, _ = download(page, "#download-membrane")
    assert name == "dropped_membrane.tif"
    assert page.problems == []
