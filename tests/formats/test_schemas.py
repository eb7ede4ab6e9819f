"""Every JSON format of kms.formats has a published schema (schema/formats/), each schema is a
valid JSON Schema, and what each writer makes validates against it -- and a schema refuses what
the KMS never writes, so a test here can fail.

The services' own files are checked where they are made (tests/services/provisioning/
test_result_schema.py runs a real provisioning; tests/cli/test_pki.py a real issuance); here
each writer is driven directly with realistic values."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from kms.errors import InputError
from kms.formats import backup, ceremony, components, result
from kms.formats.files import write_new

FORMATS = Path(__file__).resolve().parents[2] / "schema" / "formats"
NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
PARAMETERS: dict[str, dict[str, Any]] = {
    "create-root-ca": {},
    "create-issuing-ca": {"suite": 1},
    "rotate-issuing-ca": {"suite": 2},
    "backup-ca-key": {"ca": "suite1-v1", "wrapping_key_kcv": "A1B2C3"},
    "restore-ca-key": {"ca": "suite1-v1"},
    "revoke-ca-certificate": {"serial": "01AB", "reason": "ca_compromise"},
    "add-officer": {"name": "carol", "public_key_sha256": "00" * 32},
    "remove-officer": {"name": "carol"},
}


def _schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FORMATS / name).read_text())
    return loaded


SCHEMAS = sorted(p.name for p in FORMATS.glob("*.schema.json"))


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_schema_is_a_valid_json_schema(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(_schema(name))


def test_every_ceremony_has_its_parameters_in_the_schema() -> None:
    assert set(PARAMETERS) == set(ceremony.CEREMONIES)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_a_request_validates_and_reads_back(name: str) -> None:
    data = ceremony.request_document(
        name, PARAMETERS[name], "ab" * 16, NOW, NOW + datetime.timedelta(hours=24)
    )
    jsonschema.validate(json.loads(data), _schema("ceremony-request.schema.json"))
    assert ceremony.load_request(data, "r.json").ceremony == name


def test_the_request_schema_refuses_a_parameter_the_ceremony_does_not_take() -> None:
    body = json.loads(ceremony.request_document("create-root-ca", {}, "ab" * 16, NOW, NOW))
    body["parameters"] = {"suite": 1}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, _schema("ceremony-request.schema.json"))


def test_an_approval_validates() -> None:
    request = ceremony.load_request(
        ceremony.request_document("create-root-ca", {}, "cd" * 16, NOW, NOW), "r.json"
    )
    signature = ec.generate_private_key(ec.SECP256R1()).sign(
        request.text, ec.ECDSA(hashes.SHA256())
    )
    data = ceremony.approval_file("alice", request, signature)
    jsonschema.validate(json.loads(data), _schema("ceremony-approval.schema.json"))
    assert ceremony.load_approval(data, "a.json").signature == signature


def _certificate_pem() -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .sign(key, hashes.SHA384())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_a_backup_validates_and_reads_back() -> None:
    data = backup.backup_document(
        ca="root-v1",
        role="ROOT",
        suite=None,
        curve="P-384",
        key_label="kms-ca-root-v1-0011",
        certificate_pem=_certificate_pem(),
        wrapping_key_label="kms-ca-backup-v1",
        wrapping_key_kcv="A1B2C3",
        mechanism="AES_KEY_WRAP_PAD",
        wrapped_key=bytes(range(48)),
        created_at=NOW.isoformat(),
        request_id="ef" * 16,
        approved_by=["alice", "bob"],
    )
    jsonschema.validate(json.loads(data), _schema("ca-key-backup.schema.json"))
    read = backup.load_backup(data, "b.json")
    assert (read.ca, read.curve, read.wrapped_key) == ("root-v1", "P-384", bytes(range(48)))


def test_a_result_line_validates_and_reads_back(tmp_path: Path) -> None:
    setup = result.ResultSetup(
        logical_name=bytes([0, 0, 43, 0, 0, 255]),
        kcv={"KEK": b"\x01\x02\x03", "GUEK": b"\x04\x05\x06", "GBEK": b"\x07\x08\x09",
             "GAK": b"\x0a\x0b\x0c"},
        apdus=[bytes.fromhex("C301C1004000002B0000FF020101"),
               bytes.fromhex("C301C2004000002B0000FF020102")],
    )  # fmt: skip
    line = result.result_line(bytes.fromhex("4D4D4D0000BC614E"), 0, [setup])
    jsonschema.validate(json.loads(line), _schema("provision-result.schema.json"))
    (tmp_path / "r.jsonl").write_text(line)
    assert result.read_result_titles(tmp_path / "r.jsonl") == [bytes.fromhex("4D4D4D0000BC614E")]


def test_a_key_component_reads_back_and_is_written_private(tmp_path: Path) -> None:
    value = bytes(range(1, 33))
    path = tmp_path / "c1.hex"
    write_new(path, components.component_file(value), mode=0o600, what="key component")
    assert path.stat().st_mode & 0o077 == 0
    assert components.load_component(path.read_bytes(), str(path)) == bytearray(value)
    with pytest.raises(InputError, match="already exists"):
        write_new(path, b"other", mode=0o600)
    assert components.load_component(path.read_bytes(), str(path)) == bytearray(value)
