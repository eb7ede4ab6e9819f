"""The general-signing APDU (tag 0xDF): DLMS UA 1000-2 Ed. 8.x ("Green Book") / IEC 62056-5-3,
the xDLMS APDUs of clause 9 (General-Signing) and its digital signature of suites 1 and 2; see
docs/dlms-security.md sections 2.6 and 10 (clause numbers not checked against a copy of the
standard).

The A-XDR wire form, every field an OCTET STRING (an A-XDR length, :mod:`kms.dlms.axdr`, then
its bytes)::

    DF | transaction-id | originator-system-title | recipient-system-title | date-time
       | other-information | content | signature

``content`` is an APDU, usually already ciphered (Gurux puts a glo- or ded- APDU there: it signs
the ciphertext); ``signature`` is a raw ECDSA r || s, 64 bytes (P-256, SHA-256, suite 1) or 96
(P-384, SHA-384, suite 2), made with the originator's digital-signature key.

**What the signature covers** (:func:`signed_data`): every byte after the DF tag through
other-information, then the content's *value* -- the content's own length octets are left out::

    signed_data = transaction-id || originator-system-title || recipient-system-title
                  || date-time || other-information (each with its length) || content (bytes only)

The sources conflict [U, notes sections 2.6 and 10]. GBREF quotes the Green Book as saying that
the length and the value of every field contribute, which would include the content's length.
Gurux leaves it out, in its encoder and its verifier alike (Gurux .NET @ bd81e36 ``GXDLMS.Cipher1``
and ``GXSecure.DecryptAesGcm``; gurux.dlms.java @ a01dbc8 ``GXDLMS.cipher1`` and
``GXSecure.decryptAesGcm``: "Content length is not add for the signed data"). The installed
gurux-dlms for Python (1.0.203) has no general-signing at all: no encoder, and its
``decryptAesGcm`` refuses tag 0xDF. This module follows Gurux, the one implementation there is to
interoperate with; ``tests/vectors/dlms/gurux-java/general_signing.txt`` holds APDUs signed by
gurux.dlms.java whose signatures verify over these bytes and not over the GBREF reading. If a
meter follows the other reading, this is the one function to change.

Gurux writes no length at all before a content it did not cipher (security "none": the plain
APDU follows other-information directly); that is not the ASN.1's OCTET STRING and is refused
here (the vector file keeps such an APDU as a FAIL case).

Parsers are strict: a wrong tag, a truncated field, a non-minimal A-XDR length, an originator
system title that is not 8 bytes (the verifier needs it to find the signer's certificate), a
recipient system title that is neither 0 nor 8 bytes, an empty content, a signature that is not
64 or 96 bytes, and trailing bytes raise :class:`~kms.errors.InputError` naming the field and the
offset, and nothing else is raised for any ``bytes`` input.

Signing goes: build a :class:`GeneralSigningApdu` with an empty signature (an unsigned template:
it has :func:`signed_data` but no wire form), have the token sign :func:`signed_data`, then
:meth:`GeneralSigningApdu.with_signature`.

Exports: :data:`GENERAL_SIGNING`, :data:`SIGNATURE_LENGTHS`, :class:`GeneralSigningApdu`,
:func:`parse_general_signing_apdu`, :func:`signed_data`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kms.dlms.axdr import Reader, encode_length
from kms.dlms.system_title import SYSTEM_TITLE_LENGTH

__all__ = [
    "GENERAL_SIGNING",
    "SIGNATURE_LENGTHS",
    "GeneralSigningApdu",
    "parse_general_signing_apdu",
    "signed_data",
]

GENERAL_SIGNING = 0xDF
#: r || s on P-256 (suite 1) and P-384 (suite 2).
SIGNATURE_LENGTHS = (64, 96)


@dataclass(frozen=True)
class GeneralSigningApdu:
    """A general-signing APDU (0xDF), fields in wire order.

    ``signature`` is 64 or 96 bytes, or empty in an unsigned template (which :meth:`to_bytes`
    refuses). Building one with a field of the wrong type or length is a caller bug
    (``ValueError`` / ``TypeError``).
    """

    transaction_id: bytes
    originator_system_title: bytes
    recipient_system_title: bytes
    date_time: bytes
    other_information: bytes
    content: bytes
    signature: bytes

    def __post_init__(self) -> None:
        for name in (
            "transaction_id",
            "originator_system_title",
            "recipient_system_title",
            "date_time",
            "other_information",
            "content",
            "signature",
        ):
            object.__setattr__(self, name, _bytes(getattr(self, name), name))
        if len(self.originator_system_title) != SYSTEM_TITLE_LENGTH:
            raise ValueError(
                f"originator_system_title must be 8 bytes, got {len(self.originator_system_title)}"
            )
        if len(self.recipient_system_title) not in (0, SYSTEM_TITLE_LENGTH):
            raise ValueError(
                "recipient_system_title must be 0 or 8 bytes, "
                f"got {len(self.recipient_system_title)}"
            )
        if not self.content:
            raise ValueError("content must not be empty (it is the signed APDU)")
        if len(self.signature) not in (0, *SIGNATURE_LENGTHS):
            raise ValueError(
                f"signature must be 64 or 96 bytes (r || s), or empty in an unsigned template, "
                f"got {len(self.signature)}"
            )

    @property
    def signed(self) -> bool:
        """Whether the signature is present (a template has none)."""
        return bool(self.signature)

    def with_signature(self, signature: bytes) -> GeneralSigningApdu:
        """This APDU carrying ``signature`` (64 or 96 bytes)."""
        if not signature:
            raise ValueError("with_signature needs a signature")
        return dataclasses.replace(self, signature=signature)

    def to_bytes(self) -> bytes:
        """DF | the five octet strings | content | signature."""
        if not self.signature:
            raise ValueError("an unsigned general-signing template has no wire form")
        return (
            bytes([GENERAL_SIGNING])
            + _header_fields(self)
            + _octet_string(self.content)
            + _octet_string(self.signature)
        )


def signed_data(apdu: GeneralSigningApdu) -> bytes:
    """The bytes the signature covers (module docstring): the five header fields with their
    lengths, then the content's bytes without its length."""
    if not isinstance(apdu, GeneralSigningApdu):
        raise TypeError(f"apdu must be GeneralSigningApdu, not {type(apdu).__name__}")
    return _header_fields(apdu) + apdu.content


def parse_general_signing_apdu(data: bytes) -> GeneralSigningApdu:
    """Parse a general-signing APDU strictly (module docstring)."""
    reader = Reader(data, source="general-signing APDU")
    reader.expect_byte(GENERAL_SIGNING, "tag", "general-signing")
    transaction_id = _read(reader, "transaction_id")
    at = reader.offset
    originator = _read(reader, "originator_system_title")
    if len(originator) != SYSTEM_TITLE_LENGTH:
        raise reader.error(
            f"originator-system-title length must be 8, got {len(originator)}",
            "originator_system_title",
            at,
        )
    at = reader.offset
    recipient = _read(reader, "recipient_system_title")
    if len(recipient) not in (0, SYSTEM_TITLE_LENGTH):
        raise reader.error(
            f"recipient-system-title length must be 0 or 8, got {len(recipient)}",
            "recipient_system_title",
            at,
        )
    date_time = _read(reader, "date_time")
    other_information = _read(reader, "other_information")
    at = reader.offset
    content = _read(reader, "content")
    if not content:
        raise reader.error("content is empty", "content", at)
    at = reader.offset
    signature = _read(reader, "signature")
    if len(signature) not in SIGNATURE_LENGTHS:
        raise reader.error(
            f"signature must be 64 or 96 bytes (r || s), got {len(signature)}", "signature", at
        )
    reader.done()
    return GeneralSigningApdu(
        transaction_id,
        originator,
        recipient,
        date_time,
        other_information,
        content,
        signature,
    )


def _header_fields(apdu: GeneralSigningApdu) -> bytes:
    return b"".join(
        _octet_string(value)
        for value in (
            apdu.transaction_id,
            apdu.originator_system_title,
            apdu.recipient_system_title,
            apdu.date_time,
            apdu.other_information,
        )
    )


def _read(reader: Reader, name: str) -> bytes:
    return reader.take(reader.length(name), name)


def _octet_string(value: bytes) -> bytes:
    return encode_length(len(value)) + value


def _bytes(value: bytes, name: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    return bytes(value)
