"""The console and the API docs in a real headless Chromium (Debian's ``chromium``, driven by
Playwright) against a real stack: ``veto serve`` as a process on its own ``redis-server``,
with two small model versions on disk. Every page may only reach 127.0.0.1 (any other
request is refused and fails the test), as on a machine without internet. Each console
panel is saved as a screenshot under the test's temp dir and checked not to be blank.

Skips, saying why, where Chromium or Playwright is missing (``.ci/run`` installs Chromium).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from tests.processes import ServeProcess, eventually, http_json, veto_env
from tests.service.console_driver import (
    LOCAL_HOSTS,
    chromium_path,
    local_page,
    not_blank,
    open_console,
    shoot,
    show_user,
    shown_items,
    shown_rows,
    use_key,
)
from tests.service.console_driver import browser as open_browser
from tests.service.svc_helpers import redis_state
from tests.version_factory import small_world, write_demo_version
from veto import keys, registry
from veto.cli.redis_server import RedisServer

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
if chromium_path() is None:
    pytest.skip(
        "no chromium on PATH: the browser tests need Debian's chromium "
        "(apt-get install chromium; .ci/run installs it)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.timeout(120)
KEY = "console-key"
WORLD = small_world(n_items=200, seed=5)
CATEGORY = dict(zip(WORLD.item_ids, WORLD.categories, strict=True))
PAGE_WEIGHT_LIMIT = 300 * 1024


@dataclass
class Stack:
    url: str
    redis: RedisServer
    client: redis.Redis
    tmp: Path

    def api(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        return http_json(method, f"{self.url}{path}", **kwargs)

    def served(self) -> int:
        status, body = self.api("GET", "/readyz")
        assert status == 200, body
        return int(body["model_version"])

    def stream_entries(self) -> int:
        """Feedback events written, over every stream partition."""
        return sum(self.client.xlen(k) for k in self.client.scan_iter("veto:{p*}:feedback"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Its own Redis (a test stops it), versions 1 and 2 (2 published, trained on feedback
    a minute ago), and ``veto serve`` with a key, every dislike measured, a 1-s live window."""
    tmp = tmp_path_factory.mktemp("console")
    server = RedisServer(data_dir=tmp / "redis").start()
    artifacts = tmp / "artifacts"
    artifacts.mkdir()
    write_demo_version(artifacts, 1, world=WORLD)
    write_demo_version(artifacts, 2, world=WORLD, parent=1, ingest_time=time.time() - 60)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    registry.publish(client, 2)
    env = veto_env(
        redis_url=server.url,
        artifacts_dir=str(artifacts),
        api_key=KEY,
        responsiveness_sample_rate="1",
        live_interval_seconds="1",
        redis_timeout_seconds="0.3",
    )
    proc = ServeProcess(env=env, log_path=tmp / "serve.log").start()
    try:
        proc.wait_ready()
        yield Stack(url=proc.url, redis=server, client=client, tmp=tmp)
    finally:
        proc.stop()
        client.close()
        server.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with open_browser() as b:
        yield b


@pytest.fixture
def page(chromium: Any, stack: Stack) -> Iterator[tuple[Any, Any]]:
    """A fresh tab (fresh sessionStorage: no key) that may only reach this machine."""
    if stack.redis.process is None or stack.redis.process.poll() is not None:
        stack.redis.start()
    with local_page(chromium) as (p, traffic):
        yield p, traffic
    assert traffic.external == [], f"requests left the machine: {traffic.external}"


def _shot(page: Any, panel: str, tmp_path: Path) -> None:
    path = shoot(page, panel, tmp_path / f"{panel}.png")
    assert not_blank(path), f"the {panel} panel's screenshot is blank: {path}"


def test_the_docs_list_every_operation_with_nothing_from_the_internet(
    page: tuple[Any, Any], stack: Stack
) -> None:
    p, traffic = page
    status, spec = stack.api("GET", "/openapi.json")
    assert status == 200
    operations = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    p.goto(f"{stack.url}/docs")
    p.wait_for_function(
        "(n) => document.querySelectorAll('.opblock').length >= n", arg=len(operations)
    )
    shown = p.locator(".opblock").evaluate_all(
        "els => els.map(e => [e.querySelector('.opblock-summary-method').textContent,"
        " e.querySelector('.opblock-summary-path').dataset.path])"
    )
    assert {(method, path) for method, path in shown} == operations
    p.goto(f"{stack.url}/redoc")
    summaries = sorted({op["summary"] for ops in spec["paths"].values() for op in ops.values()})
    p.wait_for_function(
        "(names) => names.every(n => document.body.innerText.includes(n))", arg=summaries
    )
    # Nothing local failed to load; ReDoc's attempt at the Redocly logo on its CDN, when it
    # happens, is blocked by the page's policy inside the browser (a failed request that
    # never reached the network), never let through.
    assert [u for u in traffic.failed if urlsplit(u).hostname in LOCAL_HOSTS] == []
    assert traffic.external == []


def test_the_console_shows_a_users_recommendations_with_their_categories(
    page: tuple[Any, Any], stack: Stack, tmp_path: Path
) -> None:
    p, traffic = page
    open_console(p, stack.url)
    shown = show_user(p, "ada", k=8)
    status, body = stack.api("GET", "/v1/users/ada/recommendations?k=8")
    assert status == 200
    assert shown == [x["item_id"] for x in body["items"]]
    rows = shown_rows(p)
    assert [r["category"] for r in rows] == [CATEGORY[r["item"]] for r in rows]
    assert [float(r["score"]) for r in rows] == pytest.approx(
        [x["score"] for x in body["items"]], abs=5e-4
    )
    _shot(p, "try", tmp_path)
    # The page and its assets, and every API answer it read to get here.
    weight = sum(traffic.bytes_by_url.values())
    assert weight < PAGE_WEIGHT_LIMIT, weight


def test_a_dislike_removes_the_item_on_the_next_refresh_and_writes_exactly_one_event(
    page: tuple[Any, Any], stack: Stack, tmp_path: Path
) -> None:
    p, _ = page
    open_console(p, stack.url)
    use_key(p, KEY)
    before = show_user(p, "bea")
    target = before[0]
    events = stack.stream_entries()
    p.get_by_role("button", name=f"Dislike {target}").click()
    p.wait_for_selector("#moved:not([hidden])")
    after = shown_items(p)
    assert target not in after and len(after) == len(before)
    assert stack.stream_entries() == events + 1
    assert target in p.locator("#moved-gone").inner_text()
    new = [i for i in after if i not in before]
    assert p.locator("#moved-new").inner_text() == f"New: {', '.join(new) or 'none'}"
    share = p.locator("#moved-share").inner_text()
    assert share.startswith(f"Category {CATEGORY[target]}: ") and "→" in share
    assert p.locator("#recs tr.new").count() == len(new)
    # The service agrees: the item is gone from the user's list, whoever asks.
    _, body = stack.api("GET", "/v1/users/bea/recommendations?k=10")
    assert target not in [x["item_id"] for x in body["items"]]
    _shot(p, "try", tmp_path)


def test_a_wrong_key_shows_the_401_and_nothing_is_written(
    page: tuple[Any, Any], stack: Stack
) -> None:
    p, _ = page
    open_console(p, stack.url)
    items = show_user(p, "cy")
    before = redis_state(stack.client)
    # No key at all: the page says so and sends nothing.
    p.get_by_role("button", name=f"Like {items[0]}", exact=True).click()
    assert "Type the API key" in p.locator("#try-message").inner_text()
    use_key(p, "not-the-key")
    p.get_by_role("button", name=f"Dislike {items[0]}").click()
    p.wait_for_function(
        "() => document.getElementById('try-message').textContent.startsWith('401')"
    )
    message = p.locator("#try-message").inner_text()
    assert "unauthorized" in message and "Nothing was written" in message
    p.get_by_role("button", name="Roll back to v1").click()
    p.get_by_role("button", name="Confirm").click()
    p.wait_for_function(
        "() => document.getElementById('model-message').textContent.startsWith('401')"
    )
    assert shown_items(p) == items
    assert redis_state(stack.client) == before and stack.served() == 2


def test_the_model_panel_shows_the_served_version_and_rolls_back_and_forward(
    page: tuple[Any, Any], stack: Stack, tmp_path: Path
) -> None:
    p, _ = page
    open_console(p, stack.url)
    served = stack.served()
    assert p.locator("#m-version").inner_text().startswith(f"v{served} (200 items, flat")
    assert p.locator("#m-parent").inner_text() == "v1"
    assert p.locator("#m-lag").inner_text().endswith((" s", " min"))
    assert p.locator("#m-published").inner_text() == f"v{served}"
    rows = p.locator("#versions tbody tr").evaluate_all("rs => rs.map(r => r.dataset.version)")
    assert rows == ["2", "1"]
    _shot(p, "model", tmp_path)
    use_key(p, KEY)
    try:
        p.get_by_role("button", name="Roll back to v1").click()
        p.get_by_role("button", name="Confirm").click()
        p.wait_for_function(
            "() => document.getElementById('model-message').textContent.startsWith('Published v1')"
        )
        assert stack.served() == 1
        p.wait_for_function(
            "() => document.getElementById('m-version').textContent.startsWith('v1 ')"
        )
        assert stack.client.get(keys.MODEL_POINTER) == "1"
        p.get_by_role("button", name="Publish v2").click()
        p.get_by_role("button", name="Confirm").click()
        p.wait_for_function(
            "() => document.getElementById('model-message').textContent.startsWith('Published v2')"
        )
        assert stack.served() == 2
    finally:
        if stack.served() != 2:
            registry.publish(stack.client, 2)
            eventually(lambda: stack.served() == 2, timeout=10, what="version 2 back")


def test_the_live_panel_draws_traffic_latency_and_responsiveness(
    page: tuple[Any, Any], stack: Stack, tmp_path: Path
) -> None:
    p, _ = page
    # Traffic and a measured dislike of a user with a history (every dislike is sampled).
    user = "dee"
    status, body = stack.api("GET", f"/v1/users/{user}/recommendations?k=10")
    top = [x["item_id"] for x in body["items"]]
    feedback = [{"user_id": user, "item_id": i, "type": "like"} for i in top[:4]]
    feedback.append({"user_id": user, "item_id": top[4], "type": "dislike"})
    for event in feedback:
        status, _ = stack.api(
            "POST", "/v1/feedback", body={"events": [event]}, headers={"X-API-Key": KEY}
        )
        assert status == 200
        stack.api("GET", f"/v1/users/{user}/recommendations?k=10")
    open_console(p, stack.url)
    p.wait_for_function("() => document.getElementById('v-rate').textContent.endsWith('/s')")
    p.wait_for_function("() => document.getElementById('v-latency').textContent.startsWith('p50')")
    p.wait_for_function("() => document.querySelectorAll('#chart-rate svg path').length > 0")
    # The measured dislike lands in an interval of the window (not only in the totals).
    p.wait_for_function(
        "() => /^-?\\d+ %$/.test(document.getElementById('v-responsiveness').textContent)"
    )
    assert p.locator("#v-disliked").inner_text() == "0"
    _shot(p, "live", tmp_path)


def test_the_degraded_banner_appears_while_redis_is_stopped(
    page: tuple[Any, Any], stack: Stack, tmp_path: Path
) -> None:
    p, _ = page
    open_console(p, stack.url)
    assert p.locator("#banner").is_hidden()
    stack.redis.stop(kill=True)
    try:
        p.wait_for_selector("#banner:not([hidden])")
        assert "Redis does not answer" in p.locator("#banner").inner_text()
        assert p.locator("#status").inner_text().startswith("Degraded")
        # Recommendations still answer, marked degraded.
        show_user(p, "eve")
        assert "degraded answer" in p.locator("#recs-caption").inner_text()
        p.screenshot(path=str(tmp_path / "degraded.png"))
        assert not_blank(tmp_path / "degraded.png")
    finally:
        stack.redis.start()
    p.wait_for_selector("#banner", state="hidden")


def test_the_starting_state_says_no_model_is_loaded_yet(
    page: tuple[Any, Any], stack: Stack
) -> None:
    """A second service on an empty Redis database: nothing published yet."""
    p, _ = page
    db1 = stack.redis.url.rsplit("/", 1)[0] + "/1"
    env = veto_env(redis_url=db1, artifacts_dir=str(stack.tmp / "artifacts"), api_key=KEY)
    proc = ServeProcess(env=env, log_path=stack.tmp / "starting.log").start()
    try:
        eventually(lambda: proc.running and _answers(proc.url), timeout=30, what="veto serve")
        open_console(p, proc.url)
        assert p.locator("#status").inner_text() == "Starting · no model yet"
        assert "no model version is loaded yet" in p.locator("#banner").inner_text()
        assert p.locator("#m-version").inner_text() == "none loaded yet"
    finally:
        proc.stop()


def _answers(url: str) -> bool:
    return http_json("GET", f"{url}/healthz")[0] == 200


def test_the_console_can_be_used_from_the_keyboard_with_labels_and_contrast(
    page: tuple[Any, Any], stack: Stack
) -> None:
    p, _ = page
    open_console(p, stack.url)
    unlabelled = p.evaluate(
        "[...document.querySelectorAll('input, button')].filter(e =>"
        " !(e.labels && e.labels.length) && !e.getAttribute('aria-label') &&"
        " !e.textContent.trim()).map(e => e.outerHTML)"
    )
    assert unlabelled == []
    # Tab from the top: the skip link, the key field, ... ; the user field is reachable and
    # Enter shows the list without a mouse.
    for _ in range(12):
        p.keyboard.press("Tab")
        if p.evaluate("document.activeElement.id") == "user-id":
            break
    assert p.evaluate("document.activeElement.id") == "user-id"
    p.keyboard.type("fay")
    p.keyboard.press("Enter")
    p.wait_for_selector("#recs tbody tr")
    assert p.evaluate(_LOW_CONTRAST) == []


# Text whose colour against its first opaque background is below WCAG AA's 4.5:1.
_LOW_CONTRAST = """
() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.99)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const bad = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length || el.closest('svg')) continue;
    const fg = lum(rgb(getComputedStyle(el).color).slice(0, 3));
    const bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    if (ratio < 4.5) bad.push(`${el.tagName}#${el.id}.${el.className}: ${ratio.toFixed(2)}`);
  }
  return bad;
}
"""
