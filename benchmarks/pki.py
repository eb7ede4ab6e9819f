"""PKI throughput: certificate issuance against bare token ECDSA signing, and ECDH + KDF; pyca
baselines.

For each curve (P-256 / suite 1 with a batch of ``--p256`` CSRs, default 10,000; P-384 / suite 2
with ``--p384``, default 1,000) the benchmark measures, in one process on one token login, in
this order:

1. **pyca ECDSA sign** -- ``EllipticCurvePrivateKey.sign`` over a precomputed digest
   (``Prehashed``), in process: what this host can do without a token;
2. **token ECDSA sign** -- a bare ``hsm.sign_digest`` loop on the issuing CA's private key in the
   token (``CKM_ECDSA``, raw r||s over a host digest): the baseline issuance is measured against.
   Measured for ``--seconds`` right before the issuance and again right after, and pooled;
3. **KMS issuance** -- one ``kms.services.certificates.issue(actor=..., items=...)``
   call for the whole batch (one ``CsrItem`` per meter, DIGITAL_SIGNATURE), timed around the call:
   CSR parsing and verification, the meter and CA lookups, the issuer's path to the root, serials
   from the token's RNG, the TBSCertificates, the signatures in the token, the profile check and
   signature checks, the rows, the audit records and the one commit (the signature checks run on the
   call's own worker threads);
4. **pyca issuance** -- ``load_der_x509_csr``, ``is_signature_valid``, a ``CertificateBuilder``
   with the same subject, issuer, validity and extensions (SKI, AKI, critical keyUsage), signed by
   a pyca key on the issuing CA's curve and DER-encoded, in process;
5. **token ECDH + KDF** -- ``hsm.agree_key`` (``CKM_ECDH1_DERIVE`` with an ephemeral token key
   against a pyca-made peer point, then the SP 800-56A concatenation KDF into a sensitive AES
   session key, destroyed after) with the profile's KDF in the token (``kdf = "digest_key"``:
   C_DigestKey over Z) and on the host (``kdf = "host"``: Z read out and hashed with hashlib);
6. **pyca ECDH + ConcatKDFHash** -- the same agreement and KDF in process;
7. **token / pyca EC key pair** -- ``hsm.generate_ephemeral_key_pair`` (+ destroy) and
   ``ec.generate_private_key``, what an ephemeral agreement (security setup method 3) adds.

Setup, before any clock starts: a throwaway SoftHSM2 token (``SOFTHSM2_CONF`` set before the
module loads; provision.py's helpers) and a fresh SQLite file or PostgreSQL database migrated to
head; root keys; two officers registered (the bootstrap M = 2); the root CA and the issuing CAs
of suites 1 and 2 through their M-of-N ceremonies (kms.services.pki.authorities); the
meters through ``ProvisioningService.provision`` with a manifest (one setup each, as in
production; ``--meters insert``: bare PENDING rows through ``kms.db.repository.insert_meters``,
faster, but issuance's meter lookups then have no setups or keys to load); one pyca key pair and
DER CSR per meter (``CN=<system title>``, SHA-256 / SHA-384).

Off the clock afterwards: the batch returned N certificates with N distinct serials, the database
holds N certificates issued by the suite's CA, every certificate verifies with pyca under the
issuing CA and names its meter and serial, a token signature verifies with pyca under the CA's
public key, and each KDF path's agreed key encrypts as pyca's derived key does. Anything else is
printed and makes the exit status 1. Targets (issue 5 section 6; reported, never asserted):
issuance at >= 70% of the bare token ECDSA sign rate on the same curve.

``--breakdown`` hands the issuance a phase timer (``issue(..., phases=...)``, kms.phases) and
times the SQLAlchemy sessions' flushes and commits through session events: exclusive time per
phase (CSR decode and signature, lookups, the issuer's path, token random, TBS build or template
fill, signing, certificate DER, signature and profile checks, rows, audit, commit; phases on
worker threads are marked and counted apart, since they overlap the main thread);
``--profile DIR`` runs the issuance under cProfile. Run ``.venv/bin/python -m benchmarks.pki
--help``; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness.database import DATABASES, postgres_database, require_postgres
from benchmarks.harness.report import (
    add_report_options,
    document_header,
    emit_report,
    fmt,
    log,
    report_console,
)
from benchmarks.harness.timing import (
    WORKER,
    Clock,
    PhaseTimer,
    dump_profile,
    profiler_for,
    timed_run,
)
from benchmarks.harness.token import softhsm_module, softhsm_token

DEFAULT_P256 = 10_000
DEFAULT_P384 = 1_000
DEFAULT_SECONDS = 2.0
TARGET_ISSUE_RATIO = 0.70
#: Operations between two looks at the clock in a timed loop.
BATCH = 8
ACTOR = "benchmark"
#: The head-end's system title (FLAG id "KMS"), the client side of the agreement's OtherInfo.
CLIENT_SYSTEM_TITLE = bytes.fromhex("4B4D5300000000B1")
#: Transport keys recorded for the meters' rows (issuance never reads them).
TRANSPORT = {1: ("bench-transport-128", 16), 2: ("bench-transport-256", 32)}


@dataclasses.dataclass(frozen=True)
class CurveCase:
    suite: int
    curve: str
    hash_name: str
    key_length: int

    @property
    def pyca_curve(self) -> Any:
        from cryptography.hazmat.primitives.asymmetric import ec

        return ec.SECP256R1() if self.curve == "P-256" else ec.SECP384R1()

    @property
    def pyca_hash(self) -> Any:
        from cryptography.hazmat.primitives import hashes

        return hashes.SHA256() if self.hash_name == "sha256" else hashes.SHA384()


CASES = {
    "P-256": CurveCase(1, "P-256", "sha256", 16),
    "P-384": CurveCase(2, "P-384", "sha384", 32),
}

#: Rows of the table, in the order they run for one curve.
LABELS = {
    "pyca-sign": "pyca ECDSA sign (host)",
    "token-sign": "token ECDSA sign (baseline)",
    "issue": "KMS issuance",
    "pyca-issue": "pyca issuance (host)",
    "token-ecdh-digest_key": "token ECDH + KDF in token",
    "token-ecdh-host": "token ECDH + KDF on host",
    "pyca-ecdh": "pyca ECDH + ConcatKDFHash",
    "token-keygen": "token EC key pair",
    "pyca-keygen": "pyca EC key pair",
}
#: The pyca row each token or KMS row is compared with.
HOST_OF = {
    "token-sign": "pyca-sign",
    "issue": "pyca-issue",
    "token-ecdh-digest_key": "pyca-ecdh",
    "token-ecdh-host": "pyca-ecdh",
    "token-keygen": "pyca-keygen",
}


def meter_title(suite: int, index: int) -> bytes:
    """Unique system titles: FLAG id "BEN", 0xC0 + suite, then the meter number."""
    return bytes.fromhex(f"42454E{0xC0 + suite:02X}{index:08X}")


# --- timing ---------------------------------------------------------------------------------------


def timed_loop(step: Callable[[int], None], seconds: float) -> dict[str, Any]:
    """Run ``step(BATCH)`` until ``seconds`` have passed; operations, seconds, CPU, other load."""
    ops = 0
    clock = Clock()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        step(BATCH)
        ops += BATCH
    return {"ops": ops, **clock.stop()}


def pooled(*parts: dict[str, Any]) -> dict[str, Any]:
    """Several measurements of the same thing as one (total operations over total seconds)."""
    out = {
        "ops": sum(p["ops"] for p in parts),
        "seconds": sum(p["seconds"] for p in parts),
        "cpu_seconds": sum(p["cpu_seconds"] for p in parts),
        "parts": [{"ops": p["ops"], "seconds": p["seconds"]} for p in parts],
    }
    others = [p["other_cores"] for p in parts if p.get("other_cores") is not None]
    out["other_cores"] = (
        sum(o * p["seconds"] for o, p in zip(others, parts, strict=False)) / out["seconds"]
        if others
        else None
    )
    return out


# --- setup ----------------------------------------------------------------------------------------


def prepare_kms(hsm: Any, db: Any, config: Any) -> None:
    """Root keys, transport keys, two officers, the root CA and the issuing CAs of suites 1, 2."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from kms.dlms.suites import SecuritySuite
    from kms.keystore import hierarchy
    from kms.services.common import approvals
    from kms.services.root import Resources, Services

    services = Services(resources=Resources(config, hsm=hsm, database=db))

    with db.begin() as session:
        hierarchy.initialise(hsm, session)
        for label, length in TRANSPORT.values():
            hierarchy.create_transport_key(hsm, session, label, os.urandom(length), length)
    officers: dict[str, bytes] = {}
    for name in ("alice", "bob"):  # M = 2 register without a ceremony (bootstrap)
        key = ec.generate_private_key(ec.SECP256R1())
        officers[name] = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        services.approvals.add_officer(actor=ACTOR, name=name, public_key=public)

    def approve(ceremony: str, parameters: dict[str, object]) -> tuple[Any, list[Any]]:
        request = services.approvals.new_request(ceremony, parameters)
        files = [
            approvals.load_approval(
                approvals.sign_request(request, name, pem, None), f"{name}.json"
            )
            for name, pem in officers.items()
        ]
        return request, files

    request, files = approve("create-root-ca", {})
    services.authorities.create_root(actor=ACTOR, request=request, approvals=files)
    for suite in (1, 2):
        request, files = approve("create-issuing-ca", {"suite": suite})
        services.authorities.create_issuing(
            actor=ACTOR, request=request, approvals=files, suite=SecuritySuite(suite)
        )


def register_meters(
    hsm: Any, db: Any, config: Any, case: CurveCase, count: int, how: str, workdir: Path
) -> list[bytes]:
    """``count`` PENDING meters of the case's suite.

    ``provision``: ``ProvisioningService.provision`` with a manifest (one setup each, its keys
    generated and wrapped in the token): the meters issuance looks up are then as in production,
    setups and keys loaded with them. ``insert``: only the meter rows, through the repository
    function the provisioning service inserts them with: much faster, and the lookups are cheaper
    (no setup or key rows to load).
    """
    from kms.db import MeterState
    from kms.db import repository as repo
    from kms.db.base import utcnow
    from kms.services.root import Resources, Services

    titles = [meter_title(case.suite, i) for i in range(count)]
    label = TRANSPORT[case.suite][0]
    if how == "provision":
        manifest = workdir / f"meters-{case.suite}.csv"
        with manifest.open("w", encoding="utf-8") as handle:
            handle.write("system_title,suite,initial_kek,serial,setups\n")
            for i, title in enumerate(titles):
                handle.write(f"{title.hex().upper()},{case.suite},{label},SN{case.suite}{i:08d},\n")
        out = workdir / f"meters-{case.suite}.jsonl"
        services = Services(resources=Resources(config, hsm=hsm, database=db))
        services.provisioning.provision(manifest, out, actor=config.actor)
        out.unlink()
        return titles
    now = utcnow()
    with db.begin() as session:
        for start in range(0, count, 5000):
            repo.insert_meters(
                session,
                [
                    {
                        "system_title": title,
                        "serial": f"SN{case.suite}{i:08d}",
                        "manufacturer": "BEN",
                        "suite": case.suite,
                        "state": MeterState.PENDING,
                        "initial_kek_label": label,
                        "created_at": now,
                    }
                    for i, title in enumerate(titles[start : start + 5000], start)
                ],
            )
    return titles


def make_csrs(case: CurveCase, titles: list[bytes]) -> list[bytes]:
    """One fresh pyca key pair and DER CSR (CN = the system title) per meter."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out = []
    curve, hash_ = case.pyca_curve, case.pyca_hash
    for title in titles:
        key = ec.generate_private_key(curve)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, title.hex().upper())])
        request = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hash_)
        out.append(request.public_bytes(serialization.Encoding.DER))
    return out


def issuing_authority(db: Any, suite: int) -> tuple[str, bytes]:
    """The active issuing CA of ``suite``: its token key label and certificate DER."""
    from kms.db import AuthorityRole
    from kms.db import pki_repository as pki_repo

    with db.begin() as session:
        authority = pki_repo.active_authority(session, AuthorityRole.ISSUING, suite)
        assert authority is not None
        return authority.key_label, authority.certificate.der


# --- measurements ---------------------------------------------------------------------------------


def measure_pyca_sign(case: CurveCase, seconds: float) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    key = ec.generate_private_key(case.pyca_curve)
    algorithm = ec.ECDSA(Prehashed(case.pyca_hash))
    digests = [os.urandom(case.pyca_hash.digest_size) for _ in range(64)]
    sign = key.sign

    def step(n: int) -> None:
        for i in range(n):
            sign(digests[i & 63], algorithm)

    result = timed_loop(step, seconds)
    key.public_key().verify(sign(digests[0], algorithm), digests[0], algorithm)
    return {**result, "checks": "ok"}


def token_sign_loop(hsm: Any, case: CurveCase, key_label: str, seconds: float) -> dict[str, Any]:
    from kms.hsm import TokenKey

    key = TokenKey(key_label, "private")
    digests = [os.urandom(case.pyca_hash.digest_size) for _ in range(64)]
    sign_digest = hsm.sign_digest

    def step(n: int) -> None:
        for i in range(n):
            sign_digest(key, digests[i & 63])

    return timed_loop(step, seconds)


def check_token_sign(hsm: Any, case: CurveCase, key_label: str, ca_der: bytes) -> list[str]:
    """A token signature verifies with pyca under the issuing CA certificate's key."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

    from kms.hsm import TokenKey

    digest = os.urandom(case.pyca_hash.digest_size)
    raw = hsm.sign_digest(TokenKey(key_label, "private"), digest)
    half = len(raw) // 2
    signature = encode_dss_signature(
        int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    )
    public = x509.load_der_x509_certificate(ca_der).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    try:
        public.verify(signature, digest, ec.ECDSA(Prehashed(case.pyca_hash)))
    except InvalidSignature:
        return ["a token signature does not verify under the issuing CA's key"]
    return []


def measure_issue(
    hsm: Any,
    db: Any,
    config: Any,
    case: CurveCase,
    csrs: list[bytes],
    csr_titles: list[bytes],
    key_label: str,
    ca_der: bytes,
    *,
    breakdown: bool,
    profile: str | None,
) -> dict[str, Any]:
    """One timed ``certificates.issue`` of the whole batch, then the checks (every certificate
    verifies under the issuing CA and names its meter)."""
    from cryptography import x509
    from sqlalchemy import func, select

    from kms.db import Certificate, CertificateAuthority
    from kms.formats.csr_batch import CsrItem
    from kms.pki.profiles import CertificateType
    from kms.services.root import Resources, Services

    service = Services(resources=Resources(config, hsm=hsm, database=db)).certificates

    items = [
        CsrItem(der, f"csr-{case.suite}-{i}", CertificateType.DIGITAL_SIGNATURE)
        for i, der in enumerate(csrs)
    ]
    profiler = profiler_for(profile)
    timer = PhaseTimer() if breakdown else None
    with contextlib.ExitStack() as stack:
        if timer is not None:
            stack.enter_context(timer.session_events())
            issued, timing = timed_run(
                db, profiler, lambda: service.issue(actor=ACTOR, items=items, phases=timer)
            )
        else:
            issued, timing = timed_run(
                db, profiler, lambda: service.issue(actor=ACTOR, items=items)
            )
    n = len(csrs)
    problems = []
    if len(issued) != n:
        problems.append(f"{len(issued)} certificates returned, expected {n}")
    if len({c.serial for c in issued}) != len(issued):
        problems.append("serial numbers repeat")
    with db.begin() as session:
        authority = session.scalar(
            select(CertificateAuthority).where(CertificateAuthority.key_label == key_label)
        )
        assert authority is not None
        stored = session.scalar(
            select(func.count())
            .select_from(Certificate)
            .where(Certificate.issuer_id == authority.certificate_id)
        )
    if stored != n:
        problems.append(f"the database holds {stored} certificates of the CA, expected {n}")
    issuer = x509.load_der_x509_certificate(ca_der)
    for index, one in enumerate(issued):  # every one: most come from a template
        cert = x509.load_der_x509_certificate(one.der)
        title = csr_titles[index]
        try:
            cert.verify_directly_issued_by(issuer)
            if cert.subject.rfc4514_string() != f"CN={title.hex().upper()}":
                raise ValueError(f"subject {cert.subject.rfc4514_string()}")
            if cert.serial_number != int(one.serial, 16) or len(one.serial) % 2:
                raise ValueError(f"serial {cert.serial_number:X}, reported {one.serial}")
        except Exception as exc:
            problems.append(f"certificate {one.serial}: {exc!r}")
            break
    result: dict[str, Any] = {"ops": n, **timing, "checks": "; ".join(problems) or "ok"}
    if timer is not None:
        result["breakdown"] = timer.breakdown()
    if profiler is not None:
        assert profile is not None
        dump_profile(profiler, profile, (30, 45))
    return result


def measure_pyca_issue(case: CurveCase, csrs: list[bytes], ca_der: bytes, seconds: float) -> Any:
    """Load and verify a CSR, build the profile's certificate, sign with pyca, DER: in process."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    issuing = x509.load_der_x509_certificate(ca_der)
    issuing_key = issuing.public_key()
    assert isinstance(issuing_key, ec.EllipticCurvePublicKey)
    ca_key = ec.generate_private_key(issuing_key.curve)
    ca_hash = CASES["P-384" if ca_key.curve.name == "secp384r1" else "P-256"].pyca_hash
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    start = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    end = start + datetime.timedelta(days=5475)
    der = serialization.Encoding.DER
    cursor = [0]
    last = [b""]

    def issue_one(data: bytes) -> bytes:
        request = x509.load_der_x509_csr(data)
        if not request.is_signature_valid:
            raise SystemExit("pyca issuance: a CSR does not verify")
        cn = request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        public = request.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        serial = int.from_bytes(b"\x01" + os.urandom(16), "big")
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(cn).upper())]))
            .issuer_name(issuing.subject)
            .public_key(public)
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(aki, critical=False)
            .add_extension(usage, critical=True)
        )
        return builder.sign(ca_key, ca_hash).public_bytes(der)

    def step(n: int) -> None:
        index = cursor[0]
        for i in range(index, index + n):
            last[0] = issue_one(csrs[i % len(csrs)])
        cursor[0] = index + n

    result = timed_loop(step, seconds)
    cert = x509.load_der_x509_certificate(last[0])
    problems = []
    try:
        ca_key.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(ca_hash))
    except Exception as exc:
        problems.append(f"the pyca certificate does not verify: {exc!r}")
    return {**result, "checks": "; ".join(problems) or "ok"}


def measure_token_ecdh(hsm: Any, case: CurveCase, kdf: str, seconds: float) -> dict[str, Any]:
    """``hsm.agree_key`` with an ephemeral token key and a pyca peer point; the agreed key is
    destroyed in the loop. The profile's ``kdf`` is switched to ``kdf`` for the measurement."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash

    from kms.dlms import kdf as dlms_kdf
    from kms.dlms.suites import SecuritySuite
    from kms.hsm.templates import KeyUse

    suite = SecuritySuite(case.suite)
    info = dlms_kdf.other_info_ephemeral_unified(
        dlms_kdf.algorithm_id_for(suite), CLIENT_SYSTEM_TITLE, meter_title(case.suite, 0)
    )
    peer = ec.generate_private_key(case.pyca_curve)
    peer_xy = peer.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )[1:]
    original = hsm.profile
    hsm.profile = dataclasses.replace(original, kdf=kdf, host_kdf=kdf == "host")
    private, point = hsm.generate_ephemeral_key_pair(case.curve)
    try:
        agree, destroy, curve = hsm.agree_key, hsm.destroy, case.curve
        length, use = case.key_length, KeyUse.EK_FOR_USE

        def step(n: int) -> None:
            for _ in range(n):
                destroy(agree(private, peer_xy, curve, info, length, use).key)

        result = timed_loop(step, seconds)
        # The check: the agreed key ciphers as the key pyca derives from the same two keys.
        agreed = agree(private, peer_xy, curve, info, length, use)
        try:
            iv, aad, plain = os.urandom(12), b"\x30" + os.urandom(16), b"benchmark"
            token_out = hsm.gcm_encrypt(agreed.key, iv, aad, plain, 96)
        finally:
            destroy(agreed.key)
        token_public = ec.EllipticCurvePublicKey.from_encoded_point(
            case.pyca_curve, b"\x04" + point
        )
        z = peer.exchange(ec.ECDH(), token_public)
        expected = ConcatKDFHash(case.pyca_hash, length, info).derive(z)
        pyca_out = AESGCM(expected).encrypt(iv, plain, aad)[: len(plain) + 12]
        problems = []
        if token_out != pyca_out:
            problems.append("the agreed key is not the key pyca derives")
        where = {"digest_key": "token-digest", "host": "host"}[kdf]
        if agreed.kdf_location != where:
            problems.append(f"KDF ran at {agreed.kdf_location}, not {where}")
    finally:
        hsm.destroy(private)
        hsm.profile = original
    return {**result, "checks": "; ".join(problems) or "ok"}


def measure_pyca_ecdh(case: CurveCase, seconds: float) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash

    from kms.dlms import kdf as dlms_kdf
    from kms.dlms.suites import SecuritySuite

    info = dlms_kdf.other_info_ephemeral_unified(
        dlms_kdf.algorithm_id_for(SecuritySuite(case.suite)),
        CLIENT_SYSTEM_TITLE,
        meter_title(case.suite, 0),
    )
    private = ec.generate_private_key(case.pyca_curve)
    peer = ec.generate_private_key(case.pyca_curve)
    peer_public = peer.public_key()
    ecdh, hash_, length = ec.ECDH(), case.pyca_hash, case.key_length
    exchange = private.exchange

    def step(n: int) -> None:
        for _ in range(n):
            ConcatKDFHash(hash_, length, info).derive(exchange(ecdh, peer_public))

    result = timed_loop(step, seconds)
    mine = ConcatKDFHash(hash_, length, info).derive(exchange(ecdh, peer_public))
    theirs = ConcatKDFHash(hash_, length, info).derive(peer.exchange(ecdh, private.public_key()))
    return {**result, "checks": "ok" if mine == theirs else "the two sides disagree"}


def measure_token_keygen(hsm: Any, case: CurveCase, seconds: float) -> dict[str, Any]:
    generate, destroy, curve = hsm.generate_ephemeral_key_pair, hsm.destroy, case.curve

    def step(n: int) -> None:
        for _ in range(n):
            destroy(generate(curve)[0])

    return {**timed_loop(step, seconds), "checks": "ok"}


def measure_pyca_keygen(case: CurveCase, seconds: float) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    curve = case.pyca_curve
    x962, uncompressed = serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint

    def step(n: int) -> None:
        for _ in range(n):
            ec.generate_private_key(curve).public_key().public_bytes(x962, uncompressed)

    return {**timed_loop(step, seconds), "checks": "ok"}


# --- the run --------------------------------------------------------------------------------------


def run_case(
    hsm: Any,
    db: Any,
    config: Any,
    case: CurveCase,
    count: int,
    args: argparse.Namespace,
    workdir: Path,
) -> list[dict[str, Any]]:
    """Every measurement of one curve, in the order of the module docstring."""
    seconds = args.seconds
    key_label, ca_der = issuing_authority(db, case.suite)
    log(f"{case.curve}: registering {count:,} suite-{case.suite} meters ({args.meters})")
    started = time.perf_counter()
    titles = register_meters(hsm, db, config, case, count, args.meters, workdir)
    log(f"{case.curve}: meters registered in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    csrs = make_csrs(case, titles)
    log(f"{case.curve}: {count:,} pyca key pairs and CSRs in {time.perf_counter() - started:.1f} s")
    rows: list[dict[str, Any]] = []

    def add(kind: str, result: dict[str, Any]) -> None:
        result.update(kind=kind, curve=case.curve, suite=case.suite)
        rows.append(result)
        ops_s = result["ops"] / result["seconds"]
        log(f"{case.curve} {LABELS[kind]:<30} {ops_s:>10,.0f} /s  [{result['checks']}]")

    add("pyca-sign", measure_pyca_sign(case, seconds))
    before = token_sign_loop(hsm, case, key_label, seconds)
    log(f"{case.curve} token sign before issuance {before['ops'] / before['seconds']:,.0f} /s")
    profile = None
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        profile = str(Path(args.profile).resolve() / f"issue-{case.curve}.prof")
    issue = measure_issue(
        hsm,
        db,
        config,
        case,
        csrs,
        titles,
        key_label,
        ca_der,
        breakdown=args.breakdown,
        profile=profile,
    )
    after = token_sign_loop(hsm, case, key_label, seconds)
    log(f"{case.curve} token sign after issuance {after['ops'] / after['seconds']:,.0f} /s")
    sign = pooled(before, after)
    sign["checks"] = "; ".join(check_token_sign(hsm, case, key_label, ca_der)) or "ok"
    add("token-sign", sign)
    add("issue", issue)
    add("pyca-issue", measure_pyca_issue(case, csrs, ca_der, seconds))
    for kdf in ("digest_key", "host"):
        add(f"token-ecdh-{kdf}", measure_token_ecdh(hsm, case, kdf, seconds))
    add("pyca-ecdh", measure_pyca_ecdh(case, seconds))
    add("token-keygen", measure_token_keygen(hsm, case, seconds))
    add("pyca-keygen", measure_pyca_keygen(case, seconds))
    derive(rows)
    return rows


def derive(rows: list[dict[str, Any]]) -> None:
    by_kind = {row["kind"]: row for row in rows}
    for row in rows:
        row["ops_per_s"] = row["ops"] / row["seconds"]
        row["us_per_op"] = row["seconds"] / row["ops"] * 1e6
        cpu = row["cpu_seconds"] + row.get("db_server_cpu_seconds", 0.0)
        row["cpu_us_per_op"] = cpu / row["ops"] * 1e6
    sign = by_kind["token-sign"]
    issue = by_kind["issue"]
    issue["sign_ratio"] = issue["ops_per_s"] / sign["ops_per_s"]
    issue["sign_cpu_ratio"] = sign["cpu_us_per_op"] / issue["cpu_us_per_op"]
    issue["target_met"] = issue["sign_ratio"] >= TARGET_ISSUE_RATIO
    # What a lean issuance could reach: the token signature plus pyca's per-certificate work
    # around its own signature (CSR load and verify, build, DER; no database, no re-checks).
    # By CPU, which another job on the machine disturbs less than wall time.
    around = by_kind["pyca-issue"]["cpu_us_per_op"] - by_kind["pyca-sign"]["cpu_us_per_op"]
    issue["lean_cpu_us_per_op"] = sign["cpu_us_per_op"] + around
    issue["lean_sign_ratio"] = sign["cpu_us_per_op"] / issue["lean_cpu_us_per_op"]
    for kind, host in HOST_OF.items():
        if kind in by_kind and host in by_kind:
            by_kind[kind]["host_ratio"] = by_kind[kind]["ops_per_s"] / by_kind[host]["ops_per_s"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Certificate issuance throughput of the KMS against bare token ECDSA signing, "
        "with token ECDH + KDF and pyca/cryptography baselines.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--p256",
        type=int,
        default=DEFAULT_P256,
        metavar="N",
        help="CSRs in the P-256 (suite 1) batch; 0 skips P-256",
    )
    parser.add_argument(
        "--p384",
        type=int,
        default=DEFAULT_P384,
        metavar="N",
        help="CSRs in the P-384 (suite 2) batch; 0 skips P-384",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help="seconds per sign, ECDH, key pair and pyca issuance measurement (the token sign "
        "baseline runs this long before the issuance and again after it)",
    )
    parser.add_argument(
        "--database",
        choices=DATABASES,
        default="sqlite",
        help="the KMS database: a fresh SQLite file, or a fresh database on a PostgreSQL server",
    )
    parser.add_argument(
        "--meters",
        choices=("provision", "insert"),
        default="provision",
        help="how the meters are registered before the clock starts: the provisioning service "
        "(as in production, one setup and its keys each) or bare meter rows (faster setup; "
        "issuance's meter lookups then find no setups or keys to load)",
    )
    parser.add_argument(
        "--postgresql",
        metavar="URL",
        help="SQLAlchemy URL of a PostgreSQL server whose role may CREATE DATABASE (default: "
        "$KMS_TEST_POSTGRES_URL, else `scripts/postgres-test.sh url`)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="time the issuance's phases through its phases hook and print where the time goes "
        "(adds a few microseconds per certificate)",
    )
    add_report_options(
        parser,
        "run the issuance under cProfile, write DIR/issue-<curve>.prof and print the top "
        "functions on stderr (its timings are then inflated: do not compare them)",
    )
    args = parser.parse_args(argv)
    if args.p256 < 0 or args.p384 < 0 or args.p256 + args.p384 == 0:
        parser.error("--p256 and --p384 are counts of CSRs, at least one of them positive")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    module = softhsm_module()
    pg_server = require_postgres(args.postgresql) if args.database == "postgresql" else None

    workdir = Path(tempfile.mkdtemp(prefix="kms-bench-pki-"))
    rows: list[dict[str, Any]] = []
    status = 0
    try:
        env, token_label = softhsm_token(workdir, module)  # sets SOFTHSM2_CONF for this process
        with contextlib.ExitStack() as stack:
            if args.database == "sqlite":
                database_url = f"sqlite:///{workdir / 'kms.db'}"
            else:
                assert pg_server is not None
                database_url = stack.enter_context(postgres_database(pg_server))
            from kms.config import Config, Pin
            from kms.db import Database
            from kms.db.migrate import upgrade
            from kms.hsm import open_hsm

            config = Config(
                pkcs11_module=module,
                token_label=token_label,
                user_pin=Pin(env["KMS_USER_PIN"]),
                database_url=database_url,
                actor=ACTOR,
            )
            hsm = open_hsm(config)
            stack.callback(hsm.close)
            db = Database(database_url)
            stack.callback(db.dispose)
            upgrade(db.engine)
            log(f"token {token_label!r} in {workdir}; officers, root CA, issuing CAs")
            prepare_kms(hsm, db, config)
            for curve, count in (("P-256", args.p256), ("P-384", args.p384)):
                if count:
                    rows.extend(run_case(hsm, db, config, CASES[curve], count, args, workdir))
    except (RuntimeError, KeyboardInterrupt) as exc:
        log(f"stopped: {exc!r}")
        status = 1
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if any(row["checks"] != "ok" for row in rows):
        status = 1

    document = {
        **document_header(),
        "database": args.database,
        "seconds": args.seconds,
        "batches": {"P-256": args.p256, "P-384": args.p384},
        "meters": args.meters,
        "profiled": bool(args.profile),
        "breakdown": args.breakdown,
        "targets": {"issue_over_token_sign_min": TARGET_ISSUE_RATIO},
        "rows": rows,
    }
    emit_report(document, args.json, print_tables)
    return status


# --- tables ---------------------------------------------------------------------------------------


def print_tables(document: dict[str, Any]) -> None:
    from rich.table import Table

    console = report_console(180)
    rows = document["rows"]
    if not rows:
        console.print("[red]no results[/red]")
        return
    batches = ", ".join(f"{c} x {n:,}" for c, n in document["batches"].items() if n)
    table = Table(
        title=f"PKI throughput on {document['database']} (issuance batches: {batches}; "
        f"{document['seconds']:g} s per other measurement; meters by {document['meters']})",
        caption=(
            "token: SoftHSM2 through kms.hsm; host: pyca/cryptography in process. "
            f"Target: KMS issuance / token ECDSA sign >= {TARGET_ISSUE_RATIO:.2f}"
        ),
    )
    for name, justify in (
        ("operation", "left"),
        ("curve", "left"),
        ("ops", "right"),
        ("seconds", "right"),
        ("ops/s", "right"),
        ("us/op", "right"),
        ("CPU us/op", "right"),
        ("/ token sign", "right"),
        ("/ token sign by CPU", "right"),
        ("/ pyca", "right"),
        ("other CPU", "right"),
        ("checks", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    previous = None
    failed: list[str] = []
    for row in rows:
        if previous is not None and row["curve"] != previous:
            table.add_section()
        previous = row["curve"]
        ratio = row.get("sign_ratio")
        ratio_text = "-"
        if ratio is not None:
            colour = "green" if ratio >= TARGET_ISSUE_RATIO else "red"
            ratio_text = f"[{colour}]{ratio:.3f}[/{colour}]"
        table.add_row(
            LABELS[row["kind"]],
            row["curve"],
            f"{row['ops']:,}",
            f"{row['seconds']:.2f}",
            f"{row['ops_per_s']:,.0f}",
            f"{row['us_per_op']:,.0f}",
            f"{row['cpu_us_per_op']:,.0f}",
            ratio_text,
            fmt(row.get("sign_cpu_ratio"), ".3f"),
            fmt(row.get("host_ratio"), ".3f"),
            fmt(row.get("other_cores"), ".2f"),
            "ok" if row["checks"] == "ok" else "[red]see below[/red]",
        )
        if row["checks"] != "ok":
            failed.append(f"{LABELS[row['kind']]} {row['curve']}: {row['checks']}")
    console.print(table)
    for line in failed:
        console.print(f"[red]check failed:[/red] {line}")
    for row in rows:
        if row["kind"] != "issue":
            continue
        sign = next(r for r in rows if r["kind"] == "token-sign" and r["curve"] == row["curve"])
        met = "[green]met[/green]" if row["target_met"] else "[red]NOT met[/red]"
        console.print(
            f"{row['curve']}: issuance / bare token ECDSA sign = {row['sign_ratio']:.3f} "
            f"(target >= {TARGET_ISSUE_RATIO:.2f}: {met}): {row['us_per_op']:,.0f} us per "
            f"certificate; the target allows {sign['us_per_op'] / TARGET_ISSUE_RATIO:,.0f} us "
            f"({sign['us_per_op']:,.0f} us per token signature)"
        )
        console.print(
            f"{row['curve']}: lean bound by CPU, the token signature plus pyca's work around its "
            f"own signature (CSR, build, DER; no database): {row['lean_cpu_us_per_op']:,.0f} us "
            f"per certificate, ratio {row['lean_sign_ratio']:.2f}"
        )
    for row in rows:
        if row.get("breakdown"):
            print_breakdown(console, row)
    if document["profiled"]:
        console.print("[yellow]profiled run: issuance timings include cProfile[/yellow]")
    if document["breakdown"]:
        console.print("[yellow]--breakdown: issuance timings include the phase timer[/yellow]")
    console.print(f"command: {document['command']}")


def print_breakdown(console: Any, row: dict[str, Any]) -> None:
    from rich.table import Table

    n, total = row["ops"], row["seconds"]
    table = Table(
        title=f"Where issuance time goes, {row['curve']} x {n:,} (exclusive wall time per phase)",
        caption=f"phases marked{WORKER} ran beside the main thread: not part of the total",
    )
    for name in ("phase", "calls", "us/cert", "share"):
        table.add_column(name, justify="left" if name == "phase" else "right")
    accounted = 0.0
    for label, part in sorted(row["breakdown"].items(), key=lambda kv: -kv[1]["seconds"]):
        if not label.endswith(WORKER):
            accounted += part["seconds"]
        table.add_row(
            label,
            f"{part['calls']:,}",
            f"{part['seconds'] / n * 1e6:,.1f}",
            f"{part['seconds'] / total:.1%}",
        )
    rest = total - accounted
    table.add_row("the rest on the main thread (loops, objects, waiting for workers)", "-",
                  f"{rest / n * 1e6:,.1f}", f"{rest / total:.1%}")  # fmt: skip
    table.add_section()
    table.add_row("total", "-", f"{total / n * 1e6:,.1f}", "100.0%")
    console.print(table)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
