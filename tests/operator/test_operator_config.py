"""The operator's settings from flags and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tjoperator.config import OperatorConfig


def test_no_bridge_works_with_watched_namespaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARED_DATA_PATH", str(tmp_path))
    config = OperatorConfig.from_env(namespaces=("team-a",), bridge_namespace="")
    assert config.bridge_namespace is None and config.namespaces == ("team-a",)
    with pytest.raises(ValueError, match="bridge namespace 'default' is not watched"):
        OperatorConfig.from_env(namespaces=("team-a",))


def test_allowed_trainer_images_default_to_the_trainer_image_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARED_DATA_PATH", str(tmp_path))
    monkeypatch.setenv("TJ_TRAINER_IMAGE", "registry.example/trainer:1")
    assert OperatorConfig.from_env().trainer_images == ("registry.example/trainer:1",)
    monkeypatch.setenv("TJ_ALLOWED_TRAINER_IMAGES", " trainer:2 , registry.example/trainer:1,")
    assert OperatorConfig.from_env().trainer_images == ("registry.example/trainer:1", "trainer:2")


def test_the_database_secret_reference_comes_from_the_chart_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARED_DATA_PATH", str(tmp_path))
    config = OperatorConfig.from_env()
    assert (config.database_secret_name, config.database_secret_key) == (None, "database-url")
    monkeypatch.setenv("TJ_DATABASE_SECRET_NAME", "tj-database")
    monkeypatch.setenv("TJ_DATABASE_SECRET_KEY", "DATABASE_URL")
    config = OperatorConfig.from_env()
    assert (config.database_secret_name, config.database_secret_key) == (
        "tj-database",
        "DATABASE_URL",
    )
    monkeypatch.setenv("TJ_DATABASE_SECRET_NAME", "Not_A_Name")
    with pytest.raises(
        ValueError, match=r"TJ_DATABASE_SECRET_NAME must be a Secret name .*, got 'Not_A_Name'"
    ):
        OperatorConfig.from_env()
    monkeypatch.setenv("TJ_DATABASE_SECRET_NAME", "tj-database")
    monkeypatch.setenv("TJ_DATABASE_SECRET_KEY", "a key")
    with pytest.raises(
        ValueError, match=r"TJ_DATABASE_SECRET_KEY must be a Secret key .*, got 'a key'"
    ):
        OperatorConfig.from_env()
