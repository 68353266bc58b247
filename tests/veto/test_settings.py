"""veto.settings: one configuration for the deployment, typos refused at start."""

from __future__ import annotations

import pytest

from veto.errors import ConfigError
from veto.settings import (
    ServiceSettings,
    TrainerSettings,
    known_variables,
    load_settings,
)


def test_flags_override_the_environment() -> None:
    env = {"VETO_PORT": "9000", "VETO_HOST": "0.0.0.0"}
    settings = load_settings(ServiceSettings, environ=env, port=8123, host=None)
    assert settings.port == 8123  # the flag wins
    assert settings.host == "0.0.0.0"  # a flag left unset (None) keeps the environment's


def test_an_unknown_variable_is_refused_naming_it() -> None:
    env = {"VETO_TRAINER_METRICS_PORT": "9100", "VETO_REDIS_URL": "redis://x:1/0"}
    with pytest.raises(ConfigError, match="VETO_TRAINER_METRICS_PORT"):
        load_settings(TrainerSettings, environ=env)


def test_the_other_process_variables_are_accepted_and_ignored() -> None:
    # One environment configures both processes (compose, `veto up`).
    env = {"VETO_DIM": "32", "VETO_MAX_K": "50"}
    service = load_settings(ServiceSettings, environ=env)
    trainer = load_settings(TrainerSettings, environ=env)
    assert service.max_k == 50 and trainer.dim == 32


def test_an_invalid_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="VETO_STREAM_PARTITIONS"):
        load_settings(ServiceSettings, environ={"VETO_STREAM_PARTITIONS": "0"})
    with pytest.raises(ConfigError, match="VETO_PORT"):
        load_settings(ServiceSettings, environ={}, port=70000)


def test_every_field_is_a_known_variable_and_defaults_are_defined_once() -> None:
    for cls in (ServiceSettings, TrainerSettings):
        for name in cls.model_fields:
            assert f"VETO_{name.upper()}" in known_variables()
    shared = set(ServiceSettings.model_fields) & set(TrainerSettings.model_fields)
    for name in shared:  # inherited from CommonSettings, not redefined
        assert ServiceSettings.model_fields[name].default == (
            TrainerSettings.model_fields[name].default
        )
