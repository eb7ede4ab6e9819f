"""Where the configuration comes from: which kms.toml, which data directory, which PIN file, and
:func:`kms.config.describe_config`'s account of every setting's source (``kms config show``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kms.config import Config, Setting, describe_config, load_config, redact_database_url
from kms.errors import ConfigError

SECRET_PIN = "pin-3b9e77c4"


def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment with a home of its own, run from an empty working directory."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return {"HOME": str(tmp_path / "home"), "KMS_ACTOR": "pytest"}


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def _by_name(settings: list[Setting]) -> dict[str, Setting]:
    return {s.name: s for s in settings}


# --- which kms.toml ------------------------------------------------------------------------------


def test_the_xdg_config_file_is_read_when_there_is_no_kms_toml_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _home(tmp_path, monkeypatch)
    xdg = _write(tmp_path / "home/.config/dlms-kms/kms.toml", 'token_label = "from-xdg"\n')
    assert load_config(env).token_label == "from-xdg"
    config_file = _by_name(describe_config(env))["config_file"]
    assert (config_file.value, config_file.source) == (str(xdg), "default")

    custom = _write(tmp_path / "xdg-config/dlms-kms/kms.toml", 'token_label = "custom-xdg"\n')
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    assert load_config(env).token_label == "custom-xdg"
    assert _by_name(describe_config(env))["config_file"].value == str(custom)


def test_kms_toml_in_the_working_directory_wins_over_the_xdg_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _home(tmp_path, monkeypatch)
    _write(tmp_path / "home/.config/dlms-kms/kms.toml", 'token_label = "from-xdg"\n')
    here = _write(Path("kms.toml").resolve(), 'token_label = "from-here"\n')
    assert load_config(env).token_label == "from-here"
    assert _by_name(describe_config(env))["config_file"].value == str(here)


def test_a_relative_xdg_config_home_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _home(tmp_path, monkeypatch)
    _write(Path("relative/dlms-kms/kms.toml").resolve(), 'token_label = "relative"\n')
    env["XDG_CONFIG_HOME"] = "relative"  # the XDG rule: a relative base is invalid
    assert load_config(env).token_label == "kms"
    shown = _by_name(describe_config(env))["config_file"]
    assert shown.value is None
    assert shown.detail is not None and "./kms.toml" in shown.detail


# --- the data directory -------------------------------------------------------------------------


def test_the_data_directory_defaults_to_xdg_data_home_and_holds_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _home(tmp_path, monkeypatch)
    assert load_config(env).data_dir == tmp_path / "home/.local/share/dlms-kms"
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    config = load_config(env)
    assert config.data_dir == tmp_path / "data/dlms-kms"
    assert config.database_url == f"sqlite:///{tmp_path}/data/dlms-kms/kms.db"
    # Loading the configuration touches no disk: the database's code makes the directory.
    assert not (tmp_path / "data").exists()
    assert list(Path.cwd().iterdir()) == []


def test_kms_data_dir_wins_over_data_dir_in_kms_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _home(tmp_path, monkeypatch)
    path = _write(tmp_path / "kms.toml", f'data_dir = "{tmp_path / "from-file"}"\n')
    env["KMS_CONFIG"] = str(path)
    assert load_config(env).data_dir == tmp_path / "from-file"
    env["KMS_DATA_DIR"] = "~/from-env"
    config = load_config(env)
    assert config.data_dir == tmp_path / "home/from-env"
    assert config.database_url == f"sqlite:///{tmp_path}/home/from-env/kms.db"
    env["KMS_DATABASE_URL"] = "sqlite:////srv/kms/other.db"
    assert load_config(env).database_url == "sqlite:////srv/kms/other.db"


@pytest.mark.parametrize(
    ("toml", "environ", "named"),
    [
        ('data_dir = "var"', {}, "data_dir in"),
        ("", {"KMS_DATA_DIR": "var/kms"}, "KMS_DATA_DIR"),
        ("data_dir = 7", {}, "data_dir must be a string"),
    ],
)
def test_a_relative_data_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, environ: dict[str, str], named: str
) -> None:
    env = {**_home(tmp_path, monkeypatch), **environ}
    env["KMS_CONFIG"] = str(_write(tmp_path / "kms.toml", toml + "\n"))
    with pytest.raises(ConfigError, match=named):
        load_config(env)


# --- PIN files: the owner's alone ----------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_a_user_pin_file_open_to_group_or_others_is_refused_naming_the_fix(
    tmp_path: Path, mode: int
) -> None:
    pin_file = _write(tmp_path / "user.pin", SECRET_PIN + "\n", mode)
    env = {"KMS_CONFIG": str(_write(tmp_path / "kms.toml", "")), "KMS_USER_PIN_FILE": str(pin_file)}
    with pytest.raises(ConfigError) as info:
        load_config(env)
    message = str(info.value)
    assert str(pin_file) in message
    assert f"mode {mode:04o}" in message
    assert f"chmod 600 {pin_file}" in message
    assert SECRET_PIN not in message and SECRET_PIN not in repr(info.value)


def test_the_pin_file_named_in_kms_toml_is_checked_too(tmp_path: Path) -> None:
    pin_file = _write(tmp_path / "user.pin", SECRET_PIN, 0o640)
    path = _write(tmp_path / "kms.toml", f'user_pin_file = "{pin_file}"\n')
    with pytest.raises(ConfigError, match="chmod 600"):
        load_config({"KMS_CONFIG": str(path)})
    pin_file.chmod(0o400)
    assert load_config({"KMS_CONFIG": str(path)}).require_pin().reveal() == SECRET_PIN


def test_an_so_pin_file_open_to_others_is_refused(tmp_path: Path) -> None:
    from kms.config import security_officer_pin

    pin_file = _write(tmp_path / "so.pin", SECRET_PIN, 0o644)
    with pytest.raises(ConfigError, match=r"SO PIN file .*mode 0644.*chmod 600") as info:
        security_officer_pin({"KMS_SO_PIN_FILE": str(pin_file)})
    assert SECRET_PIN not in str(info.value)
    pin_file.chmod(0o600)
    assert security_officer_pin({"KMS_SO_PIN_FILE": str(pin_file)}).reveal() == SECRET_PIN


# --- describe_config: every setting and its source ----------------------------------------------


def test_every_setting_is_described_with_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _home(tmp_path, monkeypatch)
    pin_file = _write(tmp_path / "user.pin", SECRET_PIN, 0o600)
    path = _write(
        tmp_path / "kms.toml",
        f'token_label = "from-file"\nuser_pin_file = "{pin_file}"\nic_block_size = 50\n',
    )
    env.update(KMS_CONFIG=str(path), KMS_TOKEN_LABEL="from-env", KMS_CEREMONY_APPROVALS="1")
    shown = _by_name(describe_config(env))

    config = load_config(env)
    assert set(shown) == {f.name for f in dataclasses.fields(Config)} | {
        "config_file",
        "user_pin_file",
    }
    assert (shown["config_file"].value, shown["config_file"].source) == (str(path), "environment")
    assert shown["config_file"].origin == "KMS_CONFIG"
    assert (shown["token_label"].value, shown["token_label"].source) == ("from-env", "environment")
    assert shown["token_label"].origin == "KMS_TOKEN_LABEL"
    assert (shown["ic_block_size"].value, shown["ic_block_size"].source) == (50, "file")
    assert shown["ic_block_size"].origin == str(path)
    assert (shown["ceremony_approvals"].value, shown["ceremony_approvals"].source) == (
        1,
        "environment",
    )
    assert (shown["key_cache_size"].value, shown["key_cache_size"].source) == (256, "default")
    assert shown["data_dir"].source == "default"
    assert shown["data_dir"].detail == "~/.local/share/dlms-kms"
    assert shown["database_url"].value == f"sqlite:///{config.data_dir}/kms.db"
    assert (shown["actor"].value, shown["actor"].source) == ("pytest", "environment")

    # The PIN: set, read from the file kms.toml names; never its value.
    assert (shown["user_pin"].value, shown["user_pin"].source) == ("set", "file")
    assert shown["user_pin"].detail == f"read from {pin_file}"
    assert (shown["user_pin_file"].value, shown["user_pin_file"].origin) == (
        str(pin_file),
        str(path),
    )
    assert SECRET_PIN not in repr(describe_config(env))


@pytest.mark.parametrize(
    ("environ", "value", "source", "origin"),
    [
        ({}, "not set", "default", None),
        ({"KMS_USER_PIN": SECRET_PIN}, "set", "environment", "KMS_USER_PIN"),
        ({"KMS_USER_PIN_FILE": "{pin_file}"}, "set", "environment", "KMS_USER_PIN_FILE"),
    ],
)
def test_the_pin_is_only_set_or_not_set_and_says_where_from(
    tmp_path: Path, environ: dict[str, str], value: str, source: str, origin: str | None
) -> None:
    pin_file = _write(tmp_path / "user.pin", SECRET_PIN, 0o600)
    env = {k: v.format(pin_file=pin_file) for k, v in environ.items()}
    env["KMS_CONFIG"] = str(_write(tmp_path / "kms.toml", ""))
    shown = _by_name(describe_config(env))["user_pin"]
    assert (shown.value, shown.source, shown.origin) == (value, source, origin)
    if "KMS_USER_PIN_FILE" in env:
        assert shown.detail == f"read from {pin_file}"
    assert SECRET_PIN not in repr(shown)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg2://kms:s3cret@db:5432/kms",
            "postgresql+psycopg2://kms:***@db:5432/kms",
        ),
        ("postgresql://kms@db/kms", "postgresql://kms@db/kms"),
        ("sqlite:////srv/kms.db", "sqlite:////srv/kms.db"),
    ],
)
def test_a_database_password_is_never_shown(tmp_path: Path, url: str, shown: str) -> None:
    assert redact_database_url(url) == shown
    env = {"KMS_CONFIG": str(_write(tmp_path / "kms.toml", "")), "KMS_DATABASE_URL": url}
    assert _by_name(describe_config(env))["database_url"].value == shown


def test_describe_config_refuses_what_load_config_refuses(tmp_path: Path) -> None:
    path = _write(tmp_path / "kms.toml", 'tokn_label = "typo"\n')
    with pytest.raises(ConfigError, match="tokn_label"):
        describe_config({"KMS_CONFIG": str(path)})
