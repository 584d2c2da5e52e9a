"""The web app around the API: the page and the docs served from the package (no CDN), the security
headers on every answer, assets looked up by name only, and CORS off unless origins are given."""

import pytest

from biounet.integrations.service.app import STATIC, swagger_ui_folder

pytestmark = pytest.mark.timeout(120)


def test_the_page_and_its_files_are_served(serve):
    client = serve()
    page = client.get("/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert page.body == (STATIC / "index.html").read_bytes()
    for name, kind in (("page.js", "text/javascript"), ("page.css", "text/css")):
        asset = client.get(f"/assets/{name}")
        assert asset.status == 200 and asset.headers["content-type"].startswith(kind)
    text = page.body.decode()
    assert "http://" not in text and "https://" not in text  # nothing loaded from elsewhere
    assert 'id="file"' in text and 'type="file"' in text


def test_the_docs_are_served_from_here(serve):
    client = serve()
    docs = client.get("/api/v1/docs")
    assert docs.status == 200 and b"/assets/swagger-ui-bundle.js" in docs.body
    assert b"https://" not in docs.body
    bundle = client.get("/assets/swagger-ui-bundle.js")
    assert bundle.status == 200 and bundle.body == (swagger_ui_folder() / "swagger-ui-bundle.js").read_bytes()
    assert client.get("/assets/swagger-ui.css").status == 200
    assert client.get("/docs").status == 404  # FastAPI's CDN-based docs are off


@pytest.mark.parametrize("name", ["../app.py", "..%2Fapp.py", "%2e%2e%2fapi.py", "index.html", "..%2F..%2F__init__.py"])
def test_assets_are_looked_up_by_name_never_by_path(serve, name):
    assert serve().get(f"/assets/{name}").status == 404


def test_every_answer_carries_the_security_headers(serve):
    client = serve()
    for path in ("/", "/api/v1/health", "/api/v1/jobs/unknown", "/assets/page.js"):
        headers = client.get(path).headers
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"


def test_cors_is_off_unless_origins_are_given(serve):
    origin = {"Origin": "https://lab.example.org"}
    closed = serve().get("/api/v1/health", headers=origin)
    assert closed.status == 200 and "access-control-allow-origin" not in closed.headers
    client = serve(cors_origins=("https://lab.example.org",))
    allowed = client.get("/api/v1/health", headers=origin)
    assert allowed.headers["access-control-allow-origin"] == "https://lab.example.org"
    other = client.get("/api/v1/health", headers={"Origin": "https://elsewhere.example.com"})
    assert "access-control-allow-origin" not in other.headers
    preflight = client.request(
        "OPTIONS",
        "/api/v1/jobs",
        headers={**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"},
    )
    assert preflight.status == 200 and "POST" in preflight.headers["access-control-allow-methods"]
