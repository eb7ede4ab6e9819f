"""Certificates in and out of files: RFC 5280 section 4.1 (the DER Certificate) and RFC 7468
sections 2, 3 and 5 (PEM textual encoding, label ``CERTIFICATE``).

The loaders are the trust boundary for certificate bytes: input is DER or PEM, decoded strictly
(no trailing bytes, no text around PEM blocks, canonical base64) and parsed in full at once, so
bad bytes fail here with an :class:`~kms.errors.InputError` naming the source rather than later,
deep in a profile check. They do not judge the certificate:
:func:`kms.pki.profiles.check_certificate` does.

Exports:

* :func:`load_certificate` -- one certificate from DER or PEM.
* :func:`load_certificates` -- a PEM bundle (or one DER certificate) as a list.
* :func:`certificate_pem` -- PEM of a certificate.
* :func:`pem_or_der` -- the bytes to write to a file, by the file's suffix.
"""

from __future__ import annotations

from asn1crypto import x509  # type: ignore[import-untyped, unused-ignore]

from kms.errors import InputError
from kms.pki._asn1 import armor, decode_der, is_pem, pem_blocks

__all__ = ["certificate_pem", "load_certificate", "load_certificates", "pem_or_der"]

_LABELS = ("CERTIFICATE",)
_WHAT = "certificate"


def load_certificate(data: bytes, source: str | None = None) -> x509.Certificate:
    """The certificate in ``data`` (DER, or PEM with exactly one CERTIFICATE block).

    ``source`` (a file name, a CLI argument) is named in any :class:`~kms.errors.InputError`.
    """
    if is_pem(data):
        blocks = pem_blocks(data, _LABELS, _WHAT, source)
        if len(blocks) != 1:
            raise InputError(f"{_WHAT}: {len(blocks)} PEM blocks, expected one", source=source)
        data = blocks[0]
    return decode_der(x509.Certificate, data, _WHAT, source)


def load_certificates(data: bytes, source: str | None = None) -> list[x509.Certificate]:
    """Every certificate in ``data``: a PEM bundle of CERTIFICATE blocks, or one DER certificate.

    A bundle whose third block is bad fails naming the block (``certificate 3``), since a chain
    with a silently skipped member would validate differently.
    """
    if not is_pem(data):
        return [decode_der(x509.Certificate, data, _WHAT, source)]
    blocks = pem_blocks(data, _LABELS, _WHAT, source)
    return [
        decode_der(x509.Certificate, der, f"{_WHAT} {index}", source)
        for index, der in enumerate(blocks, start=1)
    ]


def certificate_pem(certificate: x509.Certificate) -> bytes:
    """``certificate`` as PEM (one CERTIFICATE block, LF line ends)."""
    if not isinstance(certificate, x509.Certificate):
        raise TypeError(f"expected an x509.Certificate, not {type(certificate).__name__}")
    return armor("CERTIFICATE", bytes(certificate.dump()))


def pem_or_der(der: bytes, kind: str, path_suffix: str) -> bytes:
    """What to write to a file ending in ``path_suffix``: ``der`` itself for ``.der`` (any case),
    PEM with label ``kind`` (``CERTIFICATE``, ``X509 CRL``) for anything else, ``.pem`` and
    ``.crt`` included, because PEM is the form people can read and paste."""
    if path_suffix.lower() == ".der":
        return bytes(der)
    return armor(kind, der)
