"""``kms apdu protect|verify`` end to end (black box): a provisioned, confirmed meter, its keys
learnt by the simulated meter from the key_transfer APDUs (pyca only), and pyca as the oracle of
every ciphered byte the command prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.cli.helpers import Cli, describe, initialised_kms, read_jsonl, stderr_json
from tests.conftest import CLIENT_SYSTEM_TITLE
from tests.interop.meter import SimulatedMeter
from tests.kms_fixtures import TRANSPORT_KEYS, meter_row, write_manifest

GET_REQUEST = "C0010000080000010000FF0200"
GET_RESPONSE = bytes.fromhex("C4010000090C07E60B1D0716222A00FF8880")


def _field_meter(cli: Cli, suite: int) -> tuple[str, dict[str, bytes]]:
    """Provision, write into a simulated meter, confirm: (system title, the meter's keys)."""
    initialised_kms(cli)
    row = meter_row(5, suite)
    manifest = write_manifest(cli.cwd / "meters.csv", [row])
    cli.ok("provision", "--manifest", manifest, "--out", cli.cwd / "result.jsonl")
    (result,) = read_jsonl(cli.cwd / "result.jsonl")
    initial = TRANSPORT_KEYS["vendor-aes256" if suite == 2 else "vendor-aes128"]
    meter = SimulatedMeter(bytes.fromhex(row["system_title"]), suite, initial)
    for apdu in result["setups"][0]["apdus"]:
        meter.apply(bytes.fromhex(apdu))
    cli.ok("provision", "confirm", "--system-title", row["system_title"])
    return row["system_title"], meter.keys()


@pytest.mark.parametrize("suite", [0, 2])
def test_protect_then_verify_the_meters_answer(cli: Cli, suite: int) -> None:
    title, keys = _field_meter(cli, suite)
    sc = 0x30 | suite
    first = cli.json(
        "apdu", "protect", "--system-title", title, "--sc", f"0x{sc:02x}", "--apdu", GET_REQUEST
    )
    second = cli.json(
        "apdu", "protect", "--system-title", title, "--sc", str(sc), "--apdu", GET_REQUEST
    )
    assert first["system_title"] == second["system_title"] == CLIENT_SYSTEM_TITLE
    assert (first["ic"], second["ic"]) == (1, 2)
    request = bytes.fromhex(GET_REQUEST)
    assert bytes.fromhex(first["apdu"]) == _glo(
        keys, sc, bytes.fromhex(CLIENT_SYSTEM_TITLE), 1, request
    )
    assert bytes.fromhex(second["apdu"]) == _glo(
        keys, sc, bytes.fromhex(CLIENT_SYSTEM_TITLE), 2, request
    )
    # Text output: the ciphered APDU alone.
    text = cli.ok(
        "apdu", "protect", "--system-title", title, "--sc", f"{sc:#04x}", "--apdu", GET_REQUEST
    )
    assert bytes.fromhex(text.stdout.strip()) == _glo(
        keys, sc, bytes.fromhex(CLIENT_SYSTEM_TITLE), 3, request
    )

    # The meter answers at its own IC; the KMS verifies, then refuses the replay.
    answer = _glo(keys, sc, bytes.fromhex(title), 42, GET_RESPONSE).hex()
    verified = cli.json("apdu", "verify", "--system-title", title, "--apdu", answer)
    assert verified == {"apdu": GET_RESPONSE.hex().upper(), "system_title": title, "ic": 42}
    replay = cli("apdu", "verify", "--system-title", title, "--apdu", answer, "--json")
    assert replay.returncode == 3, describe(replay)
    error = stderr_json(replay)
    assert error["error"] == "crypto.invocation_counter"
    assert error["exception_response"] == "D80106" + (43).to_bytes(4, "big").hex().upper()


def _glo(keys: dict[str, bytes], sc: int, originator: bytes, ic: int, apdu: bytes) -> bytes:
    """A glo- APDU with SC 0x3s as pyca computes it: tag + 8, len, SC, IC, C, T (12 bytes)."""
    iv = originator + ic.to_bytes(4, "big")
    sealed = AESGCM(keys["GUEK"]).encrypt(iv, apdu, bytes([sc]) + keys["GAK"])
    body = bytes([sc]) + ic.to_bytes(4, "big") + sealed[: len(apdu) + 12]
    return bytes([apdu[0] + 8, len(body)]) + body


@pytest.mark.parametrize(
    ("args", "status", "code", "words"),
    [
        (["--sc", "0x30", "--apdu", "C0ZZ"], 2, "usage.input", "not hexadecimal"),
        (["--sc", "banana", "--apdu", GET_REQUEST], 2, "usage.input", "not a number"),
        (["--sc", "0x31", "--apdu", GET_REQUEST], 2, "usage.input", "uses suite 0"),
        (["--sc", "0x33", "--apdu", GET_REQUEST], 2, "usage.input", "reserved security suite"),
        (["--sc", "0x30", "--apdu", "0F00"], 2, "usage.input", "no glo- ciphered form"),
        (["--sc", "0x30", "--apdu", GET_REQUEST, "--setup", "4"], 2, "usage.not_found", "setup"),
    ],
)
def test_protect_refuses_bad_input_with_the_reason(
    cli: Cli, args: list[str], status: int, code: str, words: str
) -> None:
    title, _ = _field_meter(cli, 0)
    proc = cli("apdu", "protect", "--system-title", title, *args, "--json")
    assert proc.returncode == status, describe(proc)
    error = stderr_json(proc)
    assert error["error"] == code
    assert words in error["message"]


def test_unknown_meter_and_missing_client_system_title(cli: Cli, tmp_path: Path) -> None:
    initialised_kms(cli, [])
    proc = cli(
        "apdu", "protect", "--system-title", "4D4D4D0000000099", "--sc", "0x30",
        "--apdu", GET_REQUEST, "--json",
    )  # fmt: skip
    assert proc.returncode == 2, describe(proc)
    assert stderr_json(proc)["error"] == "usage.not_found"
    proc = cli(
        "apdu", "protect", "--system-title", "4D4D4D0000000099", "--sc", "0x30",
        "--apdu", GET_REQUEST, "--json",
        env={"KMS_CLIENT_SYSTEM_TITLE": "XYZ"},
    )  # fmt: skip
    assert proc.returncode == 2, describe(proc)
    assert "KMS_CLIENT_SYSTEM_TITLE" in stderr_json(proc)["message"]


def test_association_open_ded_protect_and_close(cli: Cli) -> None:
    title, keys = _field_meter(cli, 0)
    opened = cli.json("association", "open", "--system-title", title)
    assert opened["system_title"] == CLIENT_SYSTEM_TITLE
    glo = bytes.fromhex(opened["apdu"])
    assert glo[0] == 0x21
    # The meter's side: decipher the InitiateRequest and take the dedicated key out of it.
    iv = bytes.fromhex(CLIENT_SYSTEM_TITLE) + glo[3:7]
    body = glo[7:-12]
    plain = AESGCM(keys["GUEK"]).encrypt(iv, body, b"")[: len(body)]
    assert plain[:3] == b"\x01\x01\x10"
    dedicated = plain[3:19]
    ded = cli.json(
        "apdu", "protect", "--system-title", title, "--sc", "0x30", "--apdu", GET_REQUEST,
        "--form", "ded", "--association", opened["association"],
    )  # fmt: skip
    ciphered = bytes.fromhex(ded["apdu"])
    assert ciphered[0] == 0xD0
    iv = bytes.fromhex(CLIENT_SYSTEM_TITLE) + ded["ic"].to_bytes(4, "big")
    sealed = AESGCM(dedicated).encrypt(iv, bytes.fromhex(GET_REQUEST), b"\x30" + keys["GAK"])
    assert ciphered[7:] == sealed[:25]
    cli.ok("association", "close", "--association", opened["association"])
    refused = cli(
        "apdu", "protect", "--system-title", title, "--sc", "0x30", "--apdu", GET_REQUEST,
        "--form", "ded", "--association", opened["association"], "--json",
    )  # fmt: skip
    assert refused.returncode == 2, describe(refused)
    assert stderr_json(refused)["error"] == "usage.key_state"


def test_hls_commands(cli: Cli) -> None:
    import hashlib

    title, keys = _field_meter(cli, 0)
    client = bytes.fromhex(CLIENT_SYSTEM_TITLE)
    ctos = bytes.fromhex(cli.json("hls", "challenge", "--length", "16")["challenge"])
    assert len(ctos) == 16
    stoc = bytes.fromhex("503677524A323146")
    answer = cli.json(
        "hls", "answer", "--system-title", title, "--mechanism", "5",
        "--server-challenge", stoc.hex(),
    )  # fmt: skip
    iv = client + answer["ic"].to_bytes(4, "big")
    tag = AESGCM(keys["GUEK"]).encrypt(iv, b"", b"\x10" + keys["GAK"] + stoc)[:12]
    assert answer["response"] == (b"\x10" + answer["ic"].to_bytes(4, "big") + tag).hex().upper()
    iv_m = bytes.fromhex(title) + (3).to_bytes(4, "big")
    f_ctos = b"\x10" + (3).to_bytes(4, "big")
    f_ctos += AESGCM(keys["GUEK"]).encrypt(iv_m, b"", b"\x10" + keys["GAK"] + ctos)[:12]
    checked = cli.json(
        "hls", "check", "--system-title", title, "--mechanism", "5",
        "--client-challenge", ctos.hex(), "--response", f_ctos.hex(),
    )  # fmt: skip
    assert checked == {"verified": True, "ic": 3}
    forged = cli(
        "hls", "check", "--system-title", title, "--mechanism", "5",
        "--client-challenge", ctos.hex(), "--response", f_ctos[:-1].hex() + "00", "--json",
    )  # fmt: skip
    assert forged.returncode == 3, describe(forged)
    assert stderr_json(forged)["error"] == "crypto.authentication_failed"

    secret_file = cli.cwd / "secret.hex"
    secret_file.write_text("4775727578\n")  # "Gurux"
    imported = cli.json(
        "hls", "secret", "import", "--system-title", title, "--secret-file", secret_file
    )
    assert (imported["version"], imported["length"]) == (1, 5)
    assert imported["kcv"] == hashlib.sha1(b"Gurux").hexdigest()[:6].upper()  # noqa: S324
    answer6 = cli.json(
        "hls", "answer", "--system-title", title, "--mechanism", "6",
        "--server-challenge", stoc.hex(), "--client-challenge", ctos.hex(),
    )  # fmt: skip
    expected = hashlib.sha256(b"Gurux" + client + bytes.fromhex(title) + stoc + ctos).digest()
    assert answer6 == {"response": expected.hex().upper(), "ic": None}
    seven = cli(
        "hls", "answer", "--system-title", title, "--mechanism", "7",
        "--server-challenge", (stoc * 4).hex(), "--client-challenge", (ctos * 4).hex(), "--json",
    )  # fmt: skip
    # Mechanism 7 is the PKI's (tests/services/hes/test_hls.py); without keys it is named, not run.
    assert seven.returncode == 2, describe(seven)
    assert stderr_json(seven)["error"] in ("usage.not_found", "usage.input"), describe(seven)


def test_hls_options_for_mechanism_7_and_a_missing_challenge_named(cli: Cli) -> None:
    """The README's mechanism-7 lines work as written: a challenge long enough for HLS-ECDSA,
    and a left-out --server-challenge named rather than reported as a length of 0."""
    assert len(bytes.fromhex(cli.json("hls", "challenge", "--mechanism", "7")["challenge"])) == 32
    assert len(bytes.fromhex(cli.json("hls", "challenge")["challenge"])) == 16
    short = cli("hls", "challenge", "--mechanism", "7", "--length", "16", "--json")
    assert short.returncode == 2 and stderr_json(short)["field"] == "length", describe(short)
    for mechanism in ("6", "7"):
        missing = cli(
            "hls", "check", "--system-title", "4D4D4D0000000001", "--mechanism", mechanism,
            "--client-challenge", "00" * 32, "--response", "00" * 64, "--json",
        )  # fmt: skip
        assert missing.returncode == 2, describe(missing)
        error = stderr_json(missing)
        assert error["field"] == "server_challenge" and "--server-challenge" in error["message"]
