"""Test-only helpers for kms.pki: a pyca-backed :class:`~kms.pki.ecdsa.Signer`, fixed keys, a
demo PKI (root P-384, issuing CAs for suites 1 and 2, meter certificates), a builder of
off-profile certificates with pyca's ``CertificateBuilder``, and an ``openssl verify`` runner.

In production the signer is a PKCS#11 token key; here pyca holds the private key, which is what
makes pyca an independent oracle for everything kms.pki produces.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from asn1crypto import keys, x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import strategies as st

from kms.pki import ca, profiles
from kms.pki.profiles import CertificateType, Validity

#: The time every test validates at; certificates below are valid around it.
AT = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
ROOT_VALIDITY = Validity(datetime(2025, 1, 1, tzinfo=UTC), datetime(2060, 1, 1, tzinfo=UTC))
ISSUING_VALIDITY = Validity(datetime(2025, 1, 1, tzinfo=UTC), datetime(2045, 1, 1, tzinfo=UTC))
LEAF_VALIDITY = Validity(datetime(2026, 1, 1, tzinfo=UTC), datetime(2036, 1, 1, tzinfo=UTC))
METER_ST = bytes.fromhex("4D4D4D0000BC614E")  # the Green Book's example system title
OTHER_ST = bytes.fromhex("4D4D4D0000000001")

_CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}
_HASHES: dict[str, hashes.HashAlgorithm] = {"P-256": hashes.SHA256(), "P-384": hashes.SHA384()}
_WIDTH = {"P-256": 32, "P-384": 48}


def private_key(curve: str, seed: int) -> ec.EllipticCurvePrivateKey:
    """A fixed private key per (curve, seed): tests are reproducible except ECDSA's random k."""
    return ec.derive_private_key(0x1000 + seed * 7919, _CURVES[curve])


def public_key_info(
    key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey,
) -> keys.PublicKeyInfo:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return keys.PublicKeyInfo.load(der)


@dataclass
class PycaSigner:
    """A :class:`kms.pki.ecdsa.Signer` over a pyca key: raw r||s of a prehashed digest, as
    CKM_ECDSA returns it."""

    key: ec.EllipticCurvePrivateKey
    calls: list[bytes] = field(default_factory=list)

    @property
    def curve(self) -> str:
        return {"secp256r1": "P-256", "secp384r1": "P-384"}[self.key.curve.name]

    def sign_digest(self, digest: bytes) -> bytes:
        self.calls.append(digest)
        hash_algorithm = _HASHES[self.curve]
        der = self.key.sign(digest, ec.ECDSA(utils.Prehashed(hash_algorithm)))
        r, s = utils.decode_dss_signature(der)
        width = _WIDTH[self.curve]
        return r.to_bytes(width, "big") + s.to_bytes(width, "big")


def serial(label: str) -> int:
    """A profile-conforming serial number, different per label."""
    return profiles.serial_number_from(hashlib.sha256(label.encode()).digest()[:16])


@dataclass
class Pki:
    """Root P-384 -> issuing CA (P-256 for suite 1, P-384 for suite 2) -> meter certificates."""

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    issuing_keys: dict[str, ec.EllipticCurvePrivateKey]
    issuing: dict[str, x509.Certificate]
    meter_keys: dict[str, ec.EllipticCurvePrivateKey]

    def leaf(
        self,
        suite_curve: str,
        certificate_type: CertificateType = CertificateType.DIGITAL_SIGNATURE,
        system_title: bytes = METER_ST,
        validity: Validity = LEAF_VALIDITY,
        label: str = "leaf",
    ) -> x509.Certificate:
        tbs = profiles.end_entity_tbs(
            serial_number=serial(f"{label}-{suite_curve}-{certificate_type}-{system_title.hex()}"),
            issuer=self.issuing[suite_curve],
            system_title=system_title,
            public_key=public_key_info(self.meter_keys[suite_curve]),
            certificate_type=certificate_type,
            validity=validity,
        )
        return ca.sign_certificate(tbs, PycaSigner(self.issuing_keys[suite_curve]))


def make_pki() -> Pki:
    root_key = private_key("P-384", 1)
    root = ca.self_signed_root(
        serial_number=serial("root"),
        subject=profiles.ca_name("KMS Test Root CA", "Example Utility"),
        public_key=public_key_info(root_key),
        signer=PycaSigner(root_key),
        validity=ROOT_VALIDITY,
    )
    issuing_keys = {"P-256": private_key("P-256", 2), "P-384": private_key("P-384", 3)}
    issuing = {
        curve: ca.issuing_ca(
            serial_number=serial(f"issuing-{curve}"),
            subject=profiles.ca_name(f"KMS Test Issuing CA {curve}", "Example Utility"),
            public_key=public_key_info(key),
            issuer=root,
            signer=PycaSigner(root_key),
            validity=ISSUING_VALIDITY,
        )
        for curve, key in issuing_keys.items()
    }
    meter_keys = {"P-256": private_key("P-256", 4), "P-384": private_key("P-384", 5)}
    return Pki(root_key, root, issuing_keys, issuing, meter_keys)


def to_pyca(certificate: x509.Certificate) -> cx509.Certificate:
    return cx509.load_der_x509_certificate(certificate.dump())


def from_pyca(certificate: cx509.Certificate) -> x509.Certificate:
    return x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


_KEY_USAGE_FLAGS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def pyca_key_usage(*names: str) -> cx509.KeyUsage:
    return cx509.KeyUsage(
        **{flag: flag in names for flag in _KEY_USAGE_FLAGS},
        encipher_only=False,
        decipher_only=False,
    )


def pyca_builder(
    *,
    issuer: x509.Certificate,
    subject_key: object,
    common_name: str = METER_ST.hex().upper(),
    key_usage: tuple[str, ...] = ("digital_signature",),
    key_usage_critical: bool = True,
    serial_number: int | None = None,
    with_key_identifiers: bool = True,
    issuer_name: cx509.Name | None = None,
    authority_key_identifier: bytes | None = None,
    subject_name: cx509.Name | None = None,
) -> cx509.CertificateBuilder:
    """A pyca ``CertificateBuilder`` preloaded with a conforming signing certificate for
    ``subject_key`` (a private or public pyca key) under ``issuer``: CN, serial, validity, SKI,
    AKI and keyUsage. A test changes one thing and signs with :func:`pyca_sign`."""
    public = subject_key.public_key() if hasattr(subject_key, "private_bytes") else subject_key
    builder = (
        cx509.CertificateBuilder()
        .subject_name(
            cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, common_name)])
            if subject_name is None
            else subject_name
        )
        .issuer_name(to_pyca(issuer).subject if issuer_name is None else issuer_name)
        .public_key(public)  # type: ignore[arg-type]
        .serial_number(serial("pyca") if serial_number is None else serial_number)
        .not_valid_before(LEAF_VALIDITY.not_before)
        .not_valid_after(LEAF_VALIDITY.not_after)
    )
    if with_key_identifiers:
        builder = builder.add_extension(
            cx509.SubjectKeyIdentifier.from_public_key(public),  # type: ignore[arg-type]
            critical=False,
        ).add_extension(
            cx509.AuthorityKeyIdentifier(
                authority_key_identifier or issuer.key_identifier, None, None
            ),
            critical=False,
        )
    if key_usage:
        builder = builder.add_extension(pyca_key_usage(*key_usage), critical=key_usage_critical)
    return builder


def pyca_sign(
    builder: cx509.CertificateBuilder,
    issuer_key: ec.EllipticCurvePrivateKey,
    hash_algorithm: hashes.HashAlgorithm | None = None,
) -> x509.Certificate:
    if hash_algorithm is None:
        hash_algorithm = _HASHES[
            {"secp256r1": "P-256", "secp384r1": "P-384"}[issuer_key.curve.name]
        ]
    return from_pyca(builder.sign(issuer_key, hash_algorithm))


TLS_EKU = cx509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])


def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:  # pragma: no cover - the image has it; say so rather than skip
        raise RuntimeError("openssl is not on PATH; the interop tests need it")
    return path


def openssl_verify(
    directory: Path,
    *,
    root: bytes,
    untrusted: bytes,
    leaf: bytes,
    crl: bytes | None = None,
    at: datetime = AT,
) -> subprocess.CompletedProcess[str]:
    """``openssl verify -attime`` (``-crl_check`` when a CRL is given) of PEM inputs."""
    files = {"root.pem": root, "issuing.pem": untrusted, "leaf.pem": leaf}
    if crl is not None:
        files["crl.pem"] = crl
    for name, content in files.items():
        (directory / name).write_bytes(content)
    command = [
        openssl(),
        "verify",
        "-attime",
        str(int(at.timestamp())),
        "-CAfile",
        str(directory / "root.pem"),
        "-untrusted",
        str(directory / "issuing.pem"),
    ]
    if crl is not None:
        command += ["-crl_check", "-CRLfile", str(directory / "crl.pem")]
    command.append(str(directory / "leaf.pem"))
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


def days(n: int) -> timedelta:
    return timedelta(days=n)


def resign(
    tbs: x509.TbsCertificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    algorithm: str | None = None,
) -> x509.Certificate:
    """A certificate of an (edited) asn1crypto ``tbs`` signed by ``issuer_key`` with pyca, for
    off-profile shapes pyca's builder will not make (v1, negative serials, bad time encodings)."""
    algorithm = algorithm or tbs["signature"]["algorithm"].native
    hash_algorithm = {"sha256_ecdsa": hashes.SHA256(), "sha384_ecdsa": hashes.SHA384()}[algorithm]
    signature = issuer_key.sign(tbs.dump(force=True), ec.ECDSA(hash_algorithm))
    certificate = x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": {"algorithm": algorithm},
            "signature_value": signature,
        }
    )
    return x509.Certificate.load(certificate.dump(force=True))


def editable_tbs(certificate: x509.Certificate) -> x509.TbsCertificate:
    return x509.TbsCertificate.load(certificate["tbs_certificate"].dump())


def mutate(data: st.DataObject, base: bytes) -> bytes:
    """``base`` with one random corruption: bit flips, a truncation, an insertion, a deletion or
    a length octet pushed out of range -- the damage a link, a disk or an attacker does."""
    kind = data.draw(st.sampled_from(["flip", "flips", "truncate", "insert", "delete", "length"]))
    size = len(base)
    if kind == "flip":
        bit = data.draw(st.integers(0, size * 8 - 1))
        return _flip(base, bit)
    if kind == "flips":
        out = base
        for bit in data.draw(st.lists(st.integers(0, size * 8 - 1), min_size=2, max_size=8)):
            out = _flip(out, bit)
        return out
    if kind == "truncate":
        return base[: data.draw(st.integers(0, size - 1))]
    if kind == "insert":
        at = data.draw(st.integers(0, size))
        return base[:at] + data.draw(st.binary(min_size=1, max_size=16)) + base[at:]
    if kind == "delete":
        at = data.draw(st.integers(0, size - 1))
        return base[:at] + base[at + data.draw(st.integers(1, 16)) :]
    at = data.draw(st.integers(1, size - 1))
    return (
        base[:at]
        + bytes([data.draw(st.sampled_from([0x00, 0x7F, 0x80, 0x81, 0x84, 0xFF]))])
        + base[at + 1 :]
    )


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)
