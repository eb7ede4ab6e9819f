"""Fixtures for tests that drive the KMS in process: an open token, a migrated database, root
keys, and transport keys of *known* value (so the simulated meter can start from them and the
invariant tests can search for their bytes).

Import with ``from tests.kms_fixtures import *`` in a folder's ``conftest.py``.
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from kms.config import Config
from kms.db import Database
from kms.db.migrate import upgrade
from kms.dlms.suites import SecuritySuite
from kms.hsm import Hsm, open_hsm
from kms.keystore import hierarchy
from kms.keystore.hierarchy import RootKeys
from kms.services.common import approvals
from kms.services.common.approvals import ApprovalFile, CeremonyRequest
from kms.services.common.resources import Resources
from kms.services.root import Services
from tests.interop.meter import MANAGEMENT_SETUP, SimulatedMeter

#: Transport keys imported through the ceremony in tests: label -> value. Distinctive bytes, so
#: a search for them in the database, logs and files cannot hit by chance.
TRANSPORT_KEYS = {
    "vendor-aes128": bytes.fromhex("5A17C0DE5A17C0DE5A17C0DE5A17C0DE"),
    "vendor-aes256": bytes.fromhex("C0FFEE00" * 8),
}

#: Who acts in tests that call the head-end services (``actor=`` of each call that audits).
ACTOR = "pytest"


@dataclass
class Kms:
    """An initialised KMS: token session, migrated database, root keys and config."""

    hsm: Hsm
    db: Database
    config: Config
    root: RootKeys

    @functools.cached_property
    def services(self) -> Services:
        """The composition root over this token and database (which stay the fixture's)."""
        return self.services_with(self.config)

    def services_with(self, config: Config) -> Services:
        """A composition root over this token and database with another configuration."""
        return Services(resources=Resources(config, hsm=self.hsm, database=self.db))


@pytest.fixture
def hsm(kms_config: Config) -> Iterator[Hsm]:
    """The KMS's adapter, logged in to the test token."""
    adapter = open_hsm(kms_config)
    try:
        yield adapter
    finally:
        adapter.close()


@pytest.fixture
def migrated_db(kms_config: Config) -> Iterator[Database]:
    """The test database, brought to head by the real migrations."""
    db = Database(kms_config.database_url)
    upgrade(db.engine)
    try:
        yield db
    finally:
        db.dispose()


@pytest.fixture
def kms(hsm: Hsm, migrated_db: Database, kms_config: Config) -> Kms:
    """Root keys created and both transport keys imported through the ceremony."""
    with migrated_db.begin() as session:
        hierarchy.initialise(hsm, session)
        for label, value in TRANSPORT_KEYS.items():
            hierarchy.create_transport_key(hsm, session, label, value, len(value))
    with migrated_db.begin() as session:
        root = hierarchy.load_root_keys(hsm, session)
    return Kms(hsm, migrated_db, kms_config, root)


def services_for(kms: Kms, config: Config | None = None, *, hsm: Hsm | None = None) -> Services:
    """The services over the fixture's database with another configuration (a policy a test
    changes) or another token (a replacement token); neither is closed by them."""
    resources = Resources(config or kms.config, hsm=hsm or kms.hsm, database=kms.db)
    return Services(resources=resources)


def write_manifest(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    """Write a provisioning manifest CSV."""
    columns = header or ["system_title", "suite", "initial_kek", "serial", "setups"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def meter_row(index: int, suite: int, setups: str = "") -> dict[str, str]:
    """A manifest row for a meter of ``suite`` with a system title derived from ``index``."""
    label = "vendor-aes256" if suite == 2 else "vendor-aes128"
    return {
        "system_title": f"4D4D4D{index:010X}",
        "suite": str(suite),
        "initial_kek": label,
        "serial": f"SN{index:08d}",
        "setups": setups,
    }


@dataclass
class FieldMeter:
    """A provisioned, confirmed meter and the keys its simulated twin ended up with."""

    system_title: bytes
    suite: int
    meter: SimulatedMeter

    def keys(self, logical_name: bytes = MANAGEMENT_SETUP) -> dict[str, bytes]:
        """GUEK, GBEK, GAK and KEK as the simulated meter holds them (pyca unwrapped them)."""
        return self.meter.keys(logical_name)


def field_meter(kms: Kms, tmp_path: Path, index: int, suite: int, setups: str = "") -> FieldMeter:
    """Provision meter ``index`` through the service, write its APDUs into a simulated meter,
    confirm it: the state a head-end finds a meter in (seed steps 1 and 2 done)."""
    row = meter_row(index, suite, setups)
    manifest = write_manifest(tmp_path / f"meter-{index}.csv", [row])
    out = tmp_path / f"meter-{index}.jsonl"
    kms.services.provisioning.provision(manifest, out, actor="pytest")
    (result,) = [json.loads(line) for line in out.read_text().splitlines()]
    lns = [bytes(int(p) for p in s["logical_name"].split(".")) for s in result["setups"]]
    initial = TRANSPORT_KEYS["vendor-aes256" if suite == 2 else "vendor-aes128"]
    title = bytes.fromhex(row["system_title"])
    meter = SimulatedMeter(title, suite, initial, lns)
    for setup in result["setups"]:
        for apdu in setup["apdus"]:
            assert meter.apply(bytes.fromhex(apdu))[-2:] == b"\x00\x00"
    kms.services.provisioning.confirm([title], actor="pytest")
    return FieldMeter(title, suite, meter)


# --- PKI: officers, approvals and CAs -----------------------------------------------------------


@dataclass
class Officers:
    """Officers registered with the KMS, with their private keys (PEM) for signing approvals."""

    keys: dict[str, bytes]

    def approve(
        self, kms: Kms, ceremony: str, parameters: dict[str, object], names: list[str] | None = None
    ) -> tuple[CeremonyRequest, list[ApprovalFile]]:
        """A fresh request for ``ceremony`` and approvals from ``names`` (default: the first M)."""
        request = kms.services.approvals.new_request(ceremony, parameters)
        chosen = names if names is not None else list(self.keys)[: kms.config.ceremony_approvals]
        files = [
            approvals.load_approval(
                approvals.sign_request(request, name, self.keys[name], None), f"{name}.json"
            )
            for name in chosen
        ]
        return request, files


def officer_key_pem(curve: ec.EllipticCurve | None = None) -> bytes:
    key = ec.generate_private_key(curve or ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(private_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(private_pem, None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture
def officers(kms: Kms) -> Officers:
    """N = 3 officers (one with a P-384 key), registered while the registry bootstraps."""
    keys = {
        "alice": officer_key_pem(),
        "bob": officer_key_pem(ec.SECP384R1()),
        "carol": officer_key_pem(),
    }
    found = Officers(keys)
    for name, pem in keys.items():
        request: CeremonyRequest | None = None
        files: list[ApprovalFile] = []
        if name == "carol":  # M = 2 are registered: the third is an approved ceremony
            fingerprint = approvals.officer_key_fingerprint(public_pem(pem))
            request, files = found.approve(
                kms, "add-officer", {"name": name, "public_key_sha256": fingerprint}
            )
        kms.services.approvals.add_officer(
            actor="pytest", name=name, public_key=public_pem(pem), request=request, approvals=files
        )
    return found


@dataclass
class Pki:
    kms: Kms
    officers: Officers


@pytest.fixture
def pki(kms: Kms, officers: Officers) -> Pki:
    """A root CA and the issuing CAs of suites 1 and 2, made through the ceremonies."""
    request, files = officers.approve(kms, "create-root-ca", {})
    kms.services.authorities.create_root(actor="pytest", request=request, approvals=files)
    for suite in (1, 2):
        request, files = officers.approve(kms, "create-issuing-ca", {"suite": suite})
        kms.services.authorities.create_issuing(
            actor="pytest", request=request, approvals=files, suite=SecuritySuite(suite)
        )
    return Pki(kms, officers)


def revoke_ca(pki: Pki, serial: str, reason: str = "ca_compromise") -> dict[str, object]:
    """Revoke a CA certificate through its approved revoke-ca-certificate ceremony."""
    request, files = pki.officers.approve(
        pki.kms, "revoke-ca-certificate", {"serial": serial, "reason": reason}
    )
    return pki.kms.services.certificates.revoke(
        actor="pytest", serial=serial, reason=reason, request=request, approvals=files
    )


def provision_meter(kms: Kms, tmp_path: Path, index: int, suite: int) -> bytes:
    """A meter of ``suite`` recorded by the provisioning service (PENDING, not confirmed)."""
    row = meter_row(index, suite)
    manifest = write_manifest(tmp_path / f"m{index}.csv", [row])
    out = tmp_path / f"m{index}.jsonl"
    kms.services.provisioning.provision(manifest, out, actor="pytest")
    return bytes.fromhex(row["system_title"])


def meter_csr(
    system_title: bytes, curve: ec.EllipticCurve, *, cn: str | None = None, der: bool = True
) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """A meter's PKCS#10 CSR (CN = its system title, or ``cn``) made by pyca, and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(curve)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn or system_title.hex().upper())])
    hash_ = hashes.SHA384() if isinstance(curve, ec.SECP384R1) else hashes.SHA256()
    request = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hash_)
    encoding = serialization.Encoding.DER if der else serialization.Encoding.PEM
    return request.public_bytes(encoding), key


# --- a database step that fails for real, and what the token holds then ---------------------------


@contextmanager
def refusing_inserts(database_url: str, table: str) -> Iterator[None]:
    """The database refuses every INSERT into ``table`` until the block ends (a trigger raises),
    on SQLite and PostgreSQL alike: a write that fails in the database itself, after whatever the
    code under test did before it, as a full disk or a lost constraint race would."""
    engine = create_engine(database_url, poolclass=NullPool)
    trigger = f"kms_test_refuse_{table}"
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.begin() as conn:
            if sqlite:
                conn.exec_driver_sql(
                    f"CREATE TRIGGER {trigger} BEFORE INSERT ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )
            else:
                conn.exec_driver_sql(
                    "CREATE OR REPLACE FUNCTION kms_test_refuse() RETURNS trigger "
                    "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
                )
                conn.exec_driver_sql(
                    f"CREATE TRIGGER {trigger} BEFORE INSERT ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION kms_test_refuse()"
                )
        yield
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f"DROP TRIGGER IF EXISTS {trigger}" + ("" if sqlite else f" ON {table}")
            )
        engine.dispose()


def token_objects(hsm: Hsm) -> set[tuple[str, str]]:
    """(label, class) of every object the token holds: what an orphan check compares."""
    return {
        (str(obj[Attribute.LABEL]), str(obj[Attribute.CLASS]))
        for obj in hsm._session.get_objects({Attribute.TOKEN: True})
    }
