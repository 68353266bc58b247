"""trainer.learn.config: one TrainConfig from the deployment's settings, and its validation."""

from __future__ import annotations

import pytest

from trainer.learn.config import TrainConfig
from veto.errors import ConfigError
from veto.settings import TrainerSettings, load_settings


def test_the_deployed_settings_make_the_config() -> None:
    settings = load_settings(
        TrainerSettings,
        environ={"VETO_OBJECTIVE": "ssm", "VETO_CONTEXT": "mix", "VETO_HISTORY_LEN": "30"},
    )
    config = TrainConfig.from_settings(settings, dim=16, seed=3)
    assert (config.objective, config.context, config.history_len) == ("ssm", "mix", 30)
    assert (config.dim, config.seed, config.threads) == (16, 3, settings.threads)


def test_the_defaults_are_the_settings_defaults() -> None:
    assert TrainConfig.from_settings(TrainerSettings()) == TrainConfig()


def test_a_bad_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="context"):
        TrainConfig.from_settings(TrainerSettings(), context="sideways")
