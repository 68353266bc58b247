"""The benchmark harness itself (bench/run.py and its helpers), at tiny sizes: the load
generator's records and windows, result files and the summary table, argument checks.
Speed is never asserted here: the figures come from ``make bench``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from bench import procs
from bench.loadgen import GET, POST, Mix, Records, run_mix, start_load
from bench.report import Figure, load_all, save, summary_markdown
from bench.run import main as run_main
from bench.soak import MIB, rss_growth


def _records() -> Records:
    # Requests started at t = 0..9 s; the one at t = 5 failed; odd ones are POSTs.
    start = np.arange(10, dtype=np.float64)
    return Records(
        start=start,
        latency=(start + 1.0) / 1000.0,  # 1..10 ms
        ok=start != 5,
        kind=(np.arange(10) % 2).astype(np.int8),
        measure_from=2.0,
        stop_at=10.0,
    )


def test_window_counts_only_requests_started_inside_it() -> None:
    rec = _records()
    whole = rec.window()  # the measured span [2, 10): 8 requests
    assert whole["requests"] == 8
    assert whole["failed"] == 1
    assert whole["rps"] == 1.0
    assert whole["max_ms"] == 10.0
    before = rec.window(until=5.0)  # t = 2, 3, 4
    assert (before["requests"], before["failed"]) == (3, 0)
    during = rec.window(since=5.0, until=7.0)  # t = 5, 6
    assert (during["requests"], during["failed"]) == (2, 1)
    assert rec.window(kind=POST)["requests"] == 4  # t = 3, 5, 7, 9
    assert rec.window(kind=GET, since=9.0)["requests"] == 0
    assert rec.window(since=20.0)["p99_ms"] is None


@pytest.mark.parametrize(
    "kwargs",
    [{"post_share": 1.5}, {"post_share": 0.5}, {"post_share": 1.0, "batch": 0}],
    ids=["share-above-1", "gets-without-paths", "empty-batch"],
)
def test_mix_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Mix(**kwargs)  # type: ignore[arg-type]


def test_start_load_rejects_bad_durations() -> None:
    with pytest.raises(ValueError):
        start_load("http://127.0.0.1:1", Mix(post_share=1.0), concurrency=0, duration=1, warmup=0)


def _rss(t: float, mib: float) -> tuple[float, int]:
    return (t, int(mib * MIB))


def test_rss_growth_ignores_the_phase_of_a_version_sawtooth() -> None:
    # One sample every 5 s for 10 min; RSS holds one or two 30 MiB versions in turn.
    flat = [_rss(t, 340.0 + 30.0 * ((t // 15) % 2)) for t in range(0, 600, 5)]
    growth = rss_growth(flat, start=0.0, seconds=600.0)
    assert growth.median_percent == pytest.approx(0.0, abs=5.0)
    assert abs(growth.slope_mib_per_min) < 2.0
    # The same sawtooth on a leak of 10 MiB a minute is caught by both measures.
    leaking = [(t, r + int(10 * MIB * t / 60)) for t, r in flat]
    leak = rss_growth(leaking, start=0.0, seconds=600.0)
    assert leak.median_percent > 15.0
    assert leak.slope_mib_per_min == pytest.approx(10.0, rel=0.2)


def test_rss_growth_needs_samples_after_the_warm_up() -> None:
    with pytest.raises(ValueError, match="too few"):
        rss_growth([_rss(0.0, 100.0), _rss(30.0, 100.0)], start=0.0, seconds=600.0)


def test_a_must_be_zero_figure_passes_only_at_zero() -> None:
    assert Figure.must_be_zero("failed", 0.0).passed is True
    assert Figure.must_be_zero("failed", 1.0).passed is False
    assert Figure.must_be_zero("served", -1.0).passed is False  # counter missing


def test_figure_ratio_is_none_without_a_reference() -> None:
    assert Figure("x", 3.0, "s", "ref", 0.0).ratio is None
    assert Figure("x", 3.0, "s", "ref", 2.0).ratio == 1.5


def test_saved_results_make_the_summary_table(tmp_path: Path) -> None:
    figures = [
        Figure(
            "GET req/s", 600.0, "req/s", "bare FastAPI", 1000.0, aim="ratio >= 0.6", passed=True
        ),
        Figure("failed requests", 2.0, "", "must be", 0.0, aim="0", passed=False),
    ]
    path = save("serving_1k", figures, details={"items": 1000}, command="cmd", out_dir=tmp_path)
    doc = json.loads(path.read_text())
    assert doc["figures"][0]["ratio"] == 0.6
    assert {"cpu_count", "cpu_model", "ram_gb", "python", "git_commit"} <= doc["machine"].keys()
    # A file another script wrote (no "figures") is not part of the table.
    (tmp_path / "serve.json").write_text(json.dumps({"ratio": 1.0}))
    docs = load_all(tmp_path)
    assert [d["name"] for d in docs] == ["serving_1k"]
    table = summary_markdown(docs)
    assert "| serving_1k | GET req/s | 600 req/s | bare FastAPI: 1,000 req/s | 0.6 |" in table
    assert "0 (missed)" in table
    assert "`cmd`" in table


def test_unknown_benchmark_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown benchmark"):
        run_main(["--only", "serving,nope", "--out-dir", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


def test_ddp_refuses_bad_rank_counts_before_measuring(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--nproc"):
        run_main(["--only", "ddp", "--nproc", "0,2", "--out-dir", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


def test_rss_of_a_live_process_is_read_from_proc() -> None:
    assert procs.rss_bytes(os.getpid()) > 10 * 1024**2


def test_load_generator_drives_gets_and_posts_against_the_bare_app(tmp_path: Path) -> None:
    ref = procs.bare("bench.ingest:bare_app", env=dict(os.environ), logdir=tmp_path, name="bare")
    try:
        mix = Mix(get_paths=("/readyz",), post_share=0.5, batch=3, users=10, items=10)
        rec = run_mix(ref.url, mix, concurrency=2, duration=1.0, warmup=0.2)
    finally:
        ref.stop()
    assert rec.window()["failed"] == 0
    assert rec.window(kind=GET)["requests"] > 0
    assert rec.window(kind=POST)["requests"] > 0
    assert set(rec.statuses) == {"200"}
