"""Settings: environment prefix, the default SQLite file in the data dir, secrets redacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import Settings, default_data_dir


def test_defaults_put_sqlite_in_the_per_user_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("ACPROP_TUNER_DATABASE_URL", "ACPROP_TUNER_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "acprop-tuner"
    settings = Settings()
    assert (
        settings.database_url_value()
        == f"sqlite:///{tmp_path / 'acprop-tuner' / 'acprop-tuner.sqlite'}"
    )
    assert settings.is_sqlite


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ACPROP_TUNER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ACPROP_TUNER_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("ACPROP_TUNER_RATE_LIMIT_BURST", "7")
    settings = Settings()
    assert settings.data_dir == tmp_path
    assert settings.max_body_bytes == 2048
    assert settings.rate_limit_burst == 7


def test_password_never_in_repr_or_redacted_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACPROP_TUNER_DATABASE_URL", "postgresql+psycopg://u:hunter2@db/acprop")
    settings = Settings()
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())
    assert "hunter2" not in settings.database_url_redacted()
    assert "hunter2" in settings.database_url_value()
    assert not settings.is_sqlite


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACPROP_TUNER_RATE_LIMIT_PER_S", "0")
    with pytest.raises(ValueError, match="rate_limit_per_s"):
        Settings()
