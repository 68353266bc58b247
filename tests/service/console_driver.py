"""Driving the console in a real headless Chromium with Playwright, shared by the browser
tests and by the README's screenshots (``python -m tests.service.console_driver``, against a
running ``veto up``). Uses the system's Chromium (Debian's ``chromium``): Playwright
downloads nothing."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PANELS = {"try": "#try-panel", "model": "#model-panel", "live": "#live-panel"}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def chromium_path() -> str | None:
    """The system's Chromium, if installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Traffic:
    """Every request a page made: the local ones answered, the others refused and listed."""

    local: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    bytes_by_url: dict[str, int] = field(default_factory=dict)


@contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium (the system's) under Playwright."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError("no chromium on PATH (Debian: apt-get install chromium)")
    with sync_playwright() as pw:
        # --no-sandbox: the tests run as root in CI, where Chromium's sandbox refuses to start.
        chromium = pw.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def local_page(
    chromium: Any, *, width: int = 1280, height: int = 900
) -> Iterator[tuple[Any, Traffic]]:
    """A page that may only reach this machine: any other request is refused and recorded,
    so a page that needs the internet shows it (a blank page, a failed test)."""
    context = chromium.new_context(viewport={"width": width, "height": height})
    traffic = Traffic()

    def route(r: Any) -> None:
        url = r.request.url
        host = urlsplit(url).hostname or ""
        if url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            traffic.local.append(url)
            r.continue_()
        else:
            traffic.external.append(url)
            r.abort()

    def finished(request: Any) -> None:
        response = request.response()
        if response is None:
            return
        try:
            traffic.bytes_by_url[request.url] = len(response.body())
        except Exception:  # a redirect has no body
            traffic.bytes_by_url[request.url] = 0

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("requestfinished", finished)
    page.on("requestfailed", lambda request: traffic.failed.append(request.url))
    try:
        yield page, traffic
    finally:
        context.close()


def open_console(page: Any, base_url: str, *, refresh_seconds: int = 1) -> None:
    """Open the console and wait for its first status."""
    page.goto(f"{base_url}/console/?refresh={refresh_seconds}")
    page.wait_for_function("() => document.getElementById('status').textContent !== 'Connecting…'")


def use_key(page: Any, key: str) -> None:
    """Type the API key into the page (kept in this tab's sessionStorage)."""
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Use key").click()
    page.wait_for_function(
        "() => document.getElementById('key-state').textContent.startsWith('key set')"
    )


def show_user(page: Any, user: str, *, k: int = 10) -> list[str]:
    """Type a user id (and top-K), press Enter, wait for the list; the item ids shown."""
    page.get_by_label("Top").fill(str(k))
    box = page.get_by_label("User id")
    box.fill(user)
    box.press("Enter")
    page.wait_for_function(
        "(u) => document.getElementById('recs-caption').textContent.includes(` for ${u} `)",
        arg=user,
    )
    return shown_items(page)


def shown_items(page: Any) -> list[str]:
    return [
        str(x)
        for x in page.locator("#recs tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.item)"
        )
    ]


def shown_rows(page: Any) -> list[dict[str, str]]:
    """The list as shown: item, category and score text of each row."""
    return list(
        page.locator("#recs tbody tr").evaluate_all(
            "rows => rows.map(r => ({item: r.dataset.item, category: r.cells[2].textContent,"
            " score: r.cells[3].textContent}))"
        )
    )


def shoot(page: Any, panel: str, path: Path) -> Path:
    """A screenshot of one console panel (``PANELS``) as a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page.locator(PANELS[panel]).screenshot(path=str(path))
    return path


def not_blank(path: Path) -> bool:
    """True when the PNG shows something: several colours and real contrast."""
    from PIL import Image, ImageStat

    with Image.open(path) as img:
        grey = img.convert("L")
        lo, hi = grey.getextrema()
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20) or []
        return hi - lo > 100 and len(colours) > 16 and ImageStat.Stat(grey).stddev[0] > 5


def _shrink(path: Path) -> None:
    """A 64-colour palette: a panel's screenshot drops to a few tens of KB."""
    from PIL import Image

    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=64)
    small.save(path, optimize=True)


def main(argv: list[str]) -> int:
    """Screenshots of each panel of a running console (the README's)."""
    p = argparse.ArgumentParser(description="Screenshot the console's panels.")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--key", required=True, help="the API key veto up printed")
    p.add_argument("--user", default="readme-user")
    p.add_argument("--out", type=Path, default=Path("docs/console"))
    args = p.parse_args(argv)
    with browser() as chromium, local_page(chromium, width=1100, height=900) as (page, traffic):
        open_console(page, args.url)
        use_key(page, args.key)
        items = show_user(page, args.user)
        page.get_by_role("button", name=f"Dislike {items[0]}").click()
        page.wait_for_selector("#moved:not([hidden])")
        for panel in PANELS:
            shot = shoot(page, panel, args.out / f"{panel}.png")
            print(shot, "ok" if not_blank(shot) else "BLANK")
            _shrink(shot)
        if traffic.external:
            print("requests that left the machine:", traffic.external, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
