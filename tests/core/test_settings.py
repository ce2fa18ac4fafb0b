"""Settings from the environment: a bad value is one clear message."""

from __future__ import annotations

import pytest

from tjcore.settings import Settings, SettingsError


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "soon"])
def test_a_lease_must_be_a_finite_positive_number_of_seconds(value: str) -> None:
    with pytest.raises(SettingsError, match="TRAINING_LEASE_SECONDS must be"):
        Settings.from_env({"TRAINING_LEASE_SECONDS": value})


def test_the_lease_defaults_to_a_minute() -> None:
    assert Settings.from_env({}).lease_seconds == 60.0
    assert Settings.from_env({"TRAINING_LEASE_SECONDS": "2.5"}).lease_seconds == 2.5


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "soon"])
def test_a_poll_interval_must_be_a_finite_positive_number_of_seconds(value: str) -> None:
    with pytest.raises(SettingsError, match="TRAINING_POLL_INTERVAL must be"):
        Settings.from_env({"TRAINING_POLL_INTERVAL": value})


@pytest.mark.parametrize("value", ["127.0.0.1:8080", "http://x/{job}", "ftp://x/", "http://x/{"])
def test_a_dashboard_url_must_be_http_with_known_placeholders(value: str) -> None:
    with pytest.raises(SettingsError, match="TJ_DASHBOARD_URL must be an http"):
        Settings.from_env({"TJ_DASHBOARD_URL": value})


def test_the_dashboard_link_fills_in_the_job() -> None:
    settings = Settings.from_env({"TJ_DASHBOARD_URL": "https://d.example/{namespace}/{name}"})
    assert settings.dashboard_link("ml", "train-a") == "https://d.example/ml/train-a"
    assert Settings.from_env({}).dashboard_link("ml", "train-a") is None
