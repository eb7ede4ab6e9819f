"""general-ciphering (0xDD) with an agreed key: each APDU ciphered under a key agreed for it
alone, One-Pass Diffie-Hellman C(1e, 1s) or Static Unified Model C(0e, 2s) (docs/dlms-security.md
sections 2.6 and 5; Green Book general-ciphering with key-info agreed-key).

Protect (the head-end, U, to a meter, V):

* C(1e, 1s): an ephemeral key pair in the token (session object, derive only), its x || y signed
  with the head-end's signing key over 01 || x || y; Z = ECDH(ephemeral, the meter's static
  key-agreement key from its certificate); OtherInfo = AlgorithmID || ST_U || ST_V.
* C(0e, 2s): Z = ECDH(the head-end's static key-agreement key, the meter's);
  OtherInfo = AlgorithmID || ST_U || len || transaction-id || ST_V; key-ciphered-data is empty
  and the transaction id (8 random bytes from the token) is the nonce.

The KDF runs where the HSM profile says (:meth:`kms.hsm.Hsm.agree_key`); the agreed key is a
sensitive session object used once for GCM and destroyed. Every agreement is audited, with where
its KDF ran. Verify is the mirror image for what a
meter sends (U = the meter): its ephemeral key's signature checked against its signing
certificate (1e1s), or its static key-agreement certificate (0e2s).

Choices where the sources are silent or disagree [U, notes section 10], to be checked against a
meter: the AAD is SC || AK || the five A-XDR fields before key-info (the Green Book form as
GBREF quotes it, :func:`kms.dlms.general_ciphering.general_ciphering_aad_fields`); the invocation
counter is the meter's GUEK counter in each direction (a fresh key per APDU needs none, but a
replayed 0e2s APDU derives the same key again: the GUEK's receive floor refuses it); the
AlgorithmID is AES-GCM-128 or -256 by suite.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from kms.config import Config
from kms.db import Database, KeyRole
from kms.dlms import kdf
from kms.dlms.general_ciphering import (
    AgreedKey,
    GeneralCipheringApdu,
    general_ciphering_aad_fields,
    parse_general_ciphering_apdu,
)
from kms.dlms.key_agreement import (
    KeyAgreementScheme,
    agreed_key_scheme,
    one_pass_agreed_key,
    one_pass_signed_data,
    parse_one_pass_key_ciphered_data,
    static_unified_agreed_key,
)
from kms.dlms.protection import protect, unprotect
from kms.dlms.system_title import format_system_title
from kms.errors import AuthenticationFailed, InputError, InvalidSignature
from kms.hsm import Hsm, Key, KeyUse, SessionKey, TokenKey
from kms.pki import ecdsa, profiles
from kms.pki.profiles import CertificateType
from kms.services.common import audit, peers
from kms.services.hes.apdu import ApduResult, check_security_control, check_suite
from kms.services.hes.invocation_counters import InvocationCounters
from kms.services.hes.key_refs import SetupKeys
from kms.services.hes.setup_keys import SetupKeyCache

SCHEMES = {
    "1e1s": KeyAgreementScheme.ONE_PASS_DIFFIE_HELLMAN,
    "0e2s": KeyAgreementScheme.STATIC_UNIFIED_MODEL,
}


@dataclass(frozen=True)
class _Peer:
    """What one APDU's agreement needs from the database: the meter's public keys, ours."""

    curve: str
    meter_agreement_point: bytes
    own_private: TokenKey  # the signing key (1e1s) or our static key-agreement key (0e2s)


class AgreedKeyCiphering:
    """general-ciphering with agreed-key, in the token (module docstring)."""

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

    def protect(
        self,
        system_title: bytes,
        apdu: bytes,
        security_control: int,
        scheme: KeyAgreementScheme,
        *,
        setup: int = 0,
        actor: str,
    ) -> ApduResult:
        """Cipher ``apdu`` for the meter under a key agreed for it alone; the agreement (and a
        new block of ICs, a key unwrapped) is audited as ``actor``."""
        if scheme not in SCHEMES.values():
            raise InputError("general-ciphering agrees keys by 1e1s or 0e2s", field="scheme")
        if not apdu:
            raise InputError("the APDU to protect is empty", field="apdu")
        client = self._config.require_client_system_title()
        sc = check_security_control(security_control)
        setup_keys = self._setups.setup(system_title, setup)
        check_suite(setup_keys, sc)
        one_pass = scheme is KeyAgreementScheme.ONE_PASS_DIFFIE_HELLMAN
        peer = self._peer(setup_keys, client, own_signing=one_pass)
        hsm = self._hsm
        suite = setup_keys.suite
        algorithm = kdf.algorithm_id_for(suite)
        with self._lock:
            transaction_id = hsm.random(8)
            ak = self._ak(setup_keys, sc.authentication, actor)
            ic = self._counters.next_send_ic(setup_keys.key(KeyRole.GUEK), actor=actor)
            ephemeral: SessionKey | None = None
            agreed: SessionKey | None = None
            try:
                if one_pass:
                    ephemeral, point = hsm.generate_ephemeral_key_pair(peer.curve)
                    signed = one_pass_signed_data(point)
                    signature = hsm.sign_digest(peer.own_private, ecdsa.digest(peer.curve, signed))
                    key_info: AgreedKey = one_pass_agreed_key(point, signature)
                    other_info = kdf.other_info_one_pass(algorithm, client, system_title)
                    private: Key = ephemeral
                else:
                    key_info = static_unified_agreed_key()
                    other_info = kdf.other_info_static_unified(
                        algorithm, client, transaction_id, system_title
                    )
                    private = peer.own_private
                result = hsm.agree_key(
                    private,
                    peer.meter_agreement_point,
                    peer.curve,
                    other_info,
                    suite.key_length,
                    KeyUse.EK_FOR_USE,
                )
                agreed = result.key
                header = GeneralCipheringApdu(
                    transaction_id, client, system_title, b"", b"", key_info, sc, ic, b""
                )
                payload = protect(
                    hsm.aead(agreed),
                    sc,
                    client,
                    ic,
                    ak,
                    apdu,
                    extra_aad=general_ciphering_aad_fields(header),
                )
            finally:
                for key in (agreed, ephemeral):
                    if key is not None:
                        hsm.destroy(key)
        ciphered = GeneralCipheringApdu(
            transaction_id, client, system_title, b"", b"", key_info, sc, ic, payload
        )
        self._audit("protect", system_title, scheme, ic, result.kdf_location, actor)
        return ApduResult(ciphered.to_bytes(), client, ic)

    def verify(self, system_title: bytes, apdu: bytes, *, setup: int = 0, actor: str) -> ApduResult:
        """Check and decipher a general-ciphering APDU with agreed-key from the meter; the
        agreement (and a key unwrapped) is audited as ``actor``."""
        client = self._config.require_client_system_title()
        general = parse_general_ciphering_apdu(apdu)
        title = format_system_title(system_title)
        if general.originator_system_title != system_title:
            raise InputError(f"the APDU's originator is not meter {title}", field="system_title")
        if general.recipient_system_title not in (b"", client):
            raise InputError("the APDU is addressed to another system title", field="recipient")
        if not isinstance(general.key_info, AgreedKey):
            raise InputError(
                "only general-ciphering with agreed-key is handled here", field="key_info"
            )
        sc = general.security_control
        if not sc.authentication:
            raise InputError(
                "an agreed-key APDU without authentication carries no tag: refused",
                field="security_control",
            )
        setup_keys = self._setups.setup(system_title, setup)
        check_suite(setup_keys, sc)
        scheme = agreed_key_scheme(general.key_info)
        one_pass = scheme is KeyAgreementScheme.ONE_PASS_DIFFIE_HELLMAN
        # Ours is always the static key-agreement key here: the meter is U.
        peer = self._peer(setup_keys, client, own_signing=False)
        algorithm = kdf.algorithm_id_for(setup_keys.suite)
        if one_pass:
            point, signature = parse_one_pass_key_ciphered_data(
                general.key_info.key_ciphered_data, setup_keys.suite
            )
            self._check_meter_signature(setup_keys, peer.curve, point, signature)
            other_info = kdf.other_info_one_pass(algorithm, system_title, client)
        else:
            point = peer.meter_agreement_point
            other_info = kdf.other_info_static_unified(
                algorithm, system_title, general.transaction_id, client
            )
        guek = setup_keys.key(KeyRole.GUEK)
        hsm = self._hsm
        with self._lock:
            self._counters.check_received(guek, general.invocation_counter)
            ak = self._ak(setup_keys, True, actor)
            result = hsm.agree_key(
                peer.own_private,
                point,
                peer.curve,
                other_info,
                setup_keys.suite.key_length,
                KeyUse.EK_FOR_USE,
            )
            agreed = result.key
            try:
                plain = unprotect(
                    hsm.aead(agreed),
                    sc,
                    system_title,
                    general.invocation_counter,
                    ak,
                    general.payload,
                    extra_aad=general_ciphering_aad_fields(general),
                )
            finally:
                hsm.destroy(agreed)
            self._counters.accept_received(guek, general.invocation_counter)
        self._audit(
            "verify", system_title, scheme, general.invocation_counter, result.kdf_location, actor
        )
        return ApduResult(plain, system_title, general.invocation_counter)

    def _audit(
        self,
        direction: str,
        system_title: bytes,
        scheme: KeyAgreementScheme,
        ic: int,
        kdf_location: str,
        actor: str,
    ) -> None:
        """Each agreement is audited with where its KDF ran (the issue's rule for every use of
        the host fallback; the token-digest path passes the derived key through the host too)."""
        record = audit.AuditRecord(
            f"apdu.agreed_key.{direction}",
            format_system_title(system_title),
            {"scheme": scheme.name, "ic": ic, "kdf": kdf_location},
        )
        with self._db.begin() as session:
            audit.append(session, actor, [record])

    def _ak(self, setup_keys: SetupKeys, authenticated: bool, actor: str) -> bytearray:
        if not authenticated:
            return bytearray()
        return self._setups.authentication_key(setup_keys.key(KeyRole.GAK), actor=actor)

    def _peer(self, setup_keys: SetupKeys, client: bytes, *, own_signing: bool) -> _Peer:
        curve = profiles.curve_for_suite(setup_keys.suite)
        with self._db.begin() as session:
            public_key, _serial = peers.peer_public_key(
                session, setup_keys.system_title, CertificateType.KEY_AGREEMENT, curve
            )
            own_type = (
                CertificateType.DIGITAL_SIGNATURE if own_signing else CertificateType.KEY_AGREEMENT
            )
            own = peers.own_key(session, client, own_type, curve)
        return _Peer(curve, ecdsa.public_point(public_key), own.key)

    def _check_meter_signature(
        self, setup_keys: SetupKeys, curve: str, point: bytes, signature: bytes
    ) -> None:
        with self._db.begin() as session:
            public_key, _serial = peers.peer_public_key(
                session, setup_keys.system_title, CertificateType.DIGITAL_SIGNATURE, curve
            )
        try:
            ecdsa.verify(
                public_key,
                ecdsa.der_from_raw(signature),
                one_pass_signed_data(point),
                ecdsa.hash_for_curve(curve),
            )
        except InvalidSignature:
            raise AuthenticationFailed(
                "the meter's signature on its ephemeral key does not verify"
            ) from None
