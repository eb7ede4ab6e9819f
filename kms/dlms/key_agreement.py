"""Key agreement of security suites 1 and 2: DLMS UA 1000-1 ("Blue Book") / IEC 62056-6-2,
interface class "Security setup" (class_id 64) method 3 ``key_agreement`` (the Ephemeral Unified
Model C(2e,0s)), and the agreed-key Key-Info of DLMS UA 1000-2 Ed. 8.x ("Green Book") /
IEC 62056-5-3 general-ciphering (One-Pass Diffie-Hellman C(1e,1s) and the Static Unified Model
C(0e,2s)), the schemes of NIST SP 800-56A with ECC CDH; see docs/dlms-security.md sections 4, 5
and 2.6 (clause numbers not checked against a copy of the standards).

Public keys travel as x || y without the 04 prefix (64 bytes on P-256, 96 on P-384) and ECDSA
signatures as raw r || s (64 or 96 bytes); the signature is made with the party's static
*digital-signature* key and SHA-256 (suite 1) or SHA-384 (suite 2).

key_agreement (method 3), as Gurux .NET (``GXDLMSSecuritySetup.KeyAgreement`` and
``UpdateEphemeralKeys``) and Java (server side, ``invokeKeyAgreement``) lay it out::

    request parameters:  01 n { 02 02  16 <key_id>  09 <len> Q_eph x||y || signature }
    reply return data:   the same array, one entry per key, carrying the *server's* ephemeral key
    signed bytes:        key_id (1 byte) || x || y           (:func:`ephemeral_signed_data`)

Gurux's client reads the reply as ``array of structure {enum key_id, octet-string(128)}`` and
Java's server writes exactly that as the method's return data (always key_id 0, its only
supported key; .NET's server builds no reply). So the reply is parsed by
:func:`parse_key_agreement_response_data` as that COSEM Data, and the agreed key is
:func:`kms.dlms.kdf.concat_kdf` over Z = ECDH(own ephemeral, peer ephemeral) with
:func:`kms.dlms.kdf.other_info_ephemeral_unified` (client title first on both sides).
Whether the Green Book signs exactly key_id || x || y is [U, notes section 10]: this is Gurux's
layout, and ``tests/vectors/dlms/gurux-java/key_agreement.txt`` holds a request and a reply of
gurux.dlms.java that verify over it. Gurux's servers read only the first entry and accept only
key_id 0; which public key checks the client's signature differs between Gurux .NET (the client's
digital-signature certificate) and Java (the key-agreement key it holds for the client) [U].

general-ciphering agreed-key (:class:`kms.dlms.general_ciphering.AgreedKey`), as Gurux .NET
writes it: key-parameters is one byte, the scheme; for One-Pass DH the key-ciphered-data is
Q_eph x || y || signature over 01 || x || y (:func:`one_pass_signed_data`), for the Static
Unified Model it is empty.

The rules of a key_agreement list, checked when building (``ValueError``) and parsing
(:class:`~kms.errors.InputError`): 1 to 4 entries, no key_id twice, every key-ciphered-data
128 (suite 1) or 192 (suite 2) bytes and all of one length.

Exports: :class:`KeyAgreementScheme`, :data:`METHOD_KEY_AGREEMENT`, :func:`coordinate_length`,
:func:`public_key_length`, :func:`signature_length`, :func:`ephemeral_signed_data`,
:func:`ephemeral_key_data`, :func:`parse_ephemeral_key_data`, :class:`KeyAgreementEntry`,
:class:`KeyAgreementRequest`, :func:`key_agreement_request`, :func:`parse_key_agreement_request`,
:func:`key_agreement_response_data`, :func:`parse_key_agreement_response_data`,
:func:`one_pass_signed_data`, :func:`one_pass_key_ciphered_data`,
:func:`parse_one_pass_key_ciphered_data`, :func:`one_pass_agreed_key`,
:func:`static_unified_agreed_key`, :func:`agreed_key_scheme`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from kms.dlms.action_request import (
    DEFAULT_INVOKE_ID_AND_PRIORITY,
    DEFAULT_SECURITY_SETUP,
    check_invoke_id_and_priority,
    check_security_setup_logical_name,
    read_security_setup_action_header,
    security_setup_action_request,
)
from kms.dlms.axdr import (
    Reader,
    encode_array,
    encode_enum,
    encode_octet_string,
    encode_structure,
)
from kms.dlms.general_ciphering import AgreedKey
from kms.dlms.key_transfer import KeyArrayRules, KeyId, read_key_entries, repeated_key_id
from kms.dlms.suites import SecuritySuite
from kms.errors import InputError

__all__ = [
    "MAX_KEY_AGREEMENT_ENTRIES",
    "METHOD_KEY_AGREEMENT",
    "KeyAgreementEntry",
    "KeyAgreementRequest",
    "KeyAgreementScheme",
    "agreed_key_scheme",
    "coordinate_length",
    "ephemeral_key_data",
    "ephemeral_signed_data",
    "key_agreement_request",
    "key_agreement_response_data",
    "one_pass_agreed_key",
    "one_pass_key_ciphered_data",
    "one_pass_signed_data",
    "parse_ephemeral_key_data",
    "parse_key_agreement_request",
    "parse_key_agreement_response_data",
    "parse_one_pass_key_ciphered_data",
    "public_key_length",
    "signature_length",
    "static_unified_agreed_key",
]

METHOD_KEY_AGREEMENT = 3
MAX_KEY_AGREEMENT_ENTRIES = 4

# x || y || r || s: 4 coordinates of P-256 (suite 1) or P-384 (suite 2).
_KEY_DATA_LENGTHS = {
    128: SecuritySuite.ECDH_ECDSA_AES_GCM_128_SHA_256,
    192: SecuritySuite.ECDH_ECDSA_AES_GCM_256_SHA_384,
}
_PUBLIC_KEY_LENGTHS = (64, 96)


class KeyAgreementScheme(enum.IntEnum):
    """The key agreement schemes of the Green Book (NIST SP 800-56A names); in general-ciphering
    the value is the key-parameters byte of an agreed-key."""

    EPHEMERAL_UNIFIED_MODEL = 0
    ONE_PASS_DIFFIE_HELLMAN = 1
    STATIC_UNIFIED_MODEL = 2


def coordinate_length(suite: SecuritySuite) -> int:
    """Bytes of one coordinate or one signature half: 32 (P-256, suite 1) or 48 (P-384, suite 2).

    Suite 0 has no public-key algorithms: :class:`~kms.errors.InputError`.
    """
    if isinstance(suite, bool) or not isinstance(suite, int):
        raise TypeError(f"suite must be a SecuritySuite, not {type(suite).__name__}")
    if suite == SecuritySuite.ECDH_ECDSA_AES_GCM_128_SHA_256:
        return 32
    if suite == SecuritySuite.ECDH_ECDSA_AES_GCM_256_SHA_384:
        return 48
    raise InputError(
        f"security suite {int(suite)} has no public-key algorithms; expected 1 or 2",
        field="security_suite",
    )


def public_key_length(suite: SecuritySuite) -> int:
    """An uncompressed public key x || y on the wire: 64 (suite 1) or 96 (suite 2) bytes."""
    return 2 * coordinate_length(suite)


def signature_length(suite: SecuritySuite) -> int:
    """A raw ECDSA signature r || s: 64 (suite 1) or 96 (suite 2) bytes."""
    return 2 * coordinate_length(suite)


# --- the signed ephemeral key ------------------------------------------------------------------


def ephemeral_signed_data(key_id: KeyId, ephemeral_public_key: bytes) -> bytes:
    """What the signature of a key_agreement entry covers: key_id || x || y (65 or 97 bytes).

    Gurux builds it from the public key's 04 || x || y with the 04 overwritten by the key id.
    """
    key_id = _key_id(key_id)
    return bytes([key_id]) + _public_key(ephemeral_public_key)


def ephemeral_key_data(ephemeral_public_key: bytes, signature: bytes) -> bytes:
    """key_ciphered_data of a key_agreement entry: x || y || r || s, of one curve."""
    public_key = _public_key(ephemeral_public_key)
    if not isinstance(signature, bytes | bytearray | memoryview):
        raise TypeError(f"signature must be bytes, not {type(signature).__name__}")
    if len(signature) != len(public_key):
        raise ValueError(
            f"signature must be {len(public_key)} bytes for a {len(public_key)}-byte public key, "
            f"got {len(signature)}"
        )
    return public_key + bytes(signature)


def parse_ephemeral_key_data(data: bytes, suite: SecuritySuite) -> tuple[bytes, bytes]:
    """``(x || y, r || s)`` of a key_ciphered_data of ``suite``; :class:`~kms.errors.InputError`
    when its length is not 128 (suite 1) or 192 (suite 2). Whether the point is on the curve and
    the signature verifies is for the token (or pyca) to say."""
    return _split_key_data(data, suite, "key_ciphered_data")


# --- key_agreement (method 3) -------------------------------------------------------------------


@dataclass(frozen=True)
class KeyAgreementEntry:
    """One ``key_agreement_data`` structure: which key is agreed, and the signed ephemeral key."""

    key_id: KeyId
    key_ciphered_data: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_id", _key_id(self.key_id))
        data = self.key_ciphered_data
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"key_ciphered_data must be bytes, not {type(data).__name__}")
        object.__setattr__(self, "key_ciphered_data", bytes(data))
        if len(data) not in _KEY_DATA_LENGTHS:
            raise ValueError(
                f"key_ciphered_data for {self.key_id.name} must be 128 or 192 bytes "
                f"(x || y || r || s on P-256 or P-384), got {len(data)}"
            )

    @property
    def suite(self) -> SecuritySuite:
        """The suite whose curve the key and signature are on, by their length."""
        return _KEY_DATA_LENGTHS[len(self.key_ciphered_data)]

    def to_bytes(self) -> bytes:
        """The COSEM Data: ``02 02 16 <key_id> 09 <len> <key_ciphered_data>``."""
        return encode_structure(
            encode_enum(self.key_id), encode_octet_string(self.key_ciphered_data)
        )


@dataclass(frozen=True)
class KeyAgreementRequest:
    """An action-request-normal invoking key_agreement (method 3) on a security setup."""

    invoke_id_and_priority: int
    logical_name: bytes
    entries: tuple[KeyAgreementEntry, ...]

    def __post_init__(self) -> None:
        check_invoke_id_and_priority(self.invoke_id_and_priority)
        object.__setattr__(
            self, "logical_name", check_security_setup_logical_name(self.logical_name)
        )
        entries = _check_entries(self.entries)
        object.__setattr__(self, "entries", entries)

    @property
    def suite(self) -> SecuritySuite:
        """The suite of the entries (one request is one suite)."""
        return self.entries[0].suite

    def to_bytes(self) -> bytes:
        """The APDU: :func:`key_agreement_request` of this request's fields."""
        return security_setup_action_request(
            self.invoke_id_and_priority,
            self.logical_name,
            METHOD_KEY_AGREEMENT,
            encode_array([entry.to_bytes() for entry in self.entries]),
        )


def key_agreement_request(
    entries: Sequence[KeyAgreementEntry],
    *,
    invoke: int = DEFAULT_INVOKE_ID_AND_PRIORITY,
    logical_name: bytes = DEFAULT_SECURITY_SETUP,
) -> bytes:
    """The action-request that asks the security setup ``logical_name`` to agree the keys of
    ``entries``; ``invoke`` is the invoke-id-and-priority byte. A list breaking the module's
    rules is a ``ValueError`` (the KMS builds these)."""
    return KeyAgreementRequest(invoke, logical_name, tuple(entries)).to_bytes()


def parse_key_agreement_request(apdu: bytes) -> KeyAgreementRequest:
    """Parse a key_agreement action-request strictly: :class:`~kms.errors.InputError` naming the
    field and the offset for anything :func:`key_agreement_request` would not write, and nothing
    else for any ``bytes`` input."""
    reader = Reader(apdu, source="key_agreement action-request")
    invoke, logical_name = read_security_setup_action_header(
        reader, METHOD_KEY_AGREEMENT, "key_agreement"
    )
    entries = _read_entries(reader)
    reader.done()
    return KeyAgreementRequest(invoke, logical_name, entries)


def key_agreement_response_data(entries: Sequence[KeyAgreementEntry]) -> bytes:
    """The COSEM Data ``array of key_agreement_data``: the request's parameters, and the return
    data of the server's action-response (its ephemeral keys, signed)."""
    return encode_array([entry.to_bytes() for entry in _check_entries(entries)])


def parse_key_agreement_response_data(data: bytes) -> tuple[KeyAgreementEntry, ...]:
    """The entries of a key_agreement action-response's return data (the COSEM Data after
    ``C7 01 <invoke> 00 01 00``), strictly, with the request's rules."""
    reader = Reader(data, source="key_agreement response data")
    entries = _read_entries(reader)
    reader.done()
    return entries


# --- general-ciphering agreed-key ---------------------------------------------------------------


def one_pass_signed_data(ephemeral_public_key: bytes) -> bytes:
    """What U's signature in a One-Pass DH agreed-key covers: 01 (the key-parameters, the scheme)
    || x || y, as Gurux .NET signs it (``GetEphemeralPublicKeySignature(keyid = 1, ...)``)."""
    return bytes([KeyAgreementScheme.ONE_PASS_DIFFIE_HELLMAN]) + _public_key(ephemeral_public_key)


def one_pass_key_ciphered_data(ephemeral_public_key: bytes, signature: bytes) -> bytes:
    """key-ciphered-data of a One-Pass DH agreed-key: Q_eph x || y || r || s."""
    return ephemeral_key_data(ephemeral_public_key, signature)


def parse_one_pass_key_ciphered_data(data: bytes, suite: SecuritySuite) -> tuple[bytes, bytes]:
    """``(x || y, r || s)`` of a One-Pass DH key-ciphered-data of ``suite``, strictly."""
    return _split_key_data(data, suite, "key_ciphered_data")


def one_pass_agreed_key(ephemeral_public_key: bytes, signature: bytes) -> AgreedKey:
    """The agreed-key of One-Pass DH C(1e,1s): key-parameters 01, the signed ephemeral key."""
    return AgreedKey(
        bytes([KeyAgreementScheme.ONE_PASS_DIFFIE_HELLMAN]),
        one_pass_key_ciphered_data(ephemeral_public_key, signature),
    )


def static_unified_agreed_key() -> AgreedKey:
    """The agreed-key of the Static Unified Model C(0e,2s): key-parameters 02, no data (the
    transaction id of the APDU is the nonce)."""
    return AgreedKey(bytes([KeyAgreementScheme.STATIC_UNIFIED_MODEL]), b"")


def agreed_key_scheme(agreed_key: AgreedKey) -> KeyAgreementScheme:
    """The scheme of a received agreed-key, checked: key-parameters is the one byte 01 or 02,
    and a Static Unified agreed-key carries no key-ciphered-data. Anything else is an
    :class:`~kms.errors.InputError` (the Ephemeral Unified Model is not used in general-ciphering).
    The One-Pass key-ciphered-data's length needs the suite:
    :func:`parse_one_pass_key_ciphered_data`."""
    if not isinstance(agreed_key, AgreedKey):
        raise TypeError(f"agreed_key must be AgreedKey, not {type(agreed_key).__name__}")
    parameters = agreed_key.key_parameters
    if len(parameters) != 1 or parameters[0] not in (
        KeyAgreementScheme.ONE_PASS_DIFFIE_HELLMAN,
        KeyAgreementScheme.STATIC_UNIFIED_MODEL,
    ):
        raise InputError(
            f"key-parameters must be the one byte 01 (one-pass Diffie-Hellman) or 02 (static "
            f"unified model), got {parameters.hex() or 'nothing'}",
            source="agreed-key",
            field="key_parameters",
        )
    scheme = KeyAgreementScheme(parameters[0])
    if scheme is KeyAgreementScheme.STATIC_UNIFIED_MODEL and agreed_key.key_ciphered_data:
        raise InputError(
            f"a static unified model agreed-key carries no key-ciphered-data, got "
            f"{len(agreed_key.key_ciphered_data)} bytes",
            source="agreed-key",
            field="key_ciphered_data",
        )
    return scheme


# --- shared -------------------------------------------------------------------------------------


_KEY_AGREEMENT_DATA_RULES = KeyArrayRules(
    array="key_agreement_data",
    method="key_agreement",
    max_entries=MAX_KEY_AGREEMENT_ENTRIES,
    data_field="key_ciphered_data",
    lengths=_KEY_DATA_LENGTHS,
    length_rule="128 or 192 bytes (x || y || r || s on P-256 or P-384)",
    ids_problem=repeated_key_id,
)


def _read_entries(reader: Reader) -> tuple[KeyAgreementEntry, ...]:
    pairs = read_key_entries(reader, _KEY_AGREEMENT_DATA_RULES)
    return tuple(KeyAgreementEntry(key_id, data) for key_id, data in pairs)


def _check_entries(entries: Sequence[KeyAgreementEntry]) -> tuple[KeyAgreementEntry, ...]:
    """The builders' check of the list rules (the parser checks them entry by entry)."""
    entries = tuple(entries)
    if not 1 <= len(entries) <= MAX_KEY_AGREEMENT_ENTRIES:
        raise ValueError(
            f"key_agreement takes 1 to {MAX_KEY_AGREEMENT_ENTRIES} entries, got {len(entries)}"
        )
    for entry in entries:
        if not isinstance(entry, KeyAgreementEntry):
            raise TypeError(f"entries must be KeyAgreementEntry, not {type(entry).__name__}")
    repeated = repeated_key_id([entry.key_id for entry in entries])
    if repeated is not None:
        raise ValueError(repeated)
    if len({len(entry.key_ciphered_data) for entry in entries}) > 1:
        raise ValueError("key_ciphered_data values differ in length (one request is one suite)")
    return entries


def _split_key_data(data: bytes, suite: SecuritySuite, name: str) -> tuple[bytes, bytes]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, not {type(data).__name__}")
    size = public_key_length(suite)
    if len(data) != 2 * size:
        raise InputError(
            f"{name.replace('_', '-')} of suite {int(suite)} must be {2 * size} bytes "
            f"(x || y || r || s), got {len(data)}",
            field=name,
        )
    data = bytes(data)
    return data[:size], data[size:]


def _public_key(value: bytes) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"ephemeral_public_key must be bytes, not {type(value).__name__}")
    if len(value) not in _PUBLIC_KEY_LENGTHS:
        raise ValueError(
            f"ephemeral_public_key must be x || y, 64 (P-256) or 96 (P-384) bytes without the "
            f"04 prefix, got {len(value)}"
        )
    return bytes(value)


def _key_id(value: object) -> KeyId:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"key_id must be a KeyId, not {type(value).__name__}")
    return KeyId(value)
