"""trainer.eval.options: the flags of `veto eval` and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.eval.options import EVAL_EPOCHS, parse_options
from veto.errors import ConfigError


def test_defaults_and_overrides(tmp_path: Path) -> None:
    opts = parse_options(["--out", str(tmp_path / "o"), "--epochs", "3", "--set", "tau=0.2"])
    assert opts.objectives == ("ssm", "ssm+ntr")
    assert opts.protocol == "random" and opts.seeds == 1 and opts.sim_users == 2000
    config = opts.train_config("ssm+ntr", seed=4)
    assert (config.epochs, config.tau, config.seed, config.objective) == (3, 0.2, 4, "ssm+ntr")
    assert opts.train_config("ssm-nodislike", seed=0).use_dislike_feature is False
    plain = parse_options(["--out", str(tmp_path / "o")])
    assert plain.train_config("ssm", seed=0).epochs == EVAL_EPOCHS


def test_a_small_run_is_set_field_by_field(tmp_path: Path) -> None:
    argv = ["--out", str(tmp_path), "--epochs", "1", "--set", "dim=8", "--sim-users", "64"]
    opts = parse_options(argv)
    config = opts.train_config("ssm", seed=0)
    assert (config.epochs, config.dim) == (1, 8)
    assert opts.sim_users == 64


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--objectives", "ssm,nope"], "unknown objective"),
        (["--objectives", "ssm,ssm"], "twice"),
        (["--objectives", ","], "empty"),
        (["--dataset", "imdb"], "unknown dataset"),
        (["--split", "sideways"], "unknown split"),
        (["--train", "a.csv"], "both --train"),
        (["--train", "a.csv", "--test", "b.csv", "--split", "temporal"], "does not apply"),
        (["--test-share", "0"], "strictly between"),
        (["--seeds", "0"], "seeds"),
        (["--set", "nope=1"], "TrainConfig field"),
        (["--set", "seed=1"], "set by the evaluation"),
        (["--set", "tau=abc"], "not a float"),
        (["--set", "tau=-1"], "tau must be > 0"),
        (["--epochs", "-1"], "epochs"),
    ],
)
def test_bad_options_are_config_errors(tmp_path: Path, argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_options(["--out", str(tmp_path / "o"), *argv])


def test_out_must_not_be_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        parse_options(["--out", str(tmp_path / "f")])
