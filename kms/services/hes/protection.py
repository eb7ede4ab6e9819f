"""Protect and verify xDLMS APDUs in the token (seed step 7).

The head-end hands the KMS a plain APDU for a meter and gets it back ciphered; it hands over
what the meter answered and gets the plain APDU back once its tag verified. The keys are the
meter's ACTIVE GUEK (unicast) or GBEK (broadcast, SC bit 6) and its GAK, from the security setup
the caller names (default instance 0, the management client); GCM and GMAC run in the token
under the unwrapped encryption key (:mod:`kms.services.hes.setup_keys` keeps them), the AK
enters the AAD as bytes (docs/token.md section 8), and the byte layouts come from the pure codecs
of :mod:`kms.dlms`.

This module is the dispatcher: it picks the handler by the form asked (protect) or by the APDU's
tag (verify) -- :mod:`kms.services.hes.glo_ciphering` for the glo and ded forms,
:mod:`kms.services.hes.agreed_ciphering` for general-ciphering with an agreed key -- and neither
handler imports the other.

Forms (``Form``): the service-specific ``glo`` APDU (the plain APDU's tag + 8 or + 32, no system
title), ``general-glo`` (0xDB, carrying the originator's system title), and their dedicated-key
twins ``ded`` (tag + 16 or + 64) and ``general-ded`` (0xDC), which use the dedicated key of an
open association (:mod:`kms.services.hes.associations`) instead of the GUEK; and general-ciphering
(0xDD) under a key agreed for the one APDU, ``general-agreed-1e1s`` and ``general-agreed-0e2s``
(:mod:`kms.services.hes.agreed_ciphering`; verify recognises 0xDD). The originator of what
the KMS protects is the head-end (``client_system_title``); of what it verifies, the meter. The
invocation counter of each protected APDU comes from a block reserved in the database; a
received one must be above the last accepted for that key, and the floor moves, in the
database, only after the tag verified (:mod:`kms.keystore.counters`).

Refused, each with its own error and nothing written: a malformed APDU (``InputError``, naming
field and offset), an unknown meter or setup (``NotFoundError``), a suite the meter does not use
or a reserved one, compression (V.44 is not implemented), an SC asking for no protection
(``InputError``), a key that is not ACTIVE (``KeyStateError``), a tag that does not verify
(``InvalidTag``) and a replayed or lower IC (``InvocationCounterError``). An encryption-only APDU
(SC 0x2s) carries no tag: anyone can make one, and deciphering it at an IC of the sender's
choosing would hand out the keystream of ICs the meter has not used yet, which would expose the
meter's later messages. So it is refused unless the caller says the meter's security policy is
encryption only (``allow_unauthenticated``); then it is deciphered once, moves the floor like
any accepted APDU (so no IC is ever deciphered twice) and is marked ``authenticated=False``.
A verification failure carries the DLMS exception-response a server would send
(``exception_response``) where the Green Book defines one.
"""

from __future__ import annotations

from kms.config import Config
from kms.db import Database
from kms.dlms import exception_response
from kms.dlms.general_ciphering import GENERAL_CIPHERING
from kms.errors import InvalidTag, InvocationCounterError
from kms.hsm import Hsm
from kms.services.hes.agreed_ciphering import SCHEMES, AgreedKeyCiphering
from kms.services.hes.apdu import ApduProtection, ApduResult, Form
from kms.services.hes.glo_ciphering import GloCiphering
from kms.services.hes.keys_in_use import KeysInUse, keys_in_use

__all__ = [
    "ApduProtection",
    "ApduResult",
    "Form",
    "TokenApduProtection",
    "apdu_protection_factory",
]

#: The forms ciphered under a key agreed for the one APDU -> the agreement scheme's name.
_AGREED = {
    Form.GENERAL_AGREED_1E1S: SCHEMES["1e1s"],
    Form.GENERAL_AGREED_0E2S: SCHEMES["0e2s"],
}


class TokenApduProtection:
    """:class:`ApduProtection` in the token: picks the handler by form (protect) or by the
    APDU's tag (verify); neither handler knows the other. Each handler gets the collaborators
    it uses; this object keeps their grouping only to hand it to the process's other head-end
    services (:attr:`keys`) and to close it."""

    def __init__(self, keys: KeysInUse, config: Config) -> None:
        self._keys = keys
        self._glo = GloCiphering(
            keys.hsm, keys.setups, keys.counters, keys.associations, keys.lock, config
        )
        self._agreed = AgreedKeyCiphering(
            keys.hsm, keys.database, keys.setups, keys.counters, keys.lock, config
        )

    @property
    def keys(self) -> KeysInUse:
        """The keys in use (shared with the HLS and association services of the process)."""
        return self._keys

    def protect(
        self,
        system_title: bytes,
        apdu: bytes,
        security_control: int,
        *,
        setup: int = 0,
        form: Form = Form.GLO,
        association: str | None = None,
        actor: str,
    ) -> ApduResult:
        scheme = _AGREED.get(form)
        if scheme is not None:
            return self._agreed.protect(
                system_title, apdu, security_control, scheme, setup=setup, actor=actor
            )
        return self._glo.protect(
            system_title,
            apdu,
            security_control,
            setup=setup,
            form=form,
            association=association,
            actor=actor,
        )

    def verify(
        self,
        system_title: bytes,
        apdu: bytes,
        *,
        setup: int = 0,
        association: str | None = None,
        allow_unauthenticated: bool = False,
        actor: str,
    ) -> ApduResult:
        try:
            if apdu[:1] == bytes([GENERAL_CIPHERING]):
                return self._agreed.verify(system_title, apdu, setup=setup, actor=actor)
            return self._glo.verify(
                system_title,
                apdu,
                setup=setup,
                association=association,
                allow_unauthenticated=allow_unauthenticated,
                actor=actor,
            )
        except InvalidTag as exc:
            exc.exception_response = exception_response.deciphering_error().to_bytes()
            raise
        except InvocationCounterError as exc:
            exc.exception_response = exception_response.invocation_counter_error(
                exc.expected
            ).to_bytes()
            raise

    def close(self) -> None:
        """Destroy every key this service unwrapped."""
        self._glo.close()
        self._keys.close()


def apdu_protection_factory(
    hsm: Hsm, db: Database, config: Config, *, ic_block_size: int | None = None
) -> TokenApduProtection:
    """The APDU service of a process. ``ic_block_size`` overrides the configured block size
    (the CLI protects one APDU per process and reserves exactly one counter)."""
    return TokenApduProtection(keys_in_use(hsm, db, config, ic_block_size=ic_block_size), config)
