"""HLS authentication of the head-end to a meter and back, in the token (seed step 7).

The head-end (client) opens an association: it sends its challenge CtoS (:meth:`challenge`,
from the token's random number generator), receives the meter's StoC in the AARE, answers
f(StoC) (:meth:`answer`) and checks the meter's f(CtoS) (:meth:`check`). Formulas and layouts:
:mod:`kms.dlms.hls`.

* Mechanism 5 (HLS-GMAC) runs GCM in the token under the meter's ACTIVE GUEK, with the GAK in
  the AAD, exactly as APDU protection does and sharing its keys and counters
  (:mod:`kms.services.hes.keys_in_use`): the head-end's f(StoC) takes the next
  sending invocation counter (IC) of the GUEK, and the meter's IC in f(CtoS) must be above the
  last one accepted under that GUEK; the floor moves once the GMAC verified.
* Mechanism 6 (HLS-SHA-256) hashes the setup's HLS secret (``kms hls secret import``) in the
  token with ``C_DigestKey``. On a token whose RFC 5649 unwrap keeps the padding (SoftHSM 2.6.1,
  profile flag ``wrap_pad_unwrap_keeps_padding``), a secret whose length RFC 3394 cannot wrap is
  hashed on the host instead, and the audit record of its use says ``host_hash``.
* Mechanism 7 (HLS-ECDSA) signs with the head-end's own signing key (a token key pair of
  ``kms entity create --type signing`` on the suite's curve) and verifies the meter's f(CtoS)
  with the public key of the meter's newest valid signing certificate; f is a raw r || s over
  ST || ST' || challenge || challenge' (:func:`kms.dlms.hls.ecdsa_message`), hashed on the host
  (SHA-256 or SHA-384 by curve) and signed in the token.

A response that does not verify raises :class:`~kms.errors.AuthenticationFailed`, saying nothing
of why; malformed input names its field.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass
from typing import Protocol

from kms.config import Config
from kms.db import Database, KeyRole
from kms.dlms import hls
from kms.dlms.hls import Mechanism
from kms.errors import (
    AuthenticationFailed,
    InputError,
    InvalidSignature,
    InvalidTag,
    KeyStateError,
)
from kms.hsm import Hsm, SessionKey
from kms.pki import ecdsa, profiles
from kms.pki.profiles import CertificateType
from kms.services.common import peers
from kms.services.hes.invocation_counters import InvocationCounters
from kms.services.hes.key_refs import KeyRef, SetupKeys
from kms.services.hes.keys_in_use import KeysInUse
from kms.services.hes.setup_keys import SetupKeyCache

__all__ = ["HlsAnswer", "HlsAuthentication", "TokenHlsAuthentication", "hls_factory"]


@dataclass(frozen=True)
class HlsAnswer:
    """f(challenge), and for mechanism 5 the invocation counter it used."""

    response: bytes
    invocation_counter: int | None


class HlsAuthentication(Protocol):
    """The head-end's side of HLS mechanisms 5 and 6."""

    def challenge(self, length: int = 16) -> bytes:
        """A fresh CtoS from the token's random number generator (8 to 64 bytes)."""
        ...

    def answer(
        self,
        system_title: bytes,
        mechanism: Mechanism,
        server_challenge: bytes,
        client_challenge: bytes,
        *,
        setup: int = 0,
        actor: str,
    ) -> HlsAnswer:
        """f(StoC) for the meter ``system_title`` (``client_challenge`` is CtoS, used by
        mechanisms 6 and 7); a key unwrapped or a block of ICs reserved for it is audited as
        ``actor``."""
        ...

    def check(
        self,
        system_title: bytes,
        mechanism: Mechanism,
        client_challenge: bytes,
        server_challenge: bytes,
        response: bytes,
        *,
        setup: int = 0,
        actor: str,
    ) -> int | None:
        """Check the meter's f(CtoS); for mechanism 5 returns the meter's IC (now accepted).
        Raises :class:`~kms.errors.AuthenticationFailed` when it does not verify. A key
        unwrapped for it is audited as ``actor``."""
        ...


class TokenHlsAuthentication:
    """:class:`HlsAuthentication` with every secret in the token (module docstring)."""

    def __init__(
        self,
        hsm: Hsm,
        db: Database,
        setups: SetupKeyCache,
        counters: InvocationCounters,
        lock: threading.RLock,
        config: Config,
    ) -> None:
        self._hsm = hsm
        self._db = db
        self._setups = setups
        self._counters = counters
        self._lock = lock
        self._config = config

    def challenge(self, length: int = 16) -> bytes:
        if not hls.MIN_CHALLENGE <= length <= hls.MAX_CHALLENGE:
            raise InputError(
                f"a challenge is {hls.MIN_CHALLENGE} to {hls.MAX_CHALLENGE} bytes, got {length}",
                field="length",
            )
        with self._lock:
            return self._hsm.random(length)

    def answer(
        self,
        system_title: bytes,
        mechanism: Mechanism,
        server_challenge: bytes,
        client_challenge: bytes,
        *,
        setup: int = 0,
        actor: str,
    ) -> HlsAnswer:
        _supported(mechanism)
        client = self._config.require_client_system_title()
        stoc = hls.check_challenge(server_challenge, mechanism, "server_challenge")
        keys = self._setups.setup(system_title, setup)
        if mechanism is Mechanism.HLS_GMAC:
            ek_ref, ak_ref = keys.key(KeyRole.GUEK), keys.key(KeyRole.GAK)
            with self._lock:
                ek, ak = self._setups.keys_for(ek_ref, ak_ref, actor=actor)
                ic = self._counters.next_send_ic(ek_ref, actor=actor)
                response = hls.gmac_response(self._hsm.aead(ek), keys.suite, client, ic, ak, stoc)
            return HlsAnswer(response, ic)
        ctos = hls.check_challenge(client_challenge, mechanism, "client_challenge")
        if mechanism is Mechanism.HLS_ECDSA:
            message = hls.ecdsa_message(client, system_title, stoc, ctos)
            curve = profiles.curve_for_suite(keys.suite)
            with self._db.begin() as session:
                own = peers.own_key(session, client, CertificateType.DIGITAL_SIGNATURE, curve)
            with self._lock:
                signature = self._hsm.sign_digest(own.key, ecdsa.digest(curve, message))
            return HlsAnswer(signature, None)
        message = hls.sha256_message(client, system_title, stoc, ctos)
        return HlsAnswer(self._sha256(keys, message, actor), None)

    def check(
        self,
        system_title: bytes,
        mechanism: Mechanism,
        client_challenge: bytes,
        server_challenge: bytes,
        response: bytes,
        *,
        setup: int = 0,
        actor: str,
    ) -> int | None:
        _supported(mechanism)
        client = self._config.require_client_system_title()
        ctos = hls.check_challenge(client_challenge, mechanism, "client_challenge")
        keys = self._setups.setup(system_title, setup)
        if mechanism is Mechanism.HLS_GMAC:
            return self._check_gmac(keys, ctos, response, actor)
        stoc = hls.check_challenge(server_challenge, mechanism, "server_challenge")
        if mechanism is Mechanism.HLS_ECDSA:
            self._check_ecdsa(keys, client, ctos, stoc, response)
            return None
        expected = self._sha256(keys, hls.sha256_message(system_title, client, ctos, stoc), actor)
        if not hmac.compare_digest(expected, bytes(response)):
            raise AuthenticationFailed("the meter's HLS-SHA-256 response did not verify")
        return None

    def _check_gmac(self, keys: SetupKeys, ctos: bytes, response: bytes, actor: str) -> int:
        ek_ref, ak_ref = keys.key(KeyRole.GUEK), keys.key(KeyRole.GAK)
        _, ic, _ = hls.parse_gmac_response(response)
        self._counters.check_received(ek_ref, ic)
        with self._lock:
            ek, ak = self._setups.keys_for(ek_ref, ak_ref, actor=actor)
            try:
                hls.verify_gmac_response(
                    self._hsm.aead(ek), keys.suite, keys.system_title, ak, ctos, response
                )
            except InvalidTag:
                raise AuthenticationFailed("the meter's HLS-GMAC response did not verify") from None
        self._counters.accept_received(ek_ref, ic)
        return ic

    def _check_ecdsa(
        self, keys: SetupKeys, client: bytes, ctos: bytes, stoc: bytes, response: bytes
    ) -> None:
        message = hls.ecdsa_message(keys.system_title, client, ctos, stoc)
        curve = profiles.curve_for_suite(keys.suite)
        with self._db.begin() as session:
            public_key, _serial = peers.peer_public_key(
                session, keys.system_title, CertificateType.DIGITAL_SIGNATURE, curve
            )
        if len(response) != hls.ecdsa_response_length(keys.suite):
            raise AuthenticationFailed("the meter's HLS-ECDSA response did not verify")
        try:
            ecdsa.verify(
                public_key,
                ecdsa.der_from_raw(bytes(response)),
                message,
                ecdsa.hash_for_curve(curve),
            )
        except InvalidSignature:
            raise AuthenticationFailed("the meter's HLS-ECDSA response did not verify") from None

    def _sha256(self, keys: SetupKeys, message: bytes, actor: str) -> bytes:
        ref: KeyRef = keys.key(KeyRole.HLS_SECRET)
        # No counters to reserve here: read the secret's state each time. A new import retires
        # the version this process holds; the meter's keys are then loaded again, once.
        try:
            self._setups.require_active(ref)
        except KeyStateError:
            keys = self._setups.setup(keys.system_title, keys.logical_name[4])
            ref = keys.key(KeyRole.HLS_SECRET)
            self._setups.require_active(ref)
        with self._lock:
            secret = self._setups.hls_secret(ref, actor=actor)
            if isinstance(secret, SessionKey):
                return self._hsm.digest_secret(secret, message)
            return _host_sha256(secret, message)

    def close(self) -> None:
        """Destroy every key this service unwrapped and forget its counter blocks (the keys
        and counters are shared with the process's APDU service, if it has one)."""
        self._counters.close()
        self._setups.close()


def _host_sha256(secret: bytearray, message: bytes) -> bytes:
    """The profile's audited fallback (module docstring): the hash of secret || message."""
    digest = hashlib.sha256()
    digest.update(secret)
    digest.update(message)
    return digest.digest()


def _supported(mechanism: Mechanism) -> None:
    if not isinstance(mechanism, Mechanism):
        raise TypeError(f"mechanism must be a Mechanism, not {type(mechanism).__name__}")


def hls_factory(keys: KeysInUse, config: Config) -> TokenHlsAuthentication:
    """The HLS service of a process, sharing ``keys`` with its APDU service."""
    return TokenHlsAuthentication(
        keys.hsm, keys.database, keys.setups, keys.counters, keys.lock, config
    )
