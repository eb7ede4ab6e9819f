"""``kms entity create`` and ``kms key-agreement start|complete|cancel`` as a station drives them
(black box), with pyca as the meter."""

from __future__ import annotations

import pytest
from cryptography import x509

from tests.cli.helpers import Cli, describe, stderr_json
from tests.cli.test_pki import pki_ready, provision
from tests.kms_fixtures import meter_row
from tests.services.provisioning.test_key_agreement import PycaMeter, _kcv


@pytest.mark.slow
def test_key_agreement_from_the_command_line(cli: Cli) -> None:
    pki_ready(cli)
    row = meter_row(1, 1)
    provision(cli, row)
    title = row["system_title"]
    hes = cli.json("entity", "create", "--suite", "1", "--type", "signing")
    assert hes["purpose"] == "hes-client" and hes["type"] == "signing"
    assert [e["serial"] for e in cli.json("entity", "list")] == [hes["serial"]]
    meter = PycaMeter(
        bytes.fromhex(title), 1, x509.load_pem_x509_certificate(hes["certificate"].encode())
    )
    (cli.cwd / "meter.der").write_bytes(meter.csr())
    cli.ok("cert", "issue", "--csr", "meter.der", "--out", "meter.pem")

    started = cli.json("key-agreement", "start", "--system-title", title, "--keys", "GUEK,KEK")
    answer = meter.answer(bytes.fromhex(started["apdu"]))
    done = cli.json(
        "key-agreement", "complete", "--handle", started["handle"], "--response", answer.hex()
    )
    assert {k["role"]: k["kcv"] for k in done["keys"]} == {
        "GUEK": _kcv(meter.agreed[0]),
        "KEK": _kcv(meter.agreed[3]),
    }
    again = cli(
        "key-agreement", "complete", "--handle", started["handle"], "--response", answer.hex(),
        "--json",
    )  # fmt: skip
    assert again.returncode == 2 and stderr_json(again)["error"] == "usage.conflict"

    other = cli.json("key-agreement", "start", "--system-title", title, "--keys", "GAK")
    bad = cli(
        "key-agreement", "complete", "--handle", other["handle"], "--response", "zz", "--json"
    )
    assert bad.returncode == 2 and stderr_json(bad)["field"] == "response", describe(bad)
    forged = bytearray(meter.answer(bytes.fromhex(other["apdu"])))
    forged[-1] ^= 1
    refused = cli(
        "key-agreement", "complete", "--handle", other["handle"], "--response", forged.hex(),
        "--json",
    )  # fmt: skip
    assert (
        refused.returncode == 3 and stderr_json(refused)["error"] == "crypto.authentication_failed"
    )
    cli.ok("key-agreement", "cancel", "--handle", other["handle"])
    unknown = cli("key-agreement", "start", "--system-title", title, "--keys", "XYZ", "--json")
    assert unknown.returncode == 2 and "XYZ" in stderr_json(unknown)["message"]
