"""The CA key backup ceremonies from the command line, black box: the scripts under scripts/
(create_backup_key.py, backup_ca_key.py, restore_ca_key.py) run as subprocesses with the SO PIN
in the environment. A suite 1 issuing CA is backed up, restored into a second token, and that
token then signs the CA's CRL, which openssl verifies against the CA's certificate; refusals get
their exit status and write nothing."""

from __future__ import annotations

import json
import secrets
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kms.config import Config
from kms.hsm import Hsm, TokenKey
from kms.keystore.hierarchy import BINDING_LABEL
from tests.cli.helpers import Cli, describe, stderr_json
from tests.cli.test_pki import approved, pki_ready
from tests.conftest import TestToken

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
CA = "suite1-v1"


def script(
    cli: Cli, name: str, *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), *(str(a) for a in args)],
        env={**cli.env, **(env or {})},
        cwd=cli.cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    cli.runs.append(proc)
    return proc


@pytest.fixture
def spare_env(cli: Cli) -> Iterator[dict[str, str]]:
    """The environment of the same KMS on a second, empty token (the replacement token)."""
    label = f"kms-spare-{uuid.uuid4().hex[:8]}"
    user_pin = secrets.token_hex(8)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label,
         "--pin", user_pin, "--so-pin", secrets.token_hex(8)],
        check=True, capture_output=True, env=cli.env, stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    try:
        yield {"KMS_TOKEN_LABEL": label, "KMS_USER_PIN": user_pin}
    finally:
        subprocess.run(
            ["softhsm2-util", "--delete-token", "--token", label],
            capture_output=True, env=cli.env, check=False, timeout=60,
        )  # fmt: skip


@pytest.mark.slow
def test_a_ca_key_is_backed_up_and_restored_into_another_token_that_signs_its_crl(
    cli: Cli, token: TestToken, spare_env: dict[str, str]
) -> None:
    pki_ready(cli)
    so = {"KMS_SO_PIN": token.so_pin}
    components = ["--component", "alice.hex", "--component", "bob.hex"]

    missing = script(cli, "create_backup_key", *components, "--generate", "--json")
    assert missing.returncode == 2 and stderr_json(missing)["error"] == "usage.config"
    assert "KMS_SO_PIN" in missing.stderr and not (cli.cwd / "alice.hex").exists()

    made = script(cli, "create_backup_key", *components, "--generate", "--json", env=so)
    assert made.returncode == 0, describe(made)
    key = json.loads(made.stdout)
    for name, kcv in zip(("alice.hex", "bob.hex"), key["component_kcvs"], strict=True):
        path = cli.cwd / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert f"# kcv: {kcv}" in path.read_text()
    assert token.so_pin not in made.stdout + made.stderr

    one = approved(cli, "backup-ca-key", "--ca", CA, "--wrapping-key-kcv", key["kcv"])[:4]
    refused = script(cli, "backup_ca_key", "--ca", CA, "--out", "refused.json", *one, "--json")
    assert refused.returncode == 2, describe(refused)
    assert stderr_json(refused)["error"] == "usage.approval"
    assert not (cli.cwd / "refused.json").exists()

    args = approved(cli, "backup-ca-key", "--ca", CA, "--wrapping-key-kcv", key["kcv"])
    backed = script(cli, "backup_ca_key", "--ca", CA, "--out", "backup.json", *args, "--json")
    assert backed.returncode == 0, describe(backed)
    document = json.loads((cli.cwd / "backup.json").read_text())
    assert (
        document["wrapping_key_kcv"] == key["kcv"] == json.loads(backed.stdout)["wrapping_key_kcv"]
    )
    components_hex = [
        (cli.cwd / n).read_text().split()[-1].lower() for n in ("alice.hex", "bob.hex")
    ]
    assert not any(c in (cli.cwd / "backup.json").read_text().lower() for c in components_hex)

    restore_args = approved(cli, "restore-ca-key", "--ca", CA)
    (cli.cwd / "mallory.hex").write_text(secrets.token_hex(32) + "\n")
    wrong = script(cli, "restore_ca_key", "--backup", "backup.json",
                   "--component", "alice.hex", "--component", "mallory.hex",
                   *restore_args, "--json", env=spare_env)  # fmt: skip
    assert wrong.returncode == 3, describe(wrong)
    assert stderr_json(wrong)["error"] == "crypto.invalid_unwrap"

    restored = script(cli, "restore_ca_key", "--backup", "backup.json", *components,
                      *restore_args, "--json", env=spare_env)  # fmt: skip
    assert restored.returncode == 0, describe(restored)
    assert json.loads(restored.stdout)["ca"] == CA

    # The replacement token signs the CA's CRL; openssl checks it with the CA's certificate.
    crl = cli("crl", "issue", "--suite", "1", "--out", "crl.pem", "--json", env=spare_env)
    assert crl.returncode == 0, describe(crl)
    chain = cli.ok("cert", "chain", "--suite", "1").stdout
    end = chain.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----\n")
    (cli.cwd / "issuing.pem").write_text(chain[:end])
    done = subprocess.run(
        ["openssl", "crl", "-in", "crl.pem", "-CAfile", "issuing.pem", "-noout"],
        cwd=cli.cwd, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "verify OK" in done.stdout + done.stderr, done.stderr

    again_args = approved(cli, "restore-ca-key", "--ca", CA)
    again = script(cli, "restore_ca_key", "--backup", "backup.json", *components,
                   *again_args, "--json", env=spare_env)  # fmt: skip
    assert again.returncode == 2 and stderr_json(again)["error"] == "usage.conflict"
    everything = "".join(p.stdout + p.stderr for p in cli.runs)
    assert token.so_pin not in everything
    assert not any(c in everything.lower() for c in components_hex)


def test_every_backup_script_explains_itself(cli: Cli) -> None:
    for name, option in (
        ("create_backup_key", "--component"),
        ("backup_ca_key", "--approval"),
        ("restore_ca_key", "--approval"),
    ):
        proc = script(cli, name, "--help")
        assert proc.returncode == 0 and option in proc.stdout, describe(proc)
        usage, summary = proc.stdout.split("\n\n")[:2]
        assert usage.startswith("Usage:") and len(summary.strip()) > 20, describe(proc)
    assert "KMS_SO_PIN" in script(cli, "create_backup_key", "--help").stdout


def test_the_so_ceremony_runs_beside_a_kms_process_logged_in_as_the_user(
    cli: Cli, token: TestToken, kms_config: Config
) -> None:
    """Login is per process: the ceremony's SO login neither waits for nor breaks a running KMS
    (the head-end, say) that holds the user login on the same token."""
    cli.ok("init")
    running = Hsm(kms_config)
    try:
        before = running.mac(TokenKey(BINDING_LABEL), b"data")
        made = script(cli, "create_backup_key", "--component", "a.hex", "--component", "b.hex",
                      "--generate", "--json", env={"KMS_SO_PIN": token.so_pin})  # fmt: skip
        assert made.returncode == 0, describe(made)
        assert running.mac(TokenKey(BINDING_LABEL), b"data") == before
        assert running.has_token_key(TokenKey(json.loads(made.stdout)["label"]))
    finally:
        running.close()
