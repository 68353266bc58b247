"""`veto eval` end to end on small generated files: the report, and every bad input
failing with a clear message and nothing written to --out."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from trainer.data.synthetic import make_world
from trainer.eval.data import ml1m_timed_users
from trainer.eval.ease import LAMBDAS, MAX_ITEMS
from trainer.eval.main import main
from veto.cli import main as veto_main
from veto.events import Interaction
from veto.settings import ServiceSettings

# A tiny model and a short simulation: the tests are about the command, not the figures.
QUICK = [
    *("--epochs", "1", "--set", "dim=16", "--set", "batch_size=256"),
    *("--set", "n_sampled=128", "--set", "history_len=20"),
    *("--no-progress", "--sim-users", "16", "--sim-steps", "10"),
]


def _write_csv(path: Path, rows: Sequence[Interaction], categories: dict[str, str]) -> Path:
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["user", "item", "type", "timestamp", "category"])
        for x in rows:
            out.writerow([x.user_id, x.item_id, x.type.label, f"{x.timestamp:.3f}",
                          categories[x.item_id]])  # fmt: skip
    return path


@pytest.fixture(scope="module")
def world_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    world = make_world(n_items=200, n_users=40, n_categories=5, dim=8, events_per_user=20, seed=4)
    path = tmp_path_factory.mktemp("data") / "events.csv"
    return _write_csv(
        path, world.interactions, dict(zip(world.item_ids, world.categories, strict=True))
    )


def test_a_small_eval_writes_a_complete_report(world_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    argv = ["--dataset", "csv", "--path", str(world_csv), "--seeds", "2", "--responsiveness"]
    assert veto_main(["eval", *argv, *QUICK, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    for objective in ("ssm", "ssm+ntr"):
        for metric in ("recall@20", "ndcg@20", "dislike@20", "coverage@20", "recall@50"):
            entry = results[objective][metric]
            assert len(entry["values"]) == 2
            assert 0.0 <= entry["mean"] <= 1.0
    variants = results["responsiveness"]
    assert set(variants) == {
        "no dislike signal", "dislike feature only", "feature + NTR label",
        "feature + NTR label, served",
    }  # fmt: skip
    served = variants["feature + NTR label, served"]["strengths"]
    assert served["prior_weight"] == ServiceSettings().prior_weight
    assert variants["no dislike signal"]["relative_change"] == 0.0
    # Each rung's cost sits next to it: the seed-0 metrics of that very ranking.
    assert (
        variants["feature + NTR label"]["recall@20"] == results["ssm+ntr"]["recall@20"]["values"][0]
    )
    assert 0.0 <= variants["no dislike signal"]["dislike@20"] <= 1.0
    # The penalty sweep carries the responsiveness at each simulated strength.
    sweep = results["serving"]["tradeoff"]["dislike_penalty"]
    simulated = [p for p in sweep if p["strength"] in (0.0, 0.1, 0.2, 0.5)]
    assert len(simulated) == 4 and all(-1.0 <= p["responsiveness"] <= 1.0 for p in simulated)
    assert "| responsiveness |" in (out / "report.md").read_text()
    assert variants["feature + NTR label"]["n_users"] == 16
    assert variants["feature + NTR label"]["similarity"] == "category"
    assert -5.0 < variants["dislike feature only"]["dislike_gate_mean"] < 5.0
    assert results["config"]["seeds"] == 2 and results["config"]["split"] == "random"
    assert results["summary"]["baseline"] == "ssm"
    assert len(results["reference"]["popularity"]["recall@20"]["values"]) == 2
    # EASE: a reference row on the same metrics, its λ per seed and the validation grid.
    ease = results["ease"]
    assert ease["skipped"] is None
    assert len(ease["lambda"]) == 2 and set(ease["lambda"]) <= set(LAMBDAS)
    assert [row["lambda"] for row in ease["grid"]] == list(LAMBDAS)
    assert all(len(row["validation_recall@20"]["values"]) == 2 for row in ease["grid"])
    assert set(results["reference"]["ease"]) == set(results["ssm"])
    for row in (results["ssm"], results["ssm+ntr"], *results["reference"].values()):
        auc = row["like_dislike_auc"]
        assert len(auc["values"]) == 2 and 0.0 <= auc["mean"] <= 1.0
    assert set(results["summary"]["like_dislike_auc"]) == {"baseline", "compared"}
    report = (out / "report.md").read_text()
    assert "| ease (reference) |" in report and "like_dislike_auc" in report
    assert f"λ = {ease['lambda'][0]:g}, {ease['lambda'][1]:g}" in report
    assert {p.name for p in out.iterdir()} == {
        "results.json", "report.md", "metrics.png", "loss.png", "responsiveness.png",
        "tradeoff.png",
    }  # fmt: skip


def test_a_catalog_too_large_for_ease_is_reported_with_its_reason(tmp_path: Path) -> None:
    out = tmp_path / "big"
    argv = ["--dataset", "synthetic", "--items", str(MAX_ITEMS + 1), "--objectives", "ssm"]
    assert main([*argv, *QUICK, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    reason = f"catalog of {MAX_ITEMS + 1} items above the EASE limit of {MAX_ITEMS}"
    assert results["ease"]["skipped"].startswith(reason)
    assert set(results["reference"]) == {"popularity"}
    assert f"EASE reference skipped: {reason}" in (out / "report.md").read_text()


def test_temporal_and_provided_splits_run(world_csv: Path, tmp_path: Path) -> None:
    rows = list(csv.reader(world_csv.open()))
    header, body = rows[0], rows[1:]
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    held = set(range(0, len(body), 5))  # every 5th row: each user has events on both sides
    train_rows = [r for i, r in enumerate(body) if i not in held]
    for path, part in ((train, train_rows), (test, [body[i] for i in sorted(held)])):
        with path.open("w", newline="") as fh:
            csv.writer(fh).writerows([header, *part])
    out = tmp_path / "provided"
    argv = ["--train", str(train), "--test", str(test), "--objectives", "ssm+ntr"]
    assert main([*argv, *QUICK, "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["config"]["split"] == "provided"
    out = tmp_path / "temporal"
    argv = ["--dataset", "csv", "--path", str(world_csv), "--split", "temporal", "--seeds", "2"]
    assert main([*argv, *QUICK, "--objectives", "ssm", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["split"] == "temporal"
    # The temporal split is the same for every seed, and so is EASE (fitted once).
    assert results["ease"]["lambda"][0] == results["ease"]["lambda"][1]
    assert results["reference"]["ease"]["recall@20"]["std"] == 0.0


def _no_timestamps(world_csv: Path, tmp_path: Path) -> Path:
    rows = list(csv.reader(world_csv.open()))
    for row in rows[1:]:
        row[3] = ""
    path = tmp_path / "untimed.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def _header_only(tmp_path: Path) -> Path:
    path = tmp_path / "empty.csv"
    path.write_text("user,item,type,timestamp\n")
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown objective", "unknown objective(s) nope"),
        ("missing path", "file not found"),
        ("temporal without timestamps", "temporal split needs timestamps"),
        ("empty test set", "no rows after the header"),
        ("test users unknown to train", "no user of the provided test set"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(
    case: str,
    message: str,
    world_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = ["--dataset", "csv", "--path", str(world_csv)]
    argv = {
        "unknown objective": [*data, "--objectives", "ssm,nope"],
        "missing path": ["--dataset", "ml-1m", "--path", str(tmp_path / "nowhere")],
        "temporal without timestamps": [
            "--dataset", "csv", "--path", str(_no_timestamps(world_csv, tmp_path)),
            "--split", "temporal",
        ],
        "empty test set": ["--train", str(world_csv), "--test", str(_header_only(tmp_path))],
        "test users unknown to train": [
            "--train", str(world_csv), "--test", str(_other_users(tmp_path)),
        ],
    }[case]  # fmt: skip
    out = tmp_path / "out"
    assert main([*argv, *QUICK, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def _other_users(tmp_path: Path) -> Path:
    path = tmp_path / "strangers.csv"
    path.write_text("user,item,type,timestamp\nstranger,i1,like,1\n")
    return path


def test_a_failed_run_keeps_an_earlier_report(world_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("{}")
    assert (
        main(["--dataset", "csv", "--path", str(world_csv), "--split", "x", "--out", str(out)]) == 2
    )
    assert (out / "results.json").read_text() == "{}"


def test_ml1m_timed_users_come_from_the_files_with_timestamps(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "ratings.users0001-2999.dat.gz", "wt") as fh:
        fh.write("1::10::5::978300760\n2::10::1::978300761\n")
    (tmp_path / "ratings.users3000-6040.no-timestamp.dat").write_text("3000::10::4\n")
    assert ml1m_timed_users(tmp_path) == frozenset({"1", "2"})
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n")
    assert ml1m_timed_users(tmp_path) is None


def test_served_rows_sit_next_to_each_mechanisms_control(world_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    argv = ["--dataset", "csv", "--path", str(world_csv), "--objectives", "ssm,ssm+ntr"]
    strengths = ["--prior-weight", "0.05", "--dislike-penalty", "0.3", "--penalty-window", "4"]
    assert veto_main(["eval", *argv, *strengths, *QUICK, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    serving = results["serving"]
    assert serving["strengths"] == {
        "prior_weight": 0.05, "dislike_penalty": 0.3, "penalty_window": 4
    }  # fmt: skip
    for objective in ("ssm", "ssm+ntr"):
        assert "recall@20" in results[objective]  # the model-only row as before
        variants = serving["objectives"][objective]
        assert set(variants) == {"served", "no_prior", "no_penalty"}
        for row in variants.values():
            for metric in ("recall@20", "dislike@20", "like_dislike_auc"):
                assert len(row[metric]["values"]) == 1
    tradeoff = serving["tradeoff"]
    assert tradeoff["objective"] == "ssm+ntr" and tradeoff["seed"] == 0  # the deployed one
    assert [p["strength"] for p in tradeoff["prior_weight"]][:2] == [0.0, 0.01]
    assert 0.3 in [p["strength"] for p in tradeoff["dislike_penalty"]]  # the served value
    assert [p["strength"] for p in tradeoff["penalty_window"]] == [0, 1, 2, 3, 4, 5, 10]
    # A sweep point with the same strengths as a row is that row.
    no_penalty = next(p for p in tradeoff["dislike_penalty"] if p["strength"] == 0.0)
    control = variants_of(results, "ssm+ntr")["no_penalty"]["recall@20"]["mean"]
    assert no_penalty["recall@20"] == control
    served = next(p for p in tradeoff["penalty_window"] if p["strength"] == 4)
    assert served["recall@20"] == variants_of(results, "ssm+ntr")["served"]["recall@20"]["mean"]
    assert (out / "tradeoff.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "## Serving-time dislike mechanisms" in report
    assert "| ssm+ntr | control: penalty off |" in report and "| dislike_penalty | 0.3 |" in report


def variants_of(results: dict[str, Any], objective: str) -> dict[str, Any]:
    return results["serving"]["objectives"][objective]  # type: ignore[no-any-return]


def test_the_served_strengths_default_to_the_services(tmp_path: Path) -> None:
    from trainer.eval.options import parse_options

    options = parse_options(["--out", str(tmp_path / "r")])
    defaults = ServiceSettings()
    assert options.prior_weight == defaults.prior_weight
    assert options.dislike_penalty == defaults.dislike_penalty
    assert options.penalty_window == defaults.penalty_window


def test_a_negative_strength_is_refused(tmp_path: Path) -> None:
    assert main(["--prior-weight", "-1", "--out", str(tmp_path / "r")]) == 2
    assert main(["--penalty-window", "-1", "--out", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()
