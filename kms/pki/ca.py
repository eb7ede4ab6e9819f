"""Signing certificates: RFC 5280 4.1.1.2 (signatureAlgorithm) and 4.1.1.3 (signatureValue, the
signature over the DER tbsCertificate), with the Green Book's ECDSA algorithms
(docs/dlms-security.md sections 6 and 11).

The signature algorithm is fixed by the signing key's curve, and :func:`sign_certificate` refuses a
TBSCertificate that announces another one: a certificate whose inner and outer algorithms differ
is invalid (RFC 5280 4.1.1.2), and one signed with the wrong hash for its CA would be refused by
the profile. The CA helpers also verify what the token signed against the CA's public key, so a
signer bound to the wrong token object fails here and not in a meter.

Exports:

* :func:`sign_certificate` -- a Certificate from a TBSCertificate and a :class:`Signer`.
* :func:`self_signed_root` -- a root CA certificate (no path length limit).
* :func:`issuing_ca` -- a subordinate CA under ``issuer`` (pathLenConstraint 0: it issues only
  end-entity certificates).
"""

from __future__ import annotations

from asn1crypto import keys, x509  # type: ignore[import-untyped, unused-ignore]

from kms.errors import InvalidSignature
from kms.pki._asn1 import HASH_OF_ALGORITHM, SIGNATURE_ALGORITHMS, signature_algorithm
from kms.pki.ecdsa import Signer, hash_for_curve, sign, verify
from kms.pki.profiles import ca_tbs
from kms.pki.rules import Validity

__all__ = ["issuing_ca", "self_signed_root", "sign_certificate"]


def sign_certificate(tbs: x509.TbsCertificate, signer: Signer) -> x509.Certificate:
    """``tbs`` signed by ``signer``, as a freshly parsed Certificate.

    ``ValueError`` when ``tbs`` names a signature algorithm other than the one of the signer's
    curve (ecdsa-with-SHA256 for P-256, ecdsa-with-SHA384 for P-384).
    """
    if not isinstance(tbs, x509.TbsCertificate):
        raise TypeError(f"expected an x509.TbsCertificate, not {type(tbs).__name__}")
    hash_name = hash_for_curve(signer.curve)
    algorithm = signature_algorithm(hash_name)
    if tbs["signature"].dump() != algorithm.dump():
        named = tbs["signature"]["algorithm"].native
        raise ValueError(
            f"tbsCertificate names {SIGNATURE_ALGORITHMS.get(named, named)} but the signer's "
            f"{signer.curve} key signs with {SIGNATURE_ALGORITHMS[f'{hash_name}_ecdsa']}"
        )
    tbs_der = bytes(tbs.dump())
    certificate = x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": algorithm,
            "signature_value": sign(signer, tbs_der),
        }
    )
    return x509.Certificate.load(certificate.dump(), strict=True)


def _signed_by(certificate: x509.Certificate, public_key: keys.PublicKeyInfo) -> x509.Certificate:
    tbs = certificate["tbs_certificate"]
    algorithm = certificate["signature_algorithm"]["algorithm"].native
    try:
        verify(
            public_key,
            certificate["signature_value"].native,
            tbs.dump(),
            HASH_OF_ALGORITHM[algorithm],
        )
    except InvalidSignature:
        raise ValueError("the signer's key is not the CA key the certificate names") from None
    return certificate


def self_signed_root(
    *,
    serial_number: int,
    subject: x509.Name,
    public_key: keys.PublicKeyInfo,
    signer: Signer,
    validity: Validity,
) -> x509.Certificate:
    """A self-signed root CA certificate for ``public_key``, whose private key is ``signer``.

    No pathLenConstraint: the root may sit above issuing CAs, which are themselves limited to 0.
    """
    tbs = ca_tbs(
        serial_number=serial_number,
        subject=subject,
        public_key=public_key,
        issuer=None,
        issuer_curve=signer.curve,
        validity=validity,
        path_length=None,
    )
    return _signed_by(sign_certificate(tbs, signer), public_key)


def issuing_ca(
    *,
    serial_number: int,
    subject: x509.Name,
    public_key: keys.PublicKeyInfo,
    issuer: x509.Certificate,
    signer: Signer,
    validity: Validity,
) -> x509.Certificate:
    """A subordinate CA certificate for ``public_key`` signed by ``issuer``'s key (``signer``).

    pathLenConstraint 0: an issuing CA signs meter and client certificates, never another CA.
    """
    tbs = ca_tbs(
        serial_number=serial_number,
        subject=subject,
        public_key=public_key,
        issuer=issuer,
        issuer_curve=signer.curve,
        validity=validity,
        path_length=0,
    )
    return _signed_by(sign_certificate(tbs, signer), issuer.public_key)
