"""Configuration (kms/config.py): kms.toml, the environment over it, a PIN that never shows."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from pathlib import Path

import pytest

from kms.config import DEFAULT_PROFILE, Config, Pin, describe_config, load_config
from kms.errors import ConfigError

SECRET_PIN = "pin-7d0a51e2"


def _toml(tmp_path: Path, text: str, name: str = "kms.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _pin_file(path: Path, text: str) -> Path:
    """A PIN file as it must be: readable by its owner only."""
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


# --- precedence ---------------------------------------------------------------------------------


def test_the_environment_wins_over_kms_toml(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        "[kms]\n"
        'token_label = "from-toml"\n'
        'database_url = "sqlite:///from-toml.db"\n'
        'hsm_profile = "from-toml"\n'
        'actor = "toml-actor"\n'
        "provision_chunk_size = 7\n",
    )
    config = load_config(
        {"KMS_CONFIG": str(path), "KMS_TOKEN_LABEL": "from-env", "KMS_ACTOR": "env-actor"}
    )
    assert config.token_label == "from-env"
    assert config.actor == "env-actor"
    # What the environment does not set still comes from the file.
    assert config.database_url == "sqlite:///from-toml.db"
    assert config.hsm_profile == "from-toml"
    assert config.provision_chunk_size == 7


def test_a_top_level_table_works_like_a_kms_table(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'token_label = "flat"\n')
    assert load_config({"KMS_CONFIG": str(path)}).token_label == "flat"


def test_every_environment_variable_is_read(tmp_path: Path) -> None:
    env = {
        "KMS_CONFIG": str(_toml(tmp_path, "")),
        "KMS_PKCS11_MODULE": "/opt/hsm/lib.so",
        "KMS_TOKEN_LABEL": "label",
        "KMS_USER_PIN": SECRET_PIN,
        "KMS_DATABASE_URL": "postgresql://db/kms",
        "KMS_HSM_PROFILE": "vendor",
        "KMS_ACTOR": "alice",
    }
    config = load_config(env)
    assert (config.pkcs11_module, config.token_label, config.database_url) == (
        "/opt/hsm/lib.so",
        "label",
        "postgresql://db/kms",
    )
    assert (config.hsm_profile, config.actor) == ("vendor", "alice")
    assert config.require_pin().reveal() == SECRET_PIN


def test_without_kms_toml_the_defaults_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./kms.toml here, nor under $XDG_CONFIG_HOME
    config = load_config({"KMS_ACTOR": "bob", "HOME": str(tmp_path / "home")})
    data_dir = tmp_path / "home" / ".local" / "share" / "dlms-kms"
    assert config.data_dir == data_dir
    assert config.database_url == f"sqlite:///{data_dir}/kms.db"
    assert config.hsm_profile == DEFAULT_PROFILE
    assert config.user_pin is None
    with pytest.raises(ConfigError, match="KMS_USER_PIN"):
        config.require_pin()


def test_kms_config_naming_a_missing_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as info:
        load_config({"KMS_CONFIG": str(missing)})
    assert str(missing) in str(info.value)


def test_invalid_toml_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[kms\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config({"KMS_CONFIG": str(path)})
    assert str(path) in str(info.value)


# --- the PIN ------------------------------------------------------------------------------------


def test_the_pin_file_first_line_is_the_pin(tmp_path: Path) -> None:
    pin_file = _pin_file(tmp_path / "pin", f"  {SECRET_PIN}  \nsecond line is ignored\n")
    config = load_config(
        {"KMS_CONFIG": str(_toml(tmp_path, "")), "KMS_USER_PIN_FILE": str(pin_file)}
    )
    assert config.require_pin().reveal() == SECRET_PIN


def test_user_pin_file_in_kms_toml_is_read(tmp_path: Path) -> None:
    pin_file = _pin_file(tmp_path / "pin", SECRET_PIN)
    path = _toml(tmp_path, f'[kms]\nuser_pin_file = "{pin_file}"\n')
    assert load_config({"KMS_CONFIG": str(path)}).require_pin().reveal() == SECRET_PIN


def test_kms_user_pin_wins_over_the_pin_file(tmp_path: Path) -> None:
    pin_file = _pin_file(tmp_path / "pin", "from-file")
    env = {
        "KMS_CONFIG": str(_toml(tmp_path, "")),
        "KMS_USER_PIN_FILE": str(pin_file),
        "KMS_USER_PIN": SECRET_PIN,
    }
    assert load_config(env).require_pin().reveal() == SECRET_PIN


@pytest.mark.parametrize("content", ["", "\n", "   \nlater line\n"])
def test_an_empty_pin_file_is_refused(tmp_path: Path, content: str) -> None:
    pin_file = _pin_file(tmp_path / "pin", content)
    with pytest.raises(ConfigError, match="empty"):
        load_config({"KMS_CONFIG": str(_toml(tmp_path, "")), "KMS_USER_PIN_FILE": str(pin_file)})


def test_a_missing_pin_file_is_refused_naming_it(tmp_path: Path) -> None:
    pin_file = tmp_path / "no-pin-here"
    with pytest.raises(ConfigError) as info:
        load_config({"KMS_CONFIG": str(_toml(tmp_path, "")), "KMS_USER_PIN_FILE": str(pin_file)})
    assert str(pin_file) in str(info.value)


@pytest.mark.parametrize("table", ["[kms]\n", ""])
def test_a_pin_written_in_kms_toml_is_refused_without_repeating_it(
    tmp_path: Path, table: str
) -> None:
    path = _toml(tmp_path, f'{table}user_pin = "{SECRET_PIN}"\n')
    with pytest.raises(ConfigError) as info:
        load_config({"KMS_CONFIG": str(path)})
    assert "user_pin_file" in str(info.value)
    assert SECRET_PIN not in str(info.value)
    assert SECRET_PIN not in repr(info.value)


def test_a_pin_outside_the_kms_table_is_refused_too(tmp_path: Path) -> None:
    path = _toml(tmp_path, f'user_pin = "{SECRET_PIN}"\n[kms]\ntoken_label = "x"\n')
    with pytest.raises(ConfigError):
        load_config({"KMS_CONFIG": str(path)})


def test_unknown_settings_are_refused_naming_them(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[kms]\ntoken_label = "x"\ntokn_lable = "typo"\nso_pin_file = "f"\n')
    with pytest.raises(ConfigError) as info:
        load_config({"KMS_CONFIG": str(path)})
    assert "so_pin_file" in str(info.value)
    assert "tokn_lable" in str(info.value)


@pytest.mark.parametrize(
    "line", ["provision_chunk_size = 0", 'provision_chunk_size = "10"', "token_label = 12"]
)
def test_settings_of_the_wrong_type_are_refused(tmp_path: Path, line: str) -> None:
    path = _toml(tmp_path, f"[kms]\n{line}\n")
    with pytest.raises(ConfigError, match=line.split(" ")[0]):
        load_config({"KMS_CONFIG": str(path)})


def test_a_boolean_chunk_size_is_refused(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[kms]\nprovision_chunk_size = true\n")
    with pytest.raises(ConfigError):
        load_config({"KMS_CONFIG": str(path)})


# --- Pin ----------------------------------------------------------------------------------------


def test_a_pin_never_shows_its_value() -> None:
    pin = Pin(SECRET_PIN)
    shown = [
        repr(pin),
        str(pin),
        ascii(pin),
        format(pin),
        format(pin, ">40"),
        f"{pin}",
        f"{pin!r}",
        f"{pin:s}",
        "%s %r" % (pin, pin),  # noqa: UP031 (the old operator is what a log call uses)
        "{} {!r}".format(pin, pin),  # noqa: UP032
        repr([pin]),
        repr({"pin": pin}),
    ]
    for text in shown:
        assert SECRET_PIN not in text
    assert pin.reveal() == SECRET_PIN


def test_a_config_never_shows_its_pin() -> None:
    config = Config(user_pin=Pin(SECRET_PIN))
    assert SECRET_PIN not in repr(config)
    assert SECRET_PIN not in str(config)


def test_a_pin_is_not_picklable_or_copyable() -> None:
    pin = Pin(SECRET_PIN)
    with pytest.raises(TypeError):
        pickle.dumps(pin)
    with pytest.raises(TypeError):
        pickle.dumps(Config(user_pin=pin))
    with pytest.raises(TypeError):
        copy.deepcopy(pin)


def test_a_pin_has_no_instance_dict_and_compares_by_value() -> None:
    pin = Pin(SECRET_PIN)
    assert not hasattr(pin, "__dict__")
    assert pin == Pin(SECRET_PIN)
    assert pin != Pin("other")
    assert pin != SECRET_PIN


def test_an_empty_pin_is_refused() -> None:
    with pytest.raises(ConfigError):
        Pin("")


# --- step 7 settings ----------------------------------------------------------------------------


def test_the_client_system_title_comes_from_kms_toml_or_the_environment(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        '[kms]\nclient_system_title = "4b4d5300000000a1"\nic_block_size = 50\n'
        "key_cache_size = 8\nkey_cache_idle_seconds = 2.5\n",
    )
    config = load_config({"KMS_CONFIG": str(path)})
    assert config.require_client_system_title() == bytes.fromhex("4B4D5300000000A1")
    assert (config.ic_block_size, config.key_cache_size, config.key_cache_idle_seconds) == (
        50,
        8,
        2.5,
    )
    override = load_config({"KMS_CONFIG": str(path), "KMS_CLIENT_SYSTEM_TITLE": "4B4D5300000000B2"})
    assert override.client_system_title == bytes.fromhex("4B4D5300000000B2")


def test_without_a_client_system_title_protection_is_refused_by_name(tmp_path: Path) -> None:
    config = load_config({"KMS_CONFIG": str(_toml(tmp_path, ""))})
    assert config.client_system_title is None
    assert config.ic_block_size == 1000
    with pytest.raises(ConfigError, match="KMS_CLIENT_SYSTEM_TITLE"):
        config.require_client_system_title()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('client_system_title = "4B4D53"', "client_system_title"),
        ('client_system_title = "4B4D5300000000ZZ"', "not hexadecimal"),
        ("ic_block_size = 0", "ic_block_size must be a positive integer"),
        ("ic_block_size = true", "ic_block_size must be a positive integer"),
        ('key_cache_size = "8"', "key_cache_size must be a positive integer"),
        ("key_cache_idle_seconds = 0", "key_cache_idle_seconds must be a positive number"),
        ("key_cache_size = 1", "key_cache_size must be at least 2"),
    ],
)
def test_bad_step_7_settings_are_named(tmp_path: Path, text: str, words: str) -> None:
    path = _toml(tmp_path, f"[kms]\n{text}\n")
    with pytest.raises(ConfigError, match=words):
        load_config({"KMS_CONFIG": str(path)})


@pytest.mark.parametrize(
    ("toml", "environ", "expected"),
    [
        ("", {}, False),
        ("ca_revocation_ceremony = true", {}, True),
        ("ca_revocation_ceremony = true", {"KMS_CA_REVOCATION_CEREMONY": "no"}, False),
        ("", {"KMS_CA_REVOCATION_CEREMONY": "1"}, True),
        ("", {"KMS_CA_REVOCATION_CEREMONY": " Yes "}, True),
        ("", {"KMS_CA_REVOCATION_CEREMONY": "off"}, False),
    ],
)
def test_ca_revocation_ceremony_from_kms_toml_or_the_environment(
    tmp_path: Path, toml: str, environ: dict[str, str], expected: bool
) -> None:
    path = _toml(tmp_path, f"[kms]\n{toml}\n")
    config = load_config({"KMS_CONFIG": str(path), **environ})
    assert config.ca_revocation_ceremony is expected


@pytest.mark.parametrize(
    ("toml", "environ", "words"),
    [
        ('ca_revocation_ceremony = "yes"', {}, "ca_revocation_ceremony must be true or false"),
        ("ca_revocation_ceremony = 1", {}, "ca_revocation_ceremony must be true or false"),
        ("", {"KMS_CA_REVOCATION_CEREMONY": "maybe"}, "KMS_CA_REVOCATION_CEREMONY .*'maybe'"),
    ],
)
def test_a_bad_ca_revocation_ceremony_is_named(
    tmp_path: Path, toml: str, environ: dict[str, str], words: str
) -> None:
    path = _toml(tmp_path, f"[kms]\n{toml}\n")
    with pytest.raises(ConfigError, match=words):
        load_config({"KMS_CONFIG": str(path), **environ})


# --- the security officer PIN (CA backup key ceremony) -------------------------------------------


def test_the_so_pin_comes_from_the_environment_or_a_file_and_never_shows(tmp_path: Path) -> None:
    from kms.config import security_officer_pin

    assert security_officer_pin({"KMS_SO_PIN": SECRET_PIN}).reveal() == SECRET_PIN
    pin_file = _pin_file(tmp_path / "so.pin", f"{SECRET_PIN}\nignored\n")
    pin = security_officer_pin({"KMS_SO_PIN_FILE": str(pin_file)})
    assert pin.reveal() == SECRET_PIN and SECRET_PIN not in f"{pin} {pin!r}"
    assert not [f for f in dataclasses.fields(Config) if "so" in f.name.split("_")]  # not held


@pytest.mark.parametrize(
    ("environ", "match"),
    [
        ({}, "KMS_SO_PIN or KMS_SO_PIN_FILE"),
        ({"KMS_SO_PIN_FILE": "/nonexistent/so.pin"}, "cannot read the SO PIN file"),
    ],
)
def test_a_missing_so_pin_is_named(environ: dict[str, str], match: str) -> None:
    from kms.config import security_officer_pin

    with pytest.raises(ConfigError, match=match):
        security_officer_pin(environ)


def test_an_empty_so_pin_file_is_refused(tmp_path: Path) -> None:
    from kms.config import security_officer_pin

    empty = _pin_file(tmp_path / "so.pin", "\n")
    with pytest.raises(ConfigError, match="empty"):
        security_officer_pin({"KMS_SO_PIN_FILE": str(empty)})


def test_pki_organization_comes_from_kms_pki_organization_with_its_provenance(
    tmp_path: Path,
) -> None:
    path = _toml(tmp_path, 'pki_organization = "From File"\n')
    assert load_config({"KMS_CONFIG": str(path)}).pki_organization == "From File"
    env = {"KMS_CONFIG": str(path), "KMS_PKI_ORGANIZATION": "Example Utility"}
    assert load_config(env).pki_organization == "Example Utility"
    (shown,) = [s for s in describe_config(env) if s.name == "pki_organization"]
    assert (shown.value, shown.source, shown.origin) == (
        "Example Utility",
        "environment",
        "KMS_PKI_ORGANIZATION",
    )
