"""The pages a person opens, as HTTP sees them (the browser tests drive them for real): the
console's files come from the package with a same-origin-only policy and weigh under 300 KB;
/docs and /redoc load every asset from this service, none from a CDN."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from service.pages import STATIC_DIR
from tests.service.svc_helpers import Serve

pytestmark = pytest.mark.anyio
PAGE_WEIGHT_LIMIT = 300 * 1024


class _Refs(HTMLParser):
    """Every URL a page's tags load (script src, link href, img src)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("script", "img") and found.get("src"):
            self.urls.append(str(found["src"]))
        if tag == "link" and found.get("href"):
            self.urls.append(str(found["href"]))


def _refs(html: str) -> list[str]:
    parser = _Refs()
    parser.feed(html)
    return parser.urls


async def test_console_redirects_to_its_page_served_with_a_same_origin_policy(
    serve: Serve,
) -> None:
    async with serve() as (_, client):
        bare = await client.get("/console")
        page = await client.get("/console/")
    assert bare.status_code in (307, 308) and bare.headers["location"].endswith("/console/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"


async def test_the_console_loads_only_its_own_files_and_weighs_under_300_kb(
    serve: Serve,
) -> None:
    async with serve() as (_, client):
        page = await client.get("/console/")
        refs = [u for u in _refs(page.text) if not u.startswith("data:")]
        assets = [await client.get(f"/console/{u}") for u in refs]
    assert sorted(refs) == ["console.css", "console.js"]  # relative: same origin, any prefix
    assert all(a.status_code == 200 for a in assets)
    weight = len(page.content) + sum(len(a.content) for a in assets)
    assert weight < PAGE_WEIGHT_LIMIT
    # And nothing in the package's files names another host.
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        hosts = re.findall(r"https?://([^/\"'\s]+)", text)
        assert set(hosts) <= {"www.w3.org"}, (path.name, hosts)  # the SVG namespace


@pytest.mark.parametrize(
    "path", ["/console/missing.js", "/console/../pyproject.toml", "/console/%2e%2e/app.py"]
)
async def test_a_missing_or_escaping_console_path_is_a_404_in_the_error_shape(
    serve: Serve, path: str
) -> None:
    async with serve() as (_, client):
        resp = await client.get(path)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
        ("/redoc", {"redoc.standalone.js", "favicon.png"}),
    ],
)
async def test_the_docs_load_every_asset_from_this_service(
    serve: Serve, page: str, assets: set[str]
) -> None:
    async with serve() as (_, client):
        html = (await client.get(page)).text
        refs = _refs(html)
        fetched = {u: await client.get(u) for u in refs}
    assert {u.rsplit("/", 1)[-1] for u in refs} == assets
    assert all(u.startswith("/docs/assets/") for u in refs)
    assert all(r.status_code == 200 and len(r.content) > 1000 for r in fetched.values())
    # No absolute URL anywhere in the page: no CDN, no fonts, no validator.
    assert not re.search(r"https?://", html)
    assert '"validatorUrl": null' in html or page == "/redoc"


async def test_the_docs_list_the_admin_operations(serve: Serve) -> None:
    async with serve() as (_, client):
        spec = (await client.get("/openapi.json")).json()
    assert set(spec["paths"]) >= {
        "/v1/admin/model",
        "/v1/admin/versions",
        "/v1/admin/publish",
        "/v1/admin/live",
    }
    publish = spec["paths"]["/v1/admin/publish"]["post"]
    assert {"401", "404", "409", "422", "503"} <= set(publish["responses"])
    assert [p["name"] for p in publish["parameters"]] == ["x-api-key"]
