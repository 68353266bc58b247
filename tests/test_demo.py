"""The README's walkthrough on `veto up`'s synthetic world, against the real running stack:
a user who likes two categories gets them; after three dislikes of one of them, that
category's share of the next response falls by at least half before any retraining, and
stays down once a model version trained on those dislikes serves.

The stack runs with its defaults (what `make run` gives a user), on the default 10,000-item
demo catalog; the synthetic world's categories are read back from the dataset generator.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.processes import VetoProcess, eventually, free_port, http_json, veto_env
from trainer.data.load import load_synthetic
from veto.artifacts import read_manifest, version_dir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
ITEMS = 10_000  # veto up's default demo catalog
PAIR = ("c1", "c2")


def _top(api: str, user: str, *, k: int = 20, category: str | None = None) -> dict[str, Any]:
    query = f"k={k}" + (f"&category={category}" if category else "")
    status, body = http_json("GET", f"{api}/v1/users/{user}/recommendations?{query}")
    assert status == 200, body
    assert isinstance(body, dict)
    return body


def _share(items: list[dict[str, Any]], categories: dict[str, str], wanted: set[str]) -> float:
    return sum(categories[i["item_id"]] in wanted for i in items) / max(len(items), 1)


def _send(api: str, key: str, user: str, items: list[str], kind: str) -> None:
    events = [{"user_id": user, "item_id": i, "type": kind} for i in items]
    status, body = http_json(
        "POST", f"{api}/v1/feedback", body={"events": events}, headers={"X-API-Key": key}
    )
    assert status == 200 and body["accepted"] == len(items), body  # type: ignore[index]


def test_two_liked_categories_then_three_dislikes_move_the_next_response(tmp_path: Path) -> None:
    dataset = load_synthetic(items=ITEMS, seed=0)
    categories = {i: c or "" for i, c in zip(dataset.item_ids, dataset.categories, strict=True)}
    port = free_port()
    up = VetoProcess(
        "up",
        ["--port", str(port), "--data-dir", str(tmp_path / "var"), "--items", str(ITEMS)],
        env={**veto_env(), "PYTHONUNBUFFERED": "1"},
        log_path=tmp_path / "up.log",
    ).start()
    try:
        eventually(
            lambda: "Ctrl-C stops everything." in up.log() or not up.running,
            timeout=300,
            what="veto up to be ready",
            every=0.5,
        )
        assert up.running, up.log()[-3000:]
        key = next(line.split()[2] for line in up.log().splitlines() if "API key:" in line)
        api = f"http://127.0.0.1:{port}"
        user = "demo-user"

        # 1. Like four items of each of two categories.
        for category in PAIR:
            picks = [i["item_id"] for i in _top(api, user, k=4, category=category)["items"]]
            assert len(picks) == 4
            _send(api, key, user, picks, "like")
        before = _top(api, user)
        share_both = _share(before["items"], categories, set(PAIR))
        assert share_both >= 0.6, before
        # The walkthrough dislikes the larger of the two in the list.
        liked = max(PAIR, key=lambda c: _share(before["items"], categories, {c}))
        share_liked = _share(before["items"], categories, {liked})

        # 2. Dislike three items of one of them: the next response, before any retraining.
        shown = [i["item_id"] for i in before["items"] if categories[i["item_id"]] == liked]
        disliked = shown[:3]
        assert len(disliked) == 3, before
        sent_at = time.time()
        _send(api, key, user, disliked, "dislike")
        after = _top(api, user)
        assert after["model_version"] == before["model_version"]  # no retraining yet
        assert _share(after["items"], categories, {liked}) <= share_liked / 2, (before, after)

        # 3. A model version trained on those dislikes: the category stays down.
        root = tmp_path / "var" / "artifacts"

        def trained() -> bool:
            version = _top(api, user)["model_version"]
            watermark = read_manifest(version_dir(root, version)).watermark
            return (watermark.ingest_time or 0.0) >= sent_at - 1.0

        eventually(trained, timeout=120, what="a version trained on the dislikes", every=1.0)
        later = _top(api, user)
        assert later["model_version"] > before["model_version"]
        assert _share(later["items"], categories, {liked}) <= share_liked / 2, (before, later)
        summary = {
            "both_before": share_both,
            "liked_before": share_liked,
            "liked_after": _share(after["items"], categories, {liked}),
            "liked_after_retraining": _share(later["items"], categories, {liked}),
        }
        print(json.dumps(summary), file=sys.stderr)
    finally:
        up.stop(timeout=60)
