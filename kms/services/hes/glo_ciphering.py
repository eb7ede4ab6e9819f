"""The glo and ded forms of a ciphered xDLMS APDU, both ways, in the token (Green Book Ed. 8.3,
9.2.7.2.4; docs/dlms-security.md section 2).

The service-specific ``glo`` APDU (the plain APDU's tag + 8 or + 32, no system title),
``general-glo`` (0xDB, carrying the originator's system title), and their dedicated-key twins
``ded`` (tag + 16 or + 64) and ``general-ded`` (0xDC), which use the dedicated key of an open
association (:mod:`kms.services.hes.associations`) instead of the GUEK. GCM and GMAC run in the
token under the unwrapped encryption key (:mod:`kms.services.hes.setup_keys` keeps them), the
AK enters the AAD as bytes (docs/token.md section 8), and the byte layouts come from the pure
codecs of :mod:`kms.dlms`; the counters are :mod:`kms.services.hes.invocation_counters`'s.

protect() keeps a prepared sender per (meter, setup, SC, form, association): the hot path costs
an IC, one token call and the framing. verify() moves the receive floor only after the tag
verified.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from kms.config import Config
from kms.db import KeyRole
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
from kms.dlms.protection import PreparedProtection, unprotect
from kms.dlms.security_control import SecurityControl
from kms.dlms.system_title import format_system_title
from kms.errors import InputError, UnsupportedMechanism, UnsupportedReason
from kms.hsm import Hsm, SessionKey
from kms.services.hes.apdu import ApduResult, Form, check_security_control, check_suite
from kms.services.hes.dedicated_keys import OpenAssociations
from kms.services.hes.invocation_counters import InvocationCounters
from kms.services.hes.key_refs import DedicatedRef, KeyRef, SetupKeys
from kms.services.hes.setup_keys import SetupKeyCache

__all__ = ["GloCiphering"]


#: What a server answers an APDU whose tag it does not know: service-unknown,
#: service-not-supported.
_SERVICE_UNKNOWN = exception_response.ExceptionResponse(
    exception_response.StateError.SERVICE_UNKNOWN,
    exception_response.ServiceError.SERVICE_NOT_SUPPORTED,
).to_bytes()


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


class GloCiphering:
    """The glo and ded forms (service-specific and general), with keys unwrapped into the token
    and counters in the database."""

    def __init__(
        self,
        hsm: Hsm,
        setups: SetupKeyCache,
        counters: InvocationCounters,
        associations: OpenAssociations,
        lock: threading.RLock,
        config: Config,
    ) -> None:
        self._hsm = hsm
        self._setups = setups
        self._counters = counters
        self._associations = associations
        self._lock = lock
        self._config = config
        self._senders: OrderedDict[tuple[object, ...], _Sender] = OrderedDict()
        self._capacity = config.key_cache_size
        setups.on_evict(self._drop_senders)
        setups.on_key_evict(self._drop_senders_of_key)

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
        actor: str,
    ) -> ApduResult:
        """Cipher ``apdu`` for the meter; a new block of ICs or a key unwrapped for it is
        audited as ``actor``."""
        name = (system_title, setup, security_control, form, association)
        with self._lock:
            sender = self._senders.get(name)
            if sender is None or not self._setups.still_cached(sender.ek_name, sender.ek):
                sender = self._prepare(
                    name, system_title, setup, security_control, form, association, actor
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
                ic = self._counters.next_dedicated_ic(sender.dedicated)
            else:
                assert sender.unicast is not None
                ic = self._counters.next_send_ic(sender.unicast, actor=actor)
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
        actor: str,
    ) -> _Sender:
        """Check everything about a new (meter, SC, form), resolve its keys, keep a sender."""
        client = self._config.require_client_system_title()
        sc = check_security_control(security_control)
        dedicated = form in (Form.DED, Form.GENERAL_DED)
        keys = self._resolve(system_title, setup, sc, dedicated, association, actor)
        old = self._senders.pop(name, None)
        if old is not None:
            old.protection.close()
        sender = _Sender(
            protection=PreparedProtection(self._hsm.aead(keys.ek), sc, client, keys.ak),
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
        with self._lock:
            for gone in [n for n, sender in self._senders.items() if sender.ek_name == name]:
                self._senders.pop(gone).protection.close()

    def _drop_senders(self, system_title: bytes | None) -> None:
        """Forget the senders of a meter (``None``: all), zeroising their AAD prefixes."""
        with self._lock:
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
        actor: str,
    ) -> ApduResult:
        """Check and decipher a glo or ded APDU from the meter; the floor moves once the tag
        verified. A key unwrapped for it is audited as ``actor``."""
        sc, ic, payload, originator, dedicated = _parse(system_title, apdu)
        if not (sc.authentication or allow_unauthenticated):
            raise InputError(
                f"security control 0x{sc.to_byte():02x} is encryption only: the APDU carries no "
                "tag, so anyone could have made it; accept it only where the meter's security "
                "policy is encryption only (allow_unauthenticated, --allow-unauthenticated)",
                field="security_control",
            )
        with self._lock:
            keys = self._resolve(system_title, setup, sc, dedicated, association, actor)
            if keys.dedicated is not None:
                self._counters.check_dedicated(keys.dedicated, ic)
            else:
                assert keys.unicast is not None
                self._counters.check_received(keys.unicast, ic)
            plain = unprotect(self._hsm.aead(keys.ek), sc, originator, ic, keys.ak, payload)
            if keys.dedicated is not None:
                self._counters.accept_dedicated(keys.dedicated, ic)
            else:
                assert keys.unicast is not None
                self._counters.accept_received(keys.unicast, ic)
        return ApduResult(plain, originator, ic, authenticated=sc.authentication)

    # --- keys --------------------------------------------------------------------------------

    def _resolve(
        self,
        system_title: bytes,
        setup: int,
        sc: SecurityControl,
        dedicated: bool,
        association: str | None,
        actor: str,
    ) -> _Keys:
        """The keys for an APDU to or from ``system_title`` with security control ``sc``."""
        if not dedicated:
            setup_keys = self._setups.setup(system_title, setup)
            check_suite(setup_keys, sc)
            ek_ref = setup_keys.key(KeyRole.GBEK if sc.broadcast else KeyRole.GUEK)
            ek, ak = self._setups.keys_for(ek_ref, self._ak_ref(setup_keys, sc), actor=actor)
            return _Keys(ek, ak, ek_ref, None)
        if association is None:
            raise InputError(
                "a ded- or general-ded-ciphered APDU uses the dedicated key of an association: "
                "name it (open one with `kms association open`)",
                field="association",
            )
        ref = self._associations.association(association)
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
        check_suite(setup_keys, sc)
        ek, ak = self._setups.keys_for(ref, self._ak_ref(setup_keys, sc), actor=actor)
        return _Keys(ek, ak, None, ref)

    @staticmethod
    def _ak_ref(setup_keys: SetupKeys, sc: SecurityControl) -> KeyRef | None:
        return setup_keys.key(KeyRole.GAK) if sc.authentication else None

    def close(self) -> None:
        """Forget every sender, zeroising their AAD prefixes (the keys are the caller's)."""
        self._drop_senders(None)


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
