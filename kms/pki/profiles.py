"""The Green Book certificate profile (DLMS UA 1000-2 Ed. 8.x, the certificate clauses as quoted in
docs/dlms-security.md sections 6 and 11) applied to RFC 5280 section 4: what the KMS puts in a
meter's or a CA's TBSCertificate, and (re-exported) how it checks one.

Choices the notes leave open, made here:

* End-entity certificates carry **no basicConstraints** (RFC 5280 4.2.1.9 allows leaving it out,
  and cA=FALSE would say nothing more). GX-NET tells a CA by the cA flag, Gurux Python by the
  extension's mere presence (it checks the 16-character CN only when the extension is absent);
  leaving it out keeps both on the end-entity path.
* The signature algorithm follows the issuer's key (notes section 11): ecdsa-with-SHA256 under a
  P-256 CA, ecdsa-with-SHA384 under a P-384 CA, whatever the subject's suite. A P-384 subject
  key under a P-256 CA is refused, since the notes require a P-384 CA for it.
* SKI is RFC 5280 method 1; AKI carries only the keyIdentifier (the issuer's SKI). Neither is
  critical. keyUsage is critical. certificatePolicies is not issued (the notes do not say which
  policy OID a DLMS PKI uses).

Exports:

* :func:`end_entity_tbs` / :func:`ca_tbs` -- the unsigned certificates the profile prescribes;
  :mod:`kms.pki.ca` signs them.
* From :mod:`kms.pki.rules`: :class:`CertificateType`, :class:`CertificateEntity`,
  :func:`curve_for_suite`, :class:`Validity`.
* From :mod:`kms.pki.names`: :func:`serial_number_from`, :func:`key_identifier`,
  :func:`system_title_name`, :func:`name_system_title`, :func:`ca_name`.
* From :mod:`kms.pki.profile_check`: :func:`check_certificate`, :func:`certificate_type_of`,
  :func:`entity_of`.
"""

from __future__ import annotations

from typing import Any

from asn1crypto import keys, x509  # type: ignore[import-untyped, unused-ignore]

from kms.dlms.security_setup import CertificateEntity
from kms.errors import CertificateProfileError
from kms.pki._asn1 import signature_algorithm, x509_time
from kms.pki.ecdsa import hash_for_curve, public_key_curve
from kms.pki.names import (
    ca_name,
    key_identifier,
    name_system_title,
    serial_number_from,
    system_title_name,
)
from kms.pki.profile_check import (
    certificate_type_of,
    check_certificate,
    entity_of,
    extensions_of,
)
from kms.pki.rules import (
    CA_KEY_USAGE,
    KEY_USAGE,
    TLS_EXTENDED_KEY_USAGE,
    CertificateType,
    Validity,
    curve_for_suite,
)

__all__ = [
    "CertificateEntity",
    "CertificateType",
    "Validity",
    "ca_name",
    "ca_tbs",
    "certificate_type_of",
    "check_certificate",
    "curve_for_suite",
    "end_entity_tbs",
    "entity_of",
    "key_identifier",
    "name_system_title",
    "serial_number_from",
    "system_title_name",
]

_MAX_SERIAL_OCTETS = 20


def _extension(name: str, value: object, *, critical: bool = False) -> Any:
    return x509.Extension({"extn_id": name, "critical": critical, "extn_value": value})


def _check_serial(serial_number: int) -> int:
    if isinstance(serial_number, bool) or not isinstance(serial_number, int):
        raise TypeError(f"serial number must be int, not {type(serial_number).__name__}")
    if serial_number <= 0 or serial_number.bit_length() // 8 + 1 > _MAX_SERIAL_OCTETS:
        raise ValueError("serial number must be positive and fit 20 DER octets (RFC 5280 4.1.2.2)")
    return serial_number


def _check_validity(validity: Validity) -> Validity:
    if not isinstance(validity, Validity):
        raise TypeError(f"validity must be a Validity, not {type(validity).__name__}")
    return validity


def _check_public_key(public_key: Any) -> str:
    if not isinstance(public_key, keys.PublicKeyInfo):
        raise TypeError(f"public key must be a PublicKeyInfo, not {type(public_key).__name__}")
    return public_key_curve(public_key)


def _issuer_facts(issuer: Any) -> tuple[str, bytes]:
    """The issuer's curve and SKI, after checking it may issue at all."""
    if not isinstance(issuer, x509.Certificate):
        raise TypeError(f"issuer must be an x509.Certificate, not {type(issuer).__name__}")
    extensions = extensions_of(issuer["tbs_certificate"])
    constraints = extensions.get("basic_constraints")
    if constraints is None or not constraints.value["ca"].native:
        raise CertificateProfileError("issuer is not a CA certificate (basicConstraints cA=TRUE)")
    usage = extensions.get("key_usage")
    if usage is not None and "key_cert_sign" not in usage.value.native:
        raise CertificateProfileError("issuer's keyUsage lacks keyCertSign")
    identifier = extensions.get("key_identifier")
    if identifier is None:
        raise CertificateProfileError("issuer certificate has no subjectKeyIdentifier")
    try:
        curve = public_key_curve(issuer.public_key)
    except CertificateProfileError as error:
        raise CertificateProfileError(f"issuer's {error.message}") from None
    return curve, bytes(identifier.value.native)


def _refuse_p384_under_p256(subject_curve: str, issuer_curve: str) -> None:
    if subject_curve == "P-384" and issuer_curve == "P-256":
        raise CertificateProfileError(
            "a P-384 certificate must be signed by a P-384 CA, not a P-256 one"
        )


def _tbs(
    *,
    serial_number: int,
    issuer_curve: str,
    issuer_name: Any,
    validity: Validity,
    subject: Any,
    public_key: Any,
    extensions: list[Any],
) -> Any:
    return x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": serial_number,
            "signature": signature_algorithm(hash_for_curve(issuer_curve)),
            "issuer": issuer_name,
            "validity": x509.Validity(
                {
                    "not_before": x509_time(validity.not_before, "not_before"),
                    "not_after": x509_time(validity.not_after, "not_after"),
                }
            ),
            "subject": subject,
            "subject_public_key_info": public_key,
            "extensions": extensions,
        }
    )


def end_entity_tbs(
    *,
    serial_number: int,
    issuer: x509.Certificate,
    system_title: bytes,
    public_key: keys.PublicKeyInfo,
    certificate_type: CertificateType,
    validity: Validity,
) -> x509.TbsCertificate:
    """The TBSCertificate of a meter's (or a client's) certificate of ``certificate_type``.

    Subject ``CN=<system title>``; keyUsage (critical) digitalSignature, keyAgreement or both;
    extendedKeyUsage serverAuth and clientAuth on TLS only; SKI of ``public_key``; AKI = the
    issuer's SKI. Raises :class:`~kms.errors.CertificateProfileError` when the issuer is no CA,
    either key is off-profile, or a P-384 key would sit under a P-256 CA.
    """
    certificate_type = CertificateType(certificate_type)
    serial_number = _check_serial(serial_number)
    validity = _check_validity(validity)
    subject = system_title_name(system_title)
    subject_curve = _check_public_key(public_key)
    issuer_curve, issuer_identifier = _issuer_facts(issuer)
    _refuse_p384_under_p256(subject_curve, issuer_curve)
    extensions = [
        _extension("key_identifier", key_identifier(public_key)),
        _extension("authority_key_identifier", {"key_identifier": issuer_identifier}),
        _extension("key_usage", set(KEY_USAGE[certificate_type]), critical=True),
    ]
    if certificate_type is CertificateType.TLS:
        extensions.append(_extension("extended_key_usage", list(TLS_EXTENDED_KEY_USAGE)))
    return _tbs(
        serial_number=serial_number,
        issuer_curve=issuer_curve,
        issuer_name=issuer.subject,
        validity=validity,
        subject=subject,
        public_key=public_key,
        extensions=extensions,
    )


def ca_tbs(
    *,
    serial_number: int,
    subject: x509.Name,
    public_key: keys.PublicKeyInfo,
    issuer: x509.Certificate | None,
    issuer_curve: str,
    validity: Validity,
    path_length: int | None,
) -> x509.TbsCertificate:
    """The TBSCertificate of a CA: a self-signed root when ``issuer`` is None, else a subordinate.

    basicConstraints (critical) cA=TRUE with ``path_length`` when given; keyUsage (critical)
    keyCertSign and cRLSign; SKI of ``public_key``; AKI = the issuer's SKI, or the CA's own for a
    root. ``issuer_curve`` is the curve of the key that will sign: a root signs with its own key
    and an issuing CA with its issuer's, so a mismatch is a caller bug (``ValueError``).
    """
    serial_number = _check_serial(serial_number)
    validity = _check_validity(validity)
    if not isinstance(subject, x509.Name):
        raise TypeError(f"subject must be an x509.Name, not {type(subject).__name__}")
    if path_length is not None and (
        isinstance(path_length, bool) or not isinstance(path_length, int) or path_length < 0
    ):
        raise ValueError("path_length must be None or a non-negative int")
    subject_curve = _check_public_key(public_key)
    if issuer is None:
        actual_curve, issuer_name = subject_curve, subject
        authority_identifier = key_identifier(public_key)
    else:
        actual_curve, authority_identifier = _issuer_facts(issuer)
        issuer_name = issuer.subject
        if issuer.max_path_length == 0:
            raise CertificateProfileError(
                "issuer's pathLenConstraint 0 allows no subordinate CA below it"
            )
    if issuer_curve != actual_curve:
        raise ValueError(
            f"issuer_curve {issuer_curve!r} is not the signing key's curve {actual_curve}"
        )
    _refuse_p384_under_p256(subject_curve, actual_curve)
    constraints: dict[str, object] = {"ca": True}
    if path_length is not None:
        constraints["path_len_constraint"] = path_length
    extensions = [
        _extension("key_identifier", key_identifier(public_key)),
        _extension("authority_key_identifier", {"key_identifier": authority_identifier}),
        _extension("basic_constraints", constraints, critical=True),
        _extension("key_usage", set(CA_KEY_USAGE), critical=True),
    ]
    return _tbs(
        serial_number=serial_number,
        issuer_curve=actual_curve,
        issuer_name=issuer_name,
        validity=validity,
        subject=subject,
        public_key=public_key,
        extensions=extensions,
    )
