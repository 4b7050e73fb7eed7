"""Settings load from defaults, grace.toml and GRACE_ variables, and fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from grace.config import load_settings
from grace.errors import ConfigError


def test_defaults_use_dot_grace_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing configured, the data dir is ./.grace and checkpoints every 1000."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.data_dir == Path(".grace")
    assert settings.ledger.to_config().checkpoint_every == 1000
    assert settings.ledger.synchronous == "FULL"


def test_env_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """grace.toml is read, and GRACE_* variables (nested with __) win over it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grace.toml").write_text(
        'data_dir = "/srv/grace"\n[ledger]\ncheckpoint_every = 50\norigin = "example.org/log"\n'
    )
    monkeypatch.setenv("GRACE_LEDGER__CHECKPOINT_EVERY", "7")
    settings = load_settings()
    assert settings.data_dir == Path("/srv/grace")
    assert settings.ledger.origin == "example.org/log"
    assert settings.ledger.checkpoint_every == 7


def test_bad_values_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An invalid value raises ConfigError naming the dotted key."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRACE_LEDGER__SYNCHRONOUS", "OFF")
    with pytest.raises(ConfigError, match=r"ledger\.synchronous"):
        load_settings()


def test_unknown_keys_in_toml_are_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo in grace.toml is an error, not silently ignored."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grace.toml").write_text("[ledger]\ncheckpoint_evry = 5\n")
    with pytest.raises(ConfigError, match="checkpoint_evry"):
        load_settings()


def test_missing_explicit_config_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GRACE_CONFIG_FILE naming a missing file raises ConfigError."""
    monkeypatch.setenv("GRACE_CONFIG_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_settings()


def test_malformed_toml_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A TOML syntax error raises ConfigError."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grace.toml").write_text("[ledger\n")
    with pytest.raises(ConfigError):
        load_settings()
