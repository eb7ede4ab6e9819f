"""``kms config show``, and where the KMS puts its data when nothing says where: never in the
working directory (black box; no token needed, so these run without the ``cli`` fixture)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.cli.helpers import describe, one_line, raw_output, run, stderr_json, stdout_json

SECRET_PIN = "pin-c0ffee-5e7"


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str]:
    """A shell with no KMS_* or XDG_* setting and a home of its own."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KMS_", "XDG_")) and k != "HOME"
    }
    env["HOME"] = str(tmp_path / "home")
    (tmp_path / "work").mkdir()
    return env


def _work(tmp_path: Path) -> Path:
    return tmp_path / "work"


def test_config_show_names_every_source_and_never_the_pin(
    bare_env: dict[str, str], tmp_path: Path
) -> None:
    pin_file = tmp_path / "user.pin"
    pin_file.write_text(SECRET_PIN + "\n", encoding="utf-8")
    pin_file.chmod(0o600)
    config_file = tmp_path / "kms.toml"
    config_file.write_text(f'[kms]\nuser_pin_file = "{pin_file}"\nic_block_size = 9\n')
    env = {**bare_env, "KMS_CONFIG": str(config_file), "KMS_TOKEN_LABEL": "station-7"}

    shown = stdout_json(run(["config", "show", "--json"], env, _work(tmp_path)))
    assert shown["config_file"] == {
        "value": str(config_file),
        "source": "environment",
        "origin": "KMS_CONFIG",
        "detail": None,
    }
    assert shown["token_label"]["value"] == "station-7"
    assert (shown["token_label"]["source"], shown["token_label"]["origin"]) == (
        "environment",
        "KMS_TOKEN_LABEL",
    )
    assert (shown["ic_block_size"]["value"], shown["ic_block_size"]["source"]) == (9, "file")
    assert shown["ic_block_size"]["origin"] == str(config_file)
    assert shown["user_pin"]["value"] == "set"
    assert shown["user_pin"]["detail"] == f"read from {pin_file}"
    data_dir = tmp_path / "home" / ".local" / "share" / "dlms-kms"
    assert shown["data_dir"]["value"] == str(data_dir)
    assert shown["database_url"]["value"] == f"sqlite:///{data_dir}/kms.db"
    assert shown["key_cache_size"] == {
        "value": 256,
        "source": "default",
        "origin": None,
        "detail": None,
    }

    table = run(["config", "show"], {**env, "KMS_USER_PIN": SECRET_PIN}, _work(tmp_path))
    assert table.returncode == 0, describe(table)
    text = one_line(table.stdout)
    assert "KMS_USER_PIN" in text and "station-7" in text
    assert SECRET_PIN.encode() not in raw_output(table)
    # Nothing was made: not in the working directory, not in the data directory.
    assert list(_work(tmp_path).iterdir()) == []
    assert not data_dir.exists()


def test_a_pin_file_others_may_read_is_refused_with_the_fix(
    bare_env: dict[str, str], tmp_path: Path
) -> None:
    pin_file = tmp_path / "user.pin"
    pin_file.write_text(SECRET_PIN + "\n", encoding="utf-8")
    pin_file.chmod(0o644)
    env = {**bare_env, "KMS_USER_PIN_FILE": str(pin_file)}
    proc = run(["config", "show", "--json"], env, _work(tmp_path))
    assert proc.returncode == 2, describe(proc)
    error = stderr_json(proc)
    assert error["error"] == "usage.config"
    assert str(pin_file) in error["message"] and "mode 0644" in error["message"]
    assert f"chmod 600 {pin_file}" in error["message"]
    assert SECRET_PIN.encode() not in raw_output(proc)


def test_a_failed_init_leaves_no_database_anywhere(
    bare_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**bare_env, "KMS_HSM_PROFILE": "no-such-profile", "KMS_USER_PIN": SECRET_PIN}
    proc = run(["init", "--json"], env, _work(tmp_path))
    assert proc.returncode == 2, describe(proc)
    assert "no-such-profile" in stderr_json(proc)["message"]
    assert list(_work(tmp_path).iterdir()) == [], "init left something in the working directory"
    assert not (tmp_path / "home").exists(), "init made the data directory before failing"


def test_the_default_database_goes_to_the_data_directory_made_private(
    bare_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**bare_env, "XDG_DATA_HOME": str(tmp_path / "data")}
    proc = run(["db", "upgrade", "--json"], env, _work(tmp_path))
    assert stdout_json(proc)["after"]
    data_dir = tmp_path / "data" / "dlms-kms"
    assert (data_dir / "kms.db").is_file()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert list(_work(tmp_path).iterdir()) == []
    status = stdout_json(run(["db", "status", "--json"], env, _work(tmp_path)))
    assert status["up_to_date"] is True
