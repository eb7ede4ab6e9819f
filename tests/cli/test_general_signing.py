"""General-signing (0xDF) from the command line, black box: `kms apdu sign` with the head-end's
signing key (`kms entity create`), checked by pyca with the certificate the KMS printed; `kms apdu
verify-signature` of a DF a meter signed (pyca, the meter's key certified by `kms cert issue`);
tampered, malformed and misaddressed input refused with its exit status and error code."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import NameOID

from kms.dlms.general_signing import GeneralSigningApdu, parse_general_signing_apdu, signed_data
from tests.cli.helpers import Cli, describe, stderr_json
from tests.cli.test_pki import pki_ready, provision
from tests.conftest import CLIENT_SYSTEM_TITLE
from tests.kms_fixtures import meter_row

CONTENT = "C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B"
CLIENT = bytes.fromhex(CLIENT_SYSTEM_TITLE)


def meter_df(key: ec.EllipticCurvePrivateKey, originator: bytes, recipient: bytes) -> bytes:
    template = GeneralSigningApdu(
        bytes.fromhex("0A0B0C0D0E0F1011"), originator, recipient, b"", b"",
        bytes.fromhex(CONTENT), b"",
    )  # fmt: skip
    r, s = decode_dss_signature(key.sign(signed_data(template), ec.ECDSA(hashes.SHA256())))
    return template.with_signature(r.to_bytes(32, "big") + s.to_bytes(32, "big")).to_bytes()


@pytest.mark.slow
def test_sign_and_verify_signature(cli: Cli) -> None:
    pki_ready(cli)
    row = meter_row(1, 1)
    provision(cli, row)
    title = row["system_title"]
    hes = cli.json("entity", "create", "--suite", "1")
    hes_key = x509.load_pem_x509_certificate(hes["certificate"].encode()).public_key()
    assert isinstance(hes_key, ec.EllipticCurvePublicKey)
    meter_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, title)])
    csr = (
        x509.CertificateSigningRequestBuilder().subject_name(name).sign(meter_key, hashes.SHA256())
    )
    (cli.cwd / "meter.der").write_bytes(csr.public_bytes(serialization.Encoding.DER))
    cli.ok("cert", "issue", "--csr", "meter.der", "--out", "meter.pem")

    # The head-end signs; pyca checks with the head-end's certificate.
    txid = "00000000DEADBEEF"
    sign = ("apdu", "sign", "--system-title", title, "--content", CONTENT, "--transaction-id", txid)
    apdu = bytes.fromhex(cli.json(*sign)["apdu"])
    parsed = parse_general_signing_apdu(apdu)
    assert (parsed.transaction_id, parsed.originator_system_title) == (bytes.fromhex(txid), CLIENT)
    assert (parsed.recipient_system_title, parsed.content) == (
        bytes.fromhex(title),
        bytes.fromhex(CONTENT),
    )
    der = encode_dss_signature(
        int.from_bytes(parsed.signature[:32], "big"), int.from_bytes(parsed.signature[32:], "big")
    )
    hes_key.verify(der, signed_data(parsed), ec.ECDSA(hashes.SHA256()))
    plain = cli.ok("apdu", "sign", "--system-title", title, "--content", CONTENT).stdout.strip()
    assert parse_general_signing_apdu(bytes.fromhex(plain)).content == bytes.fromhex(CONTENT)

    # The meter signs; the KMS verifies with the meter's certificate.
    df = meter_df(meter_key, bytes.fromhex(title), CLIENT)
    verified = cli.json("apdu", "verify-signature", "--apdu", df.hex())
    assert verified == {
        "content": CONTENT,
        "originator": title,
        "transaction_id": "0A0B0C0D0E0F1011",
    }
    plain = cli.ok("apdu", "verify-signature", "--apdu", df.hex()).stdout.strip()
    assert plain == CONTENT

    # Refused, each with its exit status and error code.
    tampered = df[:-1] + bytes([df[-1] ^ 1])
    elsewhere = meter_df(meter_key, bytes.fromhex(title), bytes.fromhex("4B4D5300000000A2"))
    stranger = meter_df(meter_key, bytes.fromhex("4D4D4D00000000FF"), CLIENT)
    verify = ("apdu", "verify-signature", "--apdu")
    sign_to = ("apdu", "sign", "--content", CONTENT, "--system-title")
    cases = {
        "tampered": ((*verify, tampered.hex()), 3, "crypto.invalid_signature"),
        "not hex": ((*verify, "DF0Z"), 2, "usage.input"),
        "truncated": ((*verify, df[:-1].hex()), 2, "usage.input"),
        "for another head-end": ((*verify, elsewhere.hex()), 2, "usage.input"),
        "unknown originator": ((*verify, stranger.hex()), 2, "usage.not_found"),
        "empty content": (
            ("apdu", "sign", "--system-title", title, "--content", ""),
            2,
            "usage.input",
        ),
        "bad transaction id": ((*sign[:-1], "XY"), 2, "usage.input"),
        "bad system title": ((*sign_to, "4D4D"), 2, "usage.input"),
        "unknown meter": ((*sign_to, "4D4D4D00000000FF"), 2, "usage.not_found"),
    }
    for case, (args, status, code) in cases.items():
        proc = cli(*args, "--json")
        assert proc.returncode == status, f"{case}: {describe(proc)}"
        assert stderr_json(proc)["error"] == code, f"{case}: {describe(proc)}"
    proc = cli("apdu", "verify-signature", "--apdu", tampered.hex())
    assert proc.returncode == 3 and proc.stdout == "", describe(proc)
    assert "signature did not verify" in proc.stderr, describe(proc)


def test_the_signing_commands_explain_themselves(cli: Cli) -> None:
    for command in ("sign", "verify-signature"):
        proc = cli.ok("apdu", command, "--help")
        assert "general-signing" in proc.stdout, describe(proc)
