"""High-level security (HLS) authentication: DLMS UA 1000-2 Ed. 8.x ("Green Book") /
IEC 62056-5-3, clause 9.2 (authentication mechanisms 5, 6 and 7 and the four-pass exchange of
ACSE + reply_to_HLS_authentication); see docs/dlms-security.md section 3 (clause numbers not
checked against a copy of the standard).

The exchange: the client sends its challenge CtoS in the AARQ, the server its challenge StoC in
the AARE; the client proves itself with f(StoC) in an ACTION on the association object
(0.0.40.0.0.255, method 1) and the server answers f(CtoS).

* Mechanism 5 (HLS-GMAC): f(StoC) = SC || IC_C || GMAC(EK, ST_C || IC_C, SC || AK || StoC), and
  f(CtoS) the same with the server's system title and IC over CtoS; SC = 0x10 | suite, so
  f is 17 bytes. The GMAC is GCM with an empty plaintext: :func:`gmac_response` reuses
  :func:`kms.dlms.protection.protect` in authentication-only mode with the challenge as the
  "APDU", which is exactly that.
* Mechanism 6 (HLS-SHA-256): f(StoC) = SHA-256(secret || ST_C || ST_S || StoC || CtoS) and
  f(CtoS) = SHA-256(secret || ST_S || ST_C || CtoS || StoC). :func:`sha256_message` builds the
  part after the secret; the secret itself is hashed in the token (``C_DigestKey``).
  (jDLMS computes SHA-256(challenge || AK), an older variant that is not this mechanism.)
* Mechanism 7 (HLS-ECDSA): f(StoC) = ECDSA_C(ST_C || ST_S || StoC || CtoS) and
  f(CtoS) = ECDSA_S(ST_S || ST_C || CtoS || StoC), the same input as mechanism 6 without the
  secret, signed with each party's digital-signature key (certificate type 0): SHA-256 and P-256
  in suite 1, SHA-384 and P-384 in suite 2, the signature raw r || s
  (:func:`ecdsa_response_length` bytes). :func:`ecdsa_message` builds the signed bytes; the
  signing and the verifying are the token's (or pyca's). gurux-dlms 1.0.203 signs and verifies
  exactly these bytes (``GXDLMSClient.getApplicationAssociationRequest`` and
  ``parseApplicationAssociationResponse``).

Challenges are 8 to 64 bytes (32 to 64 for mechanism 7: :func:`ecdsa_message` checks both).

Exports: :class:`Mechanism`, :data:`MIN_CHALLENGE`, :data:`MAX_CHALLENGE`,
:data:`MIN_ECDSA_CHALLENGE`, :func:`check_challenge`, :func:`gmac_response`,
:func:`parse_gmac_response`, :func:`verify_gmac_response`, :func:`sha256_message`,
:func:`ecdsa_message`, :func:`ecdsa_response_length`.
"""

from __future__ import annotations

import enum

from kms.dlms.axdr import Reader
from kms.dlms.key_agreement import signature_length
from kms.dlms.protection import TAG_LENGTH, AuthenticatedEncryption, protect, unprotect
from kms.dlms.security_control import SecurityControl, read_security_header
from kms.dlms.suites import SecuritySuite
from kms.dlms.system_title import SYSTEM_TITLE_LENGTH
from kms.errors import InputError

__all__ = [
    "MAX_CHALLENGE",
    "MIN_CHALLENGE",
    "MIN_ECDSA_CHALLENGE",
    "Mechanism",
    "check_challenge",
    "ecdsa_message",
    "ecdsa_response_length",
    "gmac_response",
    "parse_gmac_response",
    "sha256_message",
    "verify_gmac_response",
]

MIN_CHALLENGE = 8
MAX_CHALLENGE = 64
MIN_ECDSA_CHALLENGE = 32
#: SC || IC || T of mechanism 5.
GMAC_RESPONSE_LENGTH = 5 + TAG_LENGTH


class Mechanism(enum.IntEnum):
    """HLS mechanism ids: the last arc of mechanism-name 2.16.756.5.8.2.x."""

    HLS_GMAC = 5
    HLS_SHA256 = 6
    HLS_ECDSA = 7

    @property
    def mechanism_name(self) -> str:
        """The dotted OID of the AARQ's mechanism-name."""
        return f"2.16.756.5.8.2.{int(self)}"


def check_challenge(challenge: bytes, mechanism: Mechanism, field: str = "challenge") -> bytes:
    """``challenge`` as bytes, or :class:`~kms.errors.InputError` if its length is out of range."""
    if not isinstance(challenge, bytes | bytearray | memoryview):
        raise TypeError(f"{field} must be bytes, not {type(challenge).__name__}")
    low = MIN_ECDSA_CHALLENGE if mechanism is Mechanism.HLS_ECDSA else MIN_CHALLENGE
    if not low <= len(challenge) <= MAX_CHALLENGE:
        raise InputError(
            f"a challenge for mechanism {int(mechanism)} is {low} to {MAX_CHALLENGE} bytes, "
            f"got {len(challenge)}",
            field=field,
        )
    return bytes(challenge)


def gmac_response(
    cipher: AuthenticatedEncryption,
    suite: SecuritySuite,
    system_title: bytes,
    invocation_counter: int,
    authentication_key: bytes | bytearray,
    challenge: bytes,
) -> bytes:
    """f(challenge) of mechanism 5: SC || IC || GMAC, 17 bytes, by the responder.

    ``system_title`` and ``invocation_counter`` are the responder's own.
    """
    sc = _gmac_security_control(suite)
    tagged = protect(cipher, sc, system_title, invocation_counter, authentication_key, challenge)
    tag = tagged[len(challenge) :]
    return bytes([sc.to_byte()]) + invocation_counter.to_bytes(4, "big") + tag


def parse_gmac_response(data: bytes) -> tuple[SecurityControl, int, bytes]:
    """``(SC, IC, tag)`` of a mechanism 5 response, strictly.

    The SC must say authentication only, unicast, no compression: anything else is an
    :class:`~kms.errors.InputError` naming the field and offset.
    """
    reader = Reader(data, source="HLS-GMAC response")
    sc_at = reader.offset
    security_control, invocation_counter = read_security_header(reader)
    if security_control.to_byte() & 0xF0 != 0x10:
        raise reader.error(
            f"security control 0x{security_control.to_byte():02x} is not authentication only "
            "(0x10 | suite)",
            "security_control",
            sc_at,
        )
    tag = reader.take(TAG_LENGTH, "tag")
    reader.done()
    return security_control, invocation_counter, tag


def verify_gmac_response(
    cipher: AuthenticatedEncryption,
    suite: SecuritySuite,
    system_title: bytes,
    authentication_key: bytes | bytearray,
    challenge: bytes,
    response: bytes,
) -> int:
    """Check f(challenge) from the peer whose system title is ``system_title``; its IC.

    Raises :class:`~kms.errors.InputError` for a malformed response or another suite, and
    :class:`~kms.errors.InvalidTag` when the GMAC does not verify. The caller checks the IC
    against its receive floor.
    """
    security_control, invocation_counter, tag = parse_gmac_response(response)
    if security_control.suite is not suite:
        raise InputError(
            f"the response names suite {int(security_control.suite)}, the association uses "
            f"suite {int(suite)}",
            field="security_control",
        )
    unprotect(
        cipher,
        security_control,
        system_title,
        invocation_counter,
        authentication_key,
        challenge + tag,
    )
    return invocation_counter


def sha256_message(
    own_system_title: bytes,
    peer_system_title: bytes,
    peer_challenge: bytes,
    own_challenge: bytes,
) -> bytes:
    """What follows the secret in mechanism 6's hash, as the responder computes it.

    The client answering StoC passes (ST_C, ST_S, StoC, CtoS); the server answering CtoS passes
    (ST_S, ST_C, CtoS, StoC). The secret is prepended in the token.
    """
    return _hls_message(own_system_title, peer_system_title, peer_challenge, own_challenge)


def ecdsa_message(
    own_system_title: bytes,
    peer_system_title: bytes,
    peer_challenge: bytes,
    own_challenge: bytes,
) -> bytes:
    """The bytes mechanism 7's responder signs, in the order of :func:`sha256_message`.

    The client answering StoC passes (ST_C, ST_S, StoC, CtoS), which gives f(StoC)'s
    ST_C || ST_S || StoC || CtoS; the server answering CtoS passes (ST_S, ST_C, CtoS, StoC). The
    verifier of f() builds the same bytes from the signer's side. Both challenges must be 32 to
    64 bytes (:class:`~kms.errors.InputError` naming ``peer_challenge`` or ``own_challenge``): a
    short challenge weakens the signature as a proof of freshness.
    """
    check_challenge(peer_challenge, Mechanism.HLS_ECDSA, "peer_challenge")
    check_challenge(own_challenge, Mechanism.HLS_ECDSA, "own_challenge")
    return _hls_message(own_system_title, peer_system_title, peer_challenge, own_challenge)


def ecdsa_response_length(suite: SecuritySuite) -> int:
    """Length of f() in mechanism 7: a raw r || s, 64 bytes (suite 1) or 96 (suite 2).

    Suite 0 has no signatures: :class:`~kms.errors.InputError`.
    """
    return signature_length(suite)


def _hls_message(
    own_system_title: bytes,
    peer_system_title: bytes,
    peer_challenge: bytes,
    own_challenge: bytes,
) -> bytes:
    for name, title in (("own", own_system_title), ("peer", peer_system_title)):
        if len(title) != SYSTEM_TITLE_LENGTH:
            raise ValueError(f"{name} system title must be 8 bytes, got {len(title)}")
    return (
        bytes(own_system_title)
        + bytes(peer_system_title)
        + bytes(peer_challenge)
        + bytes(own_challenge)
    )


def _gmac_security_control(suite: SecuritySuite) -> SecurityControl:
    return SecurityControl(
        compression=False,
        broadcast=False,
        encryption=False,
        authentication=True,
        suite=SecuritySuite(suite),
    )
