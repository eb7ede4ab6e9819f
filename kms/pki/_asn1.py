"""Shared plumbing of the PKI modules: strict DER and PEM decoding (X.690 DER, RFC 7468 PEM), X.509
time encoding (RFC 5280 4.1.2.5) and short names for messages.

Private to :mod:`kms.pki`; the public loaders live in :mod:`kms.pki.encoding`, :mod:`kms.pki.csr`
and :mod:`kms.pki.crl`.

Exports (package-internal):

* :data:`ASN1_ERRORS` -- the built-in exceptions asn1crypto raises on hostile bytes.
* :func:`decode_der` -- the DER framing check of :mod:`kms.pki._der`, ``spec.load(strict=True)``
  and a forced ``.native``, any failure as one :class:`~kms.errors.InputError`.
* :func:`pem_blocks` / :func:`is_pem` / :func:`armor` -- strict RFC 7468 textual encoding.
* :func:`utc` / :func:`x509_time` -- aware UTC datetimes, whole seconds, UTCTime before 2050.
* :func:`name_text` -- ``CN=...,O=...`` for error messages.
* :data:`SIGNATURE_ALGORITHMS` / :data:`HASH_OF_ALGORITHM` / :func:`signature_algorithm` -- the
  two ECDSA signature algorithms of the profile.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any

from asn1crypto import algos, x509  # type: ignore[import-untyped, unused-ignore]

from kms.errors import InputError
from kms.pki._der import DerError, check_der

__all__ = [
    "ASN1_ERRORS",
    "HASH_OF_ALGORITHM",
    "SIGNATURE_ALGORITHMS",
    "armor",
    "decode_der",
    "is_pem",
    "name_text",
    "pem_blocks",
    "signature_algorithm",
    "time_encoding_is_canonical",
    "utc",
    "x509_time",
]

#: asn1crypto parses lazily and reports hostile input with whatever built-in error the field's
#: decoder hits (a bad tag is a ValueError, a short length an IndexError or a TypeError deep in a
#: primitive, an absurd date an OverflowError). The loaders are the one trust boundary, so they
#: turn exactly these into an InputError; anything else is a bug and is left to propagate.
ASN1_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    AttributeError,
)

#: asn1crypto's names of the signature algorithms the Green Book profile allows (notes section 6)
#: with the spelling of RFC 5758 3.2, used in messages.
SIGNATURE_ALGORITHMS = {"sha256_ecdsa": "ecdsa-with-SHA256", "sha384_ecdsa": "ecdsa-with-SHA384"}
#: asn1crypto signature algorithm name -> hashlib name of its hash.
HASH_OF_ALGORITHM = {"sha256_ecdsa": "sha256", "sha384_ecdsa": "sha384"}
_HASH_TO_ALGORITHM = {hash_name: name for name, hash_name in HASH_OF_ALGORITHM.items()}

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]{1,40})-----\r?\n([^-]*)-----END ([A-Z0-9 ]{1,40})-----"
)
_MESSAGE_LIMIT = 160
_SEQUENCE = 0x30

#: Attribute abbreviations of RFC 4514 2.3, for messages only.
_SHORT_NAMES = {
    "common_name": "CN",
    "organization_name": "O",
    "organizational_unit_name": "OU",
    "country_name": "C",
    "state_or_province_name": "ST",
    "locality_name": "L",
    "serial_number": "serialNumber",
}


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def decode_der(spec: Any, data: bytes, what: str, source: str | None) -> Any:
    """``spec`` parsed from ``data`` with nothing left over, every field decoded.

    asn1crypto decodes a field only when it is read, so a bad extension deep inside would
    otherwise surface later as an odd error far from the input; reading ``.native`` once walks the
    whole structure here, where the failure can name ``what`` and ``source``.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"{what} must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise InputError(f"{what}: empty input", source=source)
    if data[0] != _SEQUENCE:
        # Every structure loaded here is a SEQUENCE; text or a stray format gets a plain answer.
        raise InputError(f"{what}: not DER or PEM", source=source)
    try:
        check_der(data)
    except DerError as error:
        raise InputError(f"{what}: bad DER: {error}", source=source) from None
    try:
        value = spec.load(data, strict=True)
        _ = value.native
    except ASN1_ERRORS as error:
        raise InputError(f"{what}: bad DER: {_short(error)}", source=source) from None
    return value


def is_pem(data: bytes) -> bool:
    """True when ``data`` starts (after whitespace) with an RFC 7468 BEGIN line."""
    return bytes(data).lstrip().startswith(b"-----BEGIN ")


def pem_blocks(data: bytes, labels: tuple[str, ...], what: str, source: str | None) -> list[bytes]:
    """The DER payload of every PEM block in ``data``, each labelled one of ``labels``.

    Stricter than asn1crypto's ``pem.unarmor``, which skips any text it does not understand and
    decodes base64 with invalid characters dropped: here only whitespace may surround the blocks,
    BEGIN and END labels must match and the base64 must be canonical (RFC 7468 section 3, the
    "strict" grammar).
    """
    data = bytes(data)
    blocks: list[bytes] = []
    position = 0
    for match in _PEM_BLOCK.finditer(data):
        if data[position : match.start()].strip():
            raise InputError(f"{what}: text outside a PEM block", source=source)
        begin, body, end = match.group(1), match.group(2), match.group(3)
        label = begin.decode("ascii")
        if begin != end:
            raise InputError(
                f"{what}: PEM BEGIN {label} ends with END {end.decode('ascii')}", source=source
            )
        if label not in labels:
            raise InputError(
                f"{what}: PEM block is {label}, expected {' or '.join(labels)}", source=source
            )
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InputError(f"{what}: bad base64 in PEM block", source=source) from None
        blocks.append(der)
        position = match.end()
    if not blocks:
        raise InputError(f"{what}: no complete PEM block (BEGIN and END lines)", source=source)
    if data[position:].strip():
        raise InputError(f"{what}: text outside a PEM block", source=source)
    return blocks


def armor(label: str, der: bytes) -> bytes:
    """RFC 7468 PEM of ``der``: 64-character base64 lines, LF line ends."""
    if not re.fullmatch(r"[A-Z0-9]+( [A-Z0-9]+)*", label):
        raise ValueError(f"not a PEM label: {label!r}")
    text = base64.b64encode(bytes(der))
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    head = f"-----BEGIN {label}-----\n".encode("ascii")
    tail = f"-----END {label}-----\n".encode("ascii")
    return head + b"".join(line + b"\n" for line in lines) + tail


def utc(moment: datetime, what: str) -> datetime:
    """``moment`` in UTC with the microseconds dropped.

    X.509 times are whole seconds (RFC 5280 4.1.2.5.1 and 4.1.2.5.2 forbid fractions), and a naive
    datetime would be read in the host's zone, which a KMS must not depend on: it is a caller bug.
    """
    if not isinstance(moment, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC)")
    return moment.astimezone(UTC).replace(microsecond=0)


def x509_time(moment: datetime, what: str) -> Any:
    """An ``x509.Time`` choosing the encoding as RFC 5280 4.1.2.5 requires: UTCTime for the years
    1950 to 2049, GeneralizedTime otherwise."""
    moment = utc(moment, what)
    if 1950 <= moment.year < 2050:
        return x509.Time({"utc_time": moment})
    return x509.Time({"general_time": moment})


def time_encoding_is_canonical(time: Any) -> bool:
    """True when a decoded ``x509.Time`` has the encoding RFC 5280 4.1.2.5 requires for its year."""
    year = time.native.year
    wants_utc = 1950 <= year < 2050
    return bool((time.name == "utc_time") == wants_utc)


def name_text(name: Any) -> str:
    """``name`` as short RFC 4514-like text (``CN=4D4D4D0000BC614E``), for error messages."""
    parts: list[str] = []
    for rdn in name.chosen:
        for attribute in rdn:
            kind = attribute["type"].native
            value = attribute["value"].native
            label = _SHORT_NAMES.get(kind, kind)
            parts.append(f"{label}={value}")
    text = ",".join(parts) or "(empty name)"
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def signature_algorithm(hash_name: str) -> Any:
    """The ``SignedDigestAlgorithm`` for ECDSA with ``hash_name``; parameters absent (RFC 5758
    3.2: "the parameters field MUST be absent")."""
    try:
        algorithm = _HASH_TO_ALGORITHM[hash_name]
    except KeyError:
        raise ValueError(f"no ECDSA signature algorithm for hash {hash_name!r}") from None
    return algos.SignedDigestAlgorithm({"algorithm": algorithm})
