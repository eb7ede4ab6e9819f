"""Protect and verify xDLMS APDUs in the token (seed step 7).

The head-end hands the KMS a plain APDU for a meter and gets it back ciphered; it hands over
what the meter answered and gets the plain APDU back once its tag verified. The keys are the
meter's ACTIVE GUEK (unicast) or GBEK (broadcast, SC bit 6) and its GAK, from the security setup
the caller names (default instance 0, the management client); GCM and GMAC run in the token
under the unwrapped encryption key (:mod:`kms.services.working_keys` keeps them), the AK enters
the AAD as bytes (docs/token.md section 8), and the byte layouts come from the pure codecs of
:mod:`kms.dlms`.

Forms (``Form``): the service-specific ``glo`` APDU (the plain APDU's tag + 8 or + 32, no system
title), ``general-glo`` (0xDB, carrying the originator's system title), and their dedicated-key
twins ``ded`` (tag + 16 or + 64) and ``general-ded`` (0xDC), which use the dedicated key of an
open association (:mod:`kms.services.association`) instead of the GUEK; and general-ciphering
(0xDD) under a key agreed for the one APDU, ``general-agreed-1e1s`` and ``general-agreed-0e2s``
(:mod:`kms.services.agreed_ciphering`; verify recognises 0xDD). The originator of what
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
A verification failure
carries the DLMS exception-response a server would send (``exception_response``) where the Green
Book defines one.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from kms.config import Config
from kms.db import Database, KeyRole
from kms.dlms import exception_response
from kms.dlms.ciphered_apdu import (
    GENERAL_DED_CIPHERING,
    GENERAL_GLO_CIPHERING,
    SERVICE_TAGS,
    frame_ciphered_apdu,
    parse_ciphered_apdu,
    parse_general_ciphering,
    plain_tag_for,
)
from kms.dlms.general_ciphering import GENERAL_CIPHERING
from kms.dlms.protection import PreparedProtection, unprotect
from kms.dlms.security_control import SecurityControl
from kms.dlms.system_title import format_system_title
from kms.errors import (
    InputError,
    InvalidTag,
    InvocationCounterError,
    UnsupportedMechanism,
    UnsupportedReason,
)
from kms.hsm import Hsm, SessionKey
from kms.services.working_keys import DedicatedRef, KeyRef, SetupKeys, WorkingKeys

__all__ = [
    "ApduProtection",
    "ApduResult",
    "Form",
    "TokenApduProtection",
    "apdu_protection_factory",
]


#: What a server answers an APDU whose tag it does not know: service-unknown,
#: service-not-supported.
_SERVICE_UNKNOWN = exception_response.ExceptionResponse(
    exception_response.StateError.SERVICE_UNKNOWN,
    exception_response.ServiceError.SERVICE_NOT_SUPPORTED,
).to_bytes()


class Form(enum.Enum):
    """The ciphered APDU form the head-end asks for."""

    GLO = "glo"
    DED = "ded"
    GENERAL_GLO = "general-glo"
    GENERAL_DED = "general-ded"
    #: general-ciphering (0xDD) under a key agreed for the APDU (kms.services.agreed_ciphering)
    GENERAL_AGREED_1E1S = "general-agreed-1e1s"
    GENERAL_AGREED_0E2S = "general-agreed-0e2s"


@dataclass(frozen=True)
class ApduResult:
    """An APDU with the system title of its originator and its invocation counter."""

    apdu: bytes
    system_title: bytes
    invocation_counter: int
    #: Whether a tag vouched for it (verify): an encryption-only APDU is not authenticated.
    authenticated: bool = True

    def to_json(self) -> dict[str, Any]:
        """``{"apdu": HEX, "system_title": HEX, "ic": n}`` (the CLI's ``--json``), and
        ``"authenticated": false`` for an encryption-only APDU accepted on request."""
        out: dict[str, Any] = {
            "apdu": self.apdu.hex().upper(),
            "system_title": format_system_title(self.system_title),
            "ic": self.invocation_counter,
        }
        if not self.authenticated:
            out["authenticated"] = False
        return out


class ApduProtection(Protocol):
    """Protection of the APDUs between the head-end and its meters."""

    def protect(
        self,
        system_title: bytes,
        apdu: bytes,
        security_control: int,
        *,
        setup: int = 0,
        form: Form = Form.GLO,
        association: str | None = None,
    ) -> ApduResult:
        """Cipher ``apdu`` for the meter ``system_title``; returns the ciphered APDU with the
        head-end's system title and the IC used. The ded forms need the ``association`` whose
        dedicated key they use. Raises the errors of the module docstring."""
        ...

    def verify(
        self,
        system_title: bytes,
        apdu: bytes,
        *,
        setup: int = 0,
        association: str | None = None,
        allow_unauthenticated: bool = False,
    ) -> ApduResult:
        """Check and decipher an APDU from the meter ``system_title``; returns the plain APDU
        with the meter's system title and its IC, after the receive floor moved past it. A
        ded- or general-ded-ciphered APDU needs its ``association``. An encryption-only APDU
        (no tag) is refused unless ``allow_unauthenticated`` (module docstring)."""
        ...

    def close(self) -> None:
        """Destroy every key this service unwrapped."""
        ...


@dataclass(frozen=True)
class _Keys:
    """The keys one APDU is protected or verified with, and its counter's owner."""

    ek: SessionKey
    ak: bytearray = field(repr=False)
    unicast: KeyRef | None  # the GUEK/GBEK whose counters apply, or None
    dedicated: DedicatedRef | None  # the association whose counters apply, or None

    @property
    def ek_name(self) -> Hashable:
        """The encryption key's name in the cache."""
        if self.dedicated is not None:
            return self.dedicated.cache_name
        assert self.unicast is not None
        return self.unicast.id


@dataclass
class _Sender:
    """protect() prepared for one (meter, setup, SC, form, association): the hot path.

    Holds the session key it ciphers with (checked against the key cache on every use, so a key
    the cache destroyed is never used), its own AAD prefix SC || AK (zeroised when the sender
    goes) and the tags of its form; an APDU then costs an IC, one token call and the framing.
    """

    protection: PreparedProtection
    ek_name: Hashable
    ek: SessionKey
    unicast: KeyRef | None
    dedicated: DedicatedRef | None
    system_title: bytes  # the meter's, for eviction
    client: bytes
    security_control: int
    #: plain tag -> ciphered tag (service-specific forms), or None for general-glo/ded.
    tags: Mapping[int, int] | None
    general_tag: int


_GLO_TAGS = MappingProxyType({plain: glo for plain, (glo, _) in SERVICE_TAGS.items()})
_DED_TAGS = MappingProxyType({plain: ded for plain, (_, ded) in SERVICE_TAGS.items()})


class TokenApduProtection:
    """:class:`ApduProtection` with keys unwrapped into the token and counters in the database."""

    def __init__(self, keys: WorkingKeys, config: Config) -> None:
        self._keys = keys
        self._config = config
        self._senders: OrderedDict[tuple[object, ...], _Sender] = OrderedDict()
        self._capacity = config.key_cache_size
        keys.on_evict(self._drop_senders)
        keys.on_key_evict(self._drop_senders_of_key)

    @property
    def keys(self) -> WorkingKeys:
        """The keys in use (shared with the HLS and association services of the process)."""
        return self._keys

    # --- protect -----------------------------------------------------------------------------

    def protect(
        self,
        system_title: bytes,
        apdu: bytes,
        security_control: int,
        *,
        setup: int = 0,
        form: Form = Form.GLO,
        association: str | None = None,
    ) -> ApduResult:
        if form in (Form.GENERAL_AGREED_1E1S, Form.GENERAL_AGREED_0E2S):
            from kms.services.agreed_ciphering import SCHEMES, AgreedKeyCiphering

            scheme = SCHEMES[form.value.rsplit("-", 1)[1]]
            return AgreedKeyCiphering(self._keys, self._config).protect(
                system_title, apdu, security_control, scheme, setup=setup
            )
        name = (system_title, setup, security_control, form, association)
        with self._keys.lock:
            sender = self._senders.get(name)
            if sender is None or not self._keys.still_cached(sender.ek_name, sender.ek):
                sender = self._prepare(
                    name, system_title, setup, security_control, form, association
                )
            if not apdu:
                raise InputError("the APDU to protect is empty", field="apdu")
            tags = sender.tags
            if tags is None:
                tag = sender.general_tag
            else:
                tag = tags.get(apdu[0], -1)
                if tag < 0:
                    general = "general-glo" if form is Form.GLO else "general-ded"
                    raise InputError(
                        f"tag 0x{apdu[0]:02x} has no {form.value}- ciphered form "
                        f"(use --form {general})",
                        field="apdu",
                    )
            if sender.dedicated is not None:
                ic = self._keys.next_dedicated_ic(sender.dedicated)
            else:
                assert sender.unicast is not None
                ic = self._keys.next_send_ic(sender.unicast)
            payload = sender.protection.protect(ic, apdu)
        title = None if tags is not None else sender.client
        ciphered = frame_ciphered_apdu(tag, title, sender.security_control, ic, payload)
        return ApduResult(ciphered, sender.client, ic)

    def _prepare(
        self,
        name: tuple[object, ...],
        system_title: bytes,
        setup: int,
        security_control: int,
        form: Form,
        association: str | None,
    ) -> _Sender:
        """Check everything about a new (meter, SC, form), resolve its keys, keep a sender."""
        client = self._config.require_client_system_title()
        sc = _security_control(security_control)
        dedicated = form in (Form.DED, Form.GENERAL_DED)
        keys = self._resolve(system_title, setup, sc, dedicated, association)
        old = self._senders.pop(name, None)
        if old is not None:
            old.protection.close()
        sender = _Sender(
            protection=PreparedProtection(self._keys.hsm.aead(keys.ek), sc, client, keys.ak),
            ek_name=keys.ek_name,
            ek=keys.ek,
            unicast=keys.unicast,
            dedicated=keys.dedicated,
            system_title=system_title,
            client=client,
            security_control=sc.to_byte(),
            tags={Form.GLO: _GLO_TAGS, Form.DED: _DED_TAGS}.get(form),
            general_tag=GENERAL_DED_CIPHERING if dedicated else GENERAL_GLO_CIPHERING,
        )
        self._senders[name] = sender
        while len(self._senders) > self._capacity:
            _, oldest = self._senders.popitem(last=False)
            oldest.protection.close()
        return sender

    def _drop_senders_of_key(self, name: Hashable) -> None:
        """Forget the senders ciphering under a key the cache let go (with their AK copies)."""
        with self._keys.lock:
            for gone in [n for n, sender in self._senders.items() if sender.ek_name == name]:
                self._senders.pop(gone).protection.close()

    def _drop_senders(self, system_title: bytes | None) -> None:
        """Forget the senders of a meter (``None``: all), zeroising their AAD prefixes."""
        with self._keys.lock:
            for name in [
                n
                for n, s in self._senders.items()
                if system_title is None or s.system_title == system_title
            ]:
                self._senders.pop(name).protection.close()

    # --- verify ------------------------------------------------------------------------------

    def verify(
        self,
        system_title: bytes,
        apdu: bytes,
        *,
        setup: int = 0,
        association: str | None = None,
        allow_unauthenticated: bool = False,
    ) -> ApduResult:
        try:
            if apdu[:1] == bytes([GENERAL_CIPHERING]):
                from kms.services.agreed_ciphering import AgreedKeyCiphering

                return AgreedKeyCiphering(self._keys, self._config).verify(
                    system_title, apdu, setup=setup
                )
            return self._verify(system_title, apdu, setup, association, allow_unauthenticated)
        except InvalidTag as exc:
            exc.exception_response = exception_response.deciphering_error().to_bytes()
            raise
        except InvocationCounterError as exc:
            exc.exception_response = exception_response.invocation_counter_error(
                exc.expected
            ).to_bytes()
            raise

    def _verify(
        self,
        system_title: bytes,
        apdu: bytes,
        setup: int,
        association: str | None,
        allow_unauthenticated: bool,
    ) -> ApduResult:
        sc, ic, payload, originator, dedicated = _parse(system_title, apdu)
        if not (sc.authentication or allow_unauthenticated):
            raise InputError(
                f"security control 0x{sc.to_byte():02x} is encryption only: the APDU carries no "
                "tag, so anyone could have made it; accept it only where the meter's security "
                "policy is encryption only (allow_unauthenticated, --allow-unauthenticated)",
                field="security_control",
            )
        with self._keys.lock:
            keys = self._resolve(system_title, setup, sc, dedicated, association)
            if keys.dedicated is not None:
                self._keys.check_dedicated(keys.dedicated, ic)
            else:
                assert keys.unicast is not None
                self._keys.check_received(keys.unicast, ic)
            plain = unprotect(self._keys.hsm.aead(keys.ek), sc, originator, ic, keys.ak, payload)
            if keys.dedicated is not None:
                self._keys.accept_dedicated(keys.dedicated, ic)
            else:
                assert keys.unicast is not None
                self._keys.accept_received(keys.unicast, ic)
        return ApduResult(plain, originator, ic, authenticated=sc.authentication)

    # --- keys --------------------------------------------------------------------------------

    def _resolve(
        self,
        system_title: bytes,
        setup: int,
        sc: SecurityControl,
        dedicated: bool,
        association: str | None,
    ) -> _Keys:
        """The keys for an APDU to or from ``system_title`` with security control ``sc``."""
        if not dedicated:
            setup_keys = self._keys.setup(system_title, setup)
            _check_suite(setup_keys, sc)
            ek_ref = setup_keys.key(KeyRole.GBEK if sc.broadcast else KeyRole.GUEK)
            ek, ak = self._keys.keys_for(ek_ref, self._ak_ref(setup_keys, sc))
            return _Keys(ek, ak, ek_ref, None)
        if association is None:
            raise InputError(
                "a ded- or general-ded-ciphered APDU uses the dedicated key of an association: "
                "name it (open one with `kms association open`)",
                field="association",
            )
        ref = self._keys.association(association)
        setup_keys = ref.setup
        if setup_keys.system_title != system_title or setup_keys.logical_name[4] != setup:
            raise InputError(
                f"association {association} belongs to meter "
                f"{format_system_title(setup_keys.system_title)} setup "
                f"{setup_keys.logical_name[4]}, not {format_system_title(system_title)} "
                f"setup {setup}",
                field="association",
            )
        if sc.broadcast:
            raise InputError(
                "a dedicated key is unicast: the broadcast bit (0x40) cannot be set", field="sc"
            )
        _check_suite(setup_keys, sc)
        ek, ak = self._keys.keys_for(ref, self._ak_ref(setup_keys, sc))
        return _Keys(ek, ak, None, ref)

    @staticmethod
    def _ak_ref(setup_keys: SetupKeys, sc: SecurityControl) -> KeyRef | None:
        return setup_keys.key(KeyRole.GAK) if sc.authentication else None

    def close(self) -> None:
        self._drop_senders(None)
        self._keys.close()


def check_security_control(value: int) -> SecurityControl:
    """The SC of a request to protect, or the error naming what is wrong with it."""
    return _security_control(value)


def check_suite(keys: SetupKeys, sc: SecurityControl) -> None:
    """:class:`~kms.errors.InputError` unless ``sc`` names the suite the meter uses."""
    _check_suite(keys, sc)


def _security_control(value: int) -> SecurityControl:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise InputError(f"security control must be one byte, got {value!r}", field="sc")
    sc = SecurityControl.from_byte(value)
    if sc.compression:
        raise UnsupportedMechanism(
            f"security control 0x{value:02x} asks for V.44 compression, which this KMS does not "
            "implement",
            UnsupportedReason.NOT_YET_IMPLEMENTED,
        )
    if not (sc.authentication or sc.encryption):
        raise InputError(
            f"security control 0x{value:02x} asks for neither authentication nor encryption",
            field="sc",
        )
    return sc


def _check_suite(keys: SetupKeys, sc: SecurityControl) -> None:
    if sc.suite is not keys.suite:
        raise InputError(
            f"security control 0x{sc.to_byte():02x} names suite {int(sc.suite)}, but meter "
            f"{format_system_title(keys.system_title)} uses suite {int(keys.suite)}",
            field="security_control",
        )


def _parse(system_title: bytes, apdu: bytes) -> tuple[SecurityControl, int, bytes, bytes, bool]:
    """SC, IC, payload, the originator's system title of a ciphered APDU from a meter, and
    whether it is ciphered with a dedicated key."""
    if not apdu:
        raise InputError("the APDU is empty", field="apdu")
    tag = apdu[0]
    if tag in (GENERAL_GLO_CIPHERING, GENERAL_DED_CIPHERING):
        general = parse_general_ciphering(apdu)
        dedicated = tag == GENERAL_DED_CIPHERING
        originator = general.system_title or system_title
        if originator != system_title:
            raise InputError(
                f"the APDU's system title {format_system_title(originator)} is not the meter's "
                f"{format_system_title(system_title)}",
                field="system_title",
            )
        sc, ic, payload = general.security_control, general.invocation_counter, general.payload
    else:
        try:
            ciphered = parse_ciphered_apdu(apdu)
        except InputError as exc:
            if exc.field == "tag":
                exc.exception_response = _SERVICE_UNKNOWN
            raise
        dedicated = plain_tag_for(ciphered.tag)[1] == "ded"
        sc, ic, payload = ciphered.security_control, ciphered.invocation_counter, ciphered.payload
        originator = system_title
    if sc.compression:
        raise UnsupportedMechanism(
            "the APDU is compressed (V.44), which this KMS does not implement",
            UnsupportedReason.NOT_YET_IMPLEMENTED,
        )
    return sc, ic, payload, originator, dedicated


def apdu_protection_factory(
    hsm: Hsm, db: Database, config: Config, *, ic_block_size: int | None = None
) -> TokenApduProtection:
    """The APDU service of a process. ``ic_block_size`` overrides the configured block size
    (the CLI protects one APDU per process and reserves exactly one counter)."""
    return TokenApduProtection(WorkingKeys(hsm, db, config, ic_block_size=ic_block_size), config)
