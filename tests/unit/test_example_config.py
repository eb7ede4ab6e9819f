"""The shipped kms.toml.example loads, so the documentation cannot drift from the loader."""

from __future__ import annotations

from pathlib import Path

from kms.config import load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "kms.toml.example"


def test_the_example_configuration_loads(tmp_path: Path) -> None:
    pin = tmp_path / "user.pin"
    pin.write_text("example-pin\n")
    pin.chmod(0o600)  # as the example says: a wider PIN file is refused
    text = EXAMPLE.read_text().replace("/etc/dlms-kms/user.pin", str(pin))
    config_file = tmp_path / "kms.toml"
    config_file.write_text(text)
    config = load_config({"KMS_CONFIG": str(config_file)})
    assert config.token_label == "kms"
    assert config.require_pin().reveal() == "example-pin"
    assert config.data_dir == Path("/var/lib/dlms-kms")
    assert config.database_url == "sqlite:////var/lib/dlms-kms/kms.db"
