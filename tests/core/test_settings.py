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
