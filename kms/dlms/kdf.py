"""The key derivation function of DLMS key agreement: DLMS UA 1000-2 Ed. 8.x ("Green Book") /
IEC 62056-5-3, clause 9.2 (key agreement of security suites 1 and 2, and its table of
cryptographic algorithm ids), which uses the single-step concatenation KDF of NIST SP 800-56A
(Rev. 2 and 3, section 5.8.1 / 4.1, "one-step key derivation" with a hash); see
docs/dlms-security.md section 5 (clause and table numbers not checked against a copy of the
standard).

After an ECDH step gives the shared secret Z (the x-coordinate of the shared point, 32 bytes on
P-256, 48 on P-384), the key is::

    DerivedKey = leftmost keydatalen bits of Hash(counter || Z || OtherInfo)
    counter    = 00 00 00 01 (one hash block is always enough here)
    Hash       = SHA-256 (suite 1) or SHA-384 (suite 2); keydatalen = 128 or 256 bits
    OtherInfo  = AlgorithmID || PartyUInfo || PartyVInfo, concatenated with no length prefixes

AlgorithmID is the DER *content* of the OID 2.16.756.5.8.3.n, ``60 85 74 05 08 03 nn``, n naming
the algorithm the derived key is for (:class:`AlgorithmId`). The party infos depend on the scheme
(:mod:`kms.dlms.key_agreement`), as Gurux .NET (``GXSecure.GenerateKDF`` and its callers) and
Java (``GXSecure.generateKDF``) build them and GBCS words the Static Unified one:

* One-Pass Diffie-Hellman C(1e,1s): ST_U || ST_V (originator, recipient)
  (:func:`other_info_one_pass`);
* Static Unified Model C(0e,2s): ST_U || len(transaction-id) || transaction-id || ST_V
  (:func:`other_info_static_unified`);
* Ephemeral Unified Model C(2e,0s) of security setup method 3: ST_client || ST_server
  (:func:`other_info_ephemeral_unified`).

Which AlgorithmID applies when the agreed key is a key-encrypting key (AES-WRAP-*) is not settled
[U, notes section 10]; :func:`algorithm_id_for` offers ``wrap=True`` and the caller decides. Gurux
keeps only 16 bytes of the KDF output even in suite 2 and always uses AES-GCM-128 in the
Ephemeral Unified Model; this module does neither (notes section 5).

Why :data:`COUNTER` and the OtherInfo builders are exposed apart from :func:`concat_kdf`: on a
token without an in-token KDF the hash runs over ``COUNTER``, then Z as a key object
(``C_DigestKey``), then OtherInfo, so the bytes around Z are handed over separately, and
:func:`derived_key` cuts the digest to the key length. :func:`concat_kdf` is the same computation
on the host, for tests and for peers' public data only: Z is a secret.

A suite other than 1 or 2 (suite 0 has no key agreement) and a system title or transaction id of
the wrong length raise :class:`~kms.errors.InputError` naming the field; a shared secret or digest
of the wrong length is a caller bug (``ValueError``).

Exports: :class:`AlgorithmId`, :func:`algorithm_id_for`, :data:`COUNTER`,
:data:`TRANSACTION_ID_LENGTH`, :func:`kdf_hash_name`, :func:`derived_key_length`,
:func:`shared_secret_length`, :func:`other_info_one_pass`, :func:`other_info_static_unified`,
:func:`other_info_ephemeral_unified`, :func:`concat_kdf`, :func:`derived_key`.
"""

from __future__ import annotations

import enum
import hashlib

from kms.dlms.suites import SecuritySuite
from kms.dlms.system_title import SYSTEM_TITLE_LENGTH
from kms.errors import InputError

__all__ = [
    "COUNTER",
    "TRANSACTION_ID_LENGTH",
    "AlgorithmId",
    "algorithm_id_for",
    "concat_kdf",
    "derived_key",
    "derived_key_length",
    "kdf_hash_name",
    "other_info_ephemeral_unified",
    "other_info_one_pass",
    "other_info_static_unified",
    "shared_secret_length",
]

#: The 32-bit big-endian counter of the single hash block: 00 00 00 01.
COUNTER: bytes = b"\x00\x00\x00\x01"
#: The transaction id that plays Nonce_U in the Static Unified Model (general-ciphering).
TRANSACTION_ID_LENGTH = 8

# DER content of OID 2.16.756.5.8.3 (DLMS UA cryptographic algorithm ids), without the last arc.
_ALGORITHM_ID_ARCS = bytes.fromhex("608574050803")


class AlgorithmId(enum.IntEnum):
    """The last arc of the cryptographic algorithm id 2.16.756.5.8.3.n: what the key is for."""

    AES_GCM_128 = 0
    AES_GCM_256 = 1
    AES_WRAP_128 = 2
    AES_WRAP_256 = 3

    @property
    def der_content(self) -> bytes:
        """AlgorithmID of OtherInfo: the 7 content bytes of the OID's DER, ``60 85 74 05 08 03 nn``
        (no tag, no length; the GBCS copy's ``...7406...`` is taken for a typo)."""
        return _ALGORITHM_ID_ARCS + bytes([self])


def algorithm_id_for(suite: SecuritySuite, *, wrap: bool = False) -> AlgorithmId:
    """The AlgorithmID of a key agreed in ``suite``: AES-GCM by default, AES key wrap when the
    agreed key is a key-encrypting key and ``wrap`` is set; 128-bit in suite 1, 256 in suite 2."""
    if _suite(suite) is SecuritySuite.ECDH_ECDSA_AES_GCM_128_SHA_256:
        return AlgorithmId.AES_WRAP_128 if wrap else AlgorithmId.AES_GCM_128
    return AlgorithmId.AES_WRAP_256 if wrap else AlgorithmId.AES_GCM_256


def kdf_hash_name(suite: SecuritySuite) -> str:
    """The ``hashlib`` name of the KDF's hash: ``"sha256"`` (suite 1) or ``"sha384"`` (suite 2)."""
    return "sha256" if _suite(suite) is SecuritySuite.ECDH_ECDSA_AES_GCM_128_SHA_256 else "sha384"


def derived_key_length(suite: SecuritySuite) -> int:
    """keydatalen in bytes: 16 (suite 1) or 32 (suite 2), the suite's symmetric key length."""
    return _suite(suite).key_length


def shared_secret_length(suite: SecuritySuite) -> int:
    """The length of Z: the field size of the suite's curve, 32 (P-256) or 48 (P-384) bytes."""
    return 32 if _suite(suite) is SecuritySuite.ECDH_ECDSA_AES_GCM_128_SHA_256 else 48


def other_info_one_pass(
    algorithm_id: AlgorithmId,
    originator_system_title: bytes,
    recipient_system_title: bytes,
) -> bytes:
    """OtherInfo of One-Pass Diffie-Hellman C(1e,1s): AlgorithmID || ST_U || ST_V.

    U is the originator of the general-ciphering APDU (it holds the ephemeral key), V the
    recipient (its static key-agreement key).
    """
    return (
        _algorithm_id(algorithm_id).der_content
        + _system_title(originator_system_title, "originator_system_title")
        + _system_title(recipient_system_title, "recipient_system_title")
    )


def other_info_static_unified(
    algorithm_id: AlgorithmId,
    originator_system_title: bytes,
    transaction_id: bytes,
    recipient_system_title: bytes,
) -> bytes:
    """OtherInfo of the Static Unified Model C(0e,2s):
    AlgorithmID || ST_U || len(transaction-id) || transaction-id || ST_V.

    The transaction id (8 bytes, so the length byte is 08) stands in for Nonce_U: with two static
    keys it is the only thing that makes two agreed keys differ, so the KMS never repeats one
    under the same pair of keys.
    """
    if not isinstance(transaction_id, bytes | bytearray | memoryview):
        raise TypeError(f"transaction_id must be bytes, not {type(transaction_id).__name__}")
    if len(transaction_id) != TRANSACTION_ID_LENGTH:
        raise InputError(
            f"transaction-id must be {TRANSACTION_ID_LENGTH} bytes, got {len(transaction_id)}",
            field="transaction_id",
        )
    return (
        _algorithm_id(algorithm_id).der_content
        + _system_title(originator_system_title, "originator_system_title")
        + bytes([TRANSACTION_ID_LENGTH])
        + bytes(transaction_id)
        + _system_title(recipient_system_title, "recipient_system_title")
    )


def other_info_ephemeral_unified(
    algorithm_id: AlgorithmId,
    client_system_title: bytes,
    server_system_title: bytes,
) -> bytes:
    """OtherInfo of the Ephemeral Unified Model C(2e,0s) (security setup method 3):
    AlgorithmID || ST_client || ST_server, the same bytes on both sides (Gurux .NET's client and
    Java's server both put the client's title first)."""
    return (
        _algorithm_id(algorithm_id).der_content
        + _system_title(client_system_title, "client_system_title")
        + _system_title(server_system_title, "server_system_title")
    )


def concat_kdf(suite: SecuritySuite, shared_secret: bytes, other_info: bytes) -> bytes:
    """DerivedKey = leftmost :func:`derived_key_length` bytes of
    Hash(:data:`COUNTER` || ``shared_secret`` || ``other_info``), computed on the host.

    Equal to pyca's ``ConcatKDFHash(hash, length, otherinfo)`` for these lengths. ``other_info``
    is carried as given: build it with one of the ``other_info_*`` functions.
    """
    suite = _suite(suite)
    if not isinstance(shared_secret, bytes | bytearray | memoryview):
        raise TypeError(f"shared_secret must be bytes, not {type(shared_secret).__name__}")
    if len(shared_secret) != shared_secret_length(suite):
        raise ValueError(
            f"shared_secret (Z) of suite {int(suite)} is {shared_secret_length(suite)} bytes, "
            f"got {len(shared_secret)}"
        )
    if not isinstance(other_info, bytes | bytearray | memoryview):
        raise TypeError(f"other_info must be bytes, not {type(other_info).__name__}")
    digest = hashlib.new(kdf_hash_name(suite), COUNTER + bytes(shared_secret) + bytes(other_info))
    return derived_key(suite, digest.digest())


def derived_key(suite: SecuritySuite, digest: bytes) -> bytes:
    """The key in a finished KDF hash ``digest`` (from a token's ``C_DigestFinal``): its leftmost
    :func:`derived_key_length` bytes. A digest of the wrong length is a ``ValueError``."""
    suite = _suite(suite)
    if not isinstance(digest, bytes | bytearray | memoryview):
        raise TypeError(f"digest must be bytes, not {type(digest).__name__}")
    expected = hashlib.new(kdf_hash_name(suite)).digest_size
    if len(digest) != expected:
        raise ValueError(f"a {kdf_hash_name(suite)} digest is {expected} bytes, got {len(digest)}")
    return bytes(digest[: derived_key_length(suite)])


def _suite(suite: SecuritySuite) -> SecuritySuite:
    if isinstance(suite, bool) or not isinstance(suite, int):
        raise TypeError(f"suite must be a SecuritySuite, not {type(suite).__name__}")
    if suite not in (
        SecuritySuite.ECDH_ECDSA_AES_GCM_128_SHA_256,
        SecuritySuite.ECDH_ECDSA_AES_GCM_256_SHA_384,
    ):
        raise InputError(
            f"security suite {int(suite)} has no key agreement; expected 1 or 2",
            field="security_suite",
        )
    return SecuritySuite(suite)


def _algorithm_id(algorithm_id: AlgorithmId) -> AlgorithmId:
    if isinstance(algorithm_id, bool) or not isinstance(algorithm_id, int):
        raise TypeError(f"algorithm_id must be an AlgorithmId, not {type(algorithm_id).__name__}")
    try:
        return AlgorithmId(algorithm_id)
    except ValueError:
        raise ValueError(f"algorithm_id must be 0..3, got {algorithm_id}") from None


def _system_title(value: bytes, name: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    if len(value) != SYSTEM_TITLE_LENGTH:
        raise InputError(
            f"{name.replace('_', '-')} must be {SYSTEM_TITLE_LENGTH} bytes, got {len(value)}",
            field=name,
        )
    return bytes(value)
