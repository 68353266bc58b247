"""trainer.eval.report: results.json, report.md and plots, all or nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from trainer.eval.report import comparison, markdown, relative_change, summarize, write_report


def _results() -> dict[str, Any]:
    ssm = summarize(
        [{"recall@20": 0.2, "dislike@20": 0.10}, {"recall@20": 0.22, "dislike@20": 0.12}]
    )
    ntr = summarize(
        [{"recall@20": 0.21, "dislike@20": 0.05}, {"recall@20": 0.21, "dislike@20": 0.07}]
    )
    objectives = {"ssm": ssm, "ssm+ntr": ntr}
    return {
        **objectives,
        "summary": comparison(objectives),
        "responsiveness": {
            "feature + NTR label": {
                "objective": "ssm+ntr",
                "n_users": 10,
                "similar_share_without": 0.5,
                "similar_share_with": 0.2,
                "relative_change": -0.6,
                "return_rate_without": 1.0,
                "return_rate_with": 0.1,
            }
        },
        "config": {"dataset": "synthetic", "seeds": 2, "split": "random"},
    }


def test_summarize_gives_mean_sample_std_and_values() -> None:
    out = summarize([{"m": 1.0}, {"m": 3.0}])
    assert out["m"]["mean"] == 2.0
    assert out["m"]["std"] == pytest.approx(math.sqrt(2.0))
    assert out["m"]["values"] == [1.0, 3.0]
    assert summarize([{"m": 1.0}])["m"]["std"] == 0.0


def test_comparison_is_last_objective_against_first() -> None:
    out = comparison({k: v for k, v in _results().items() if k in ("ssm", "ssm+ntr")})
    assert out["baseline"] == "ssm"
    assert out["dislike@20_change"] == pytest.approx((0.06 - 0.11) / 0.11)
    assert out["recall@20_change"] == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(relative_change(1.0, 0.0))


def test_report_files_are_written_and_parseable(tmp_path: Path) -> None:
    out = tmp_path / "report"
    histories = {
        "ssm": [{"softmax": 3.0}, {"softmax": 2.0}],
        "ssm+ntr": [{"softmax": 3.1, "ntr": 0.5}],
    }
    results = _results()
    results["ssm"]["ndcg@20"] = {"mean": math.nan, "std": math.nan, "values": [math.nan]}
    results["ssm+ntr"]["ndcg@20"] = {"mean": 0.1, "std": 0.0, "values": [0.1]}
    written = write_report(out, results, loss_histories=histories)
    names = {p.name for p in written}
    assert names == {"results.json", "report.md", "metrics.png", "loss.png", "responsiveness.png"}
    loaded = json.loads((out / "results.json").read_text())
    assert loaded["ssm+ntr"]["recall@20"]["values"] == [0.21, 0.21]
    assert loaded["ssm"]["ndcg@20"]["mean"] is None  # NaN is written as null
    assert loaded["responsiveness"]["feature + NTR label"]["relative_change"] == -0.6
    for png in ("metrics.png", "loss.png", "responsiveness.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "report.md").read_text()
    assert "| ssm+ntr |" in text and "-60.0 %" in text
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no staging left behind


def test_markdown_names_the_comparison() -> None:
    text = markdown(_results())
    assert "ssm+ntr vs ssm: Dislike@20 -45.5 %" in text


def test_a_failed_report_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "report"
    with pytest.raises(ValueError, match="no objective"):
        write_report(out, {"config": {}}, loss_histories={})
    assert not out.exists()
    bad = _results()
    bad["ssm"]["recall@20"]["mean"] = object()  # not JSON
    with pytest.raises(TypeError):
        write_report(out, bad, loss_histories={})
    assert list(tmp_path.iterdir()) == []


def test_comparison_gives_both_like_dislike_aucs_and_their_difference() -> None:
    ssm = summarize([{"recall@20": 0.2, "like_dislike_auc": 0.60}])
    ntr = summarize([{"recall@20": 0.2, "like_dislike_auc": 0.65}])
    out = comparison({"ssm": ssm, "ssm+ntr": ntr})
    assert out["like_dislike_auc"] == {"baseline": 0.60, "compared": 0.65}
    assert out["like_dislike_auc_difference"] == pytest.approx(0.05)
    assert "like-vs-dislike AUC 0.6500 vs 0.6000" in markdown({"ssm": ssm, "ssm+ntr": ntr,
                                                               "summary": out})  # fmt: skip


def _ease(skipped: str | None) -> dict[str, Any]:
    figure = summarize([{"v": 0.30}, {"v": 0.32}])["v"]
    return {
        "skipped": skipped,
        "lambda": None if skipped else [500.0, 1000.0],
        "grid": [] if skipped else [{"lambda": 500.0, "validation_recall@20": figure}],
        "validation": {"protocol": "random per user", "share": 0.2, "selected_by": "recall@20"},
    }


def test_markdown_gives_the_ease_lambda_and_its_validation_grid(tmp_path: Path) -> None:
    results = _results()
    results["reference"] = {"ease": summarize([{"recall@20": 0.3}, {"recall@20": 0.31}])}
    results["ease"] = _ease(None)
    histories = {"ssm": [{"softmax": 1.0}]}
    write_report(tmp_path / "r", results, loss_histories=histories)  # "ease": no objective
    text = (tmp_path / "r" / "report.md").read_text()
    assert "| ease (reference) |" in text
    assert "λ = 500, 1000." in text and "20 % of each user's training events" in text
    assert "| 500 | 0.3100 ± 0.0141 |" in text


def test_markdown_states_why_ease_was_skipped() -> None:
    results = _results()
    results["ease"] = _ease("catalog of 20001 items above the EASE limit of 20000")
    text = markdown(results)
    assert "EASE reference skipped: catalog of 20001 items above the EASE limit of 20000." in text
    assert "ease (reference)" not in text
