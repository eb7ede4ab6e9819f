"""Certification requests: RFC 2986 (PKCS #10 v1.7) as a meter returns one from security setup
method 5, ``generate_certificate_request`` (docs/dlms-security.md section 4: DER, subject
``CN=<hex system title>``), with the key and algorithm rules of the Green Book profile (section 6).

A CSR is untrusted input from a device. :func:`load_csr` decodes it strictly, checks its key and
signature algorithm against the profile, verifies the self-signature (proof that the meter holds
the private key) and pulls out the system title. The KMS then issues a certificate built from
the system title and the key, never from the CSR's subject or requested attributes, so nothing
else in the CSR can reach a certificate.

Decisions:

* The subject CN may be upper- or lower-case hex. Gurux writes upper case; the certificate gets
  the canonical upper-case subject either way (:func:`kms.pki.names.name_system_title_any_case`).
* The signature hash must be the one of the key's curve (SHA-256 for a P-256 key, SHA-384 for
  P-384), because the suite fixes both and Gurux pairs them so.
* A signature whose r or s is encoded as a negative INTEGER (gurux-dlms 1.0.203 omits the 0x00
  pad when the top bit is set, so about three CSRs in four) is not a valid ECDSA signature and
  fails as :class:`~kms.errors.InvalidSignature`, as it does in OpenSSL and pyca.

Exports:

* :class:`CertificateRequest` -- what the KMS keeps of a verified CSR.
* :func:`load_csr` -- DER or PEM to a verified :class:`CertificateRequest`.
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import core, csr, keys, x509  # type: ignore[import-untyped, unused-ignore]

from kms.errors import CertificateProfileError, InputError, InvalidSignature
from kms.pki._asn1 import HASH_OF_ALGORITHM, SIGNATURE_ALGORITHMS, decode_der, is_pem, pem_blocks
from kms.pki.ecdsa import hash_for_curve, public_key_curve, verify
from kms.pki.names import name_system_title_any_case

__all__ = ["CertificateRequest", "load_csr"]

_LABELS = ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")
_WHAT = "CSR"


@dataclass(frozen=True)
class CertificateRequest:
    """A CSR whose signature verified and whose key and subject fit the profile.

    ``der`` is the request as received (the DER inside a PEM), kept for the audit trail;
    ``curve`` is ``"P-256"`` or ``"P-384"``.
    """

    der: bytes
    subject: x509.Name
    system_title: bytes
    public_key: keys.PublicKeyInfo
    curve: str


def load_csr(data: bytes, source: str | None = None) -> CertificateRequest:
    """The verified request in ``data`` (DER, or PEM labelled CERTIFICATE REQUEST).

    Raises :class:`~kms.errors.InputError` for bytes that are not a strict PKCS #10 structure
    (``source`` is named), :class:`~kms.errors.CertificateProfileError` for a key, algorithm or
    subject the profile forbids, and :class:`~kms.errors.InvalidSignature` when the
    self-signature does not verify.
    """
    if is_pem(data):
        blocks = pem_blocks(data, _LABELS, _WHAT, source)
        if len(blocks) != 1:
            raise InputError(f"{_WHAT}: {len(blocks)} PEM blocks, expected one", source=source)
        data = blocks[0]
    request = decode_der(csr.CertificationRequest, data, _WHAT, source)
    info = request["certification_request_info"]
    version = info["version"].native
    if version != "v1":
        raise InputError(
            f"{_WHAT}: version field is {version}, RFC 2986 defines only 0 (v1)", source=source
        )

    public_key = info["subject_pk_info"]
    try:
        curve = public_key_curve(public_key)
    except CertificateProfileError as error:
        raise CertificateProfileError(f"CSR {error.message}") from None
    algorithm = request["signature_algorithm"]
    name = algorithm["algorithm"].native
    if name not in SIGNATURE_ALGORITHMS:
        raise CertificateProfileError(
            f"CSR signature algorithm {name} is not ecdsa-with-SHA256 or ecdsa-with-SHA384"
        )
    if not isinstance(algorithm["parameters"], core.Void):
        raise CertificateProfileError(
            "CSR signature algorithm parameters are present (RFC 5758 3.2: must be absent)"
        )
    hash_name = HASH_OF_ALGORITHM[name]
    if hash_name != hash_for_curve(curve):
        raise CertificateProfileError(
            f"CSR for a {curve} key is signed with {SIGNATURE_ALGORITHMS[name]}; "
            f"the suite pairs {curve} with {hash_for_curve(curve).upper()}"
        )
    try:
        verify(public_key, request["signature"].native, info.dump(), hash_name)
    except InvalidSignature:
        raise InvalidSignature("CSR signature does not verify") from None
    except InputError as error:
        raise InputError(f"{_WHAT}: {error.message}", source=source) from None
    try:
        system_title = name_system_title_any_case(info["subject"])
    except CertificateProfileError as error:
        raise CertificateProfileError(f"CSR {error.message}") from None
    return CertificateRequest(
        der=bytes(data),
        subject=info["subject"],
        system_title=system_title,
        public_key=public_key,
        curve=curve,
    )
