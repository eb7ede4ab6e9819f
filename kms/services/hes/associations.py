"""Application associations with a dedicated key: the ded- APDUs of seed step 7.

The head-end opens an association by sending the meter an AARQ whose user-information is a
glo-initiate-request: the xDLMS InitiateRequest carrying a fresh *dedicated key*, ciphered
under the meter's GUEK (Green Book, notes 8.3). The meter then protects the association's
APDUs with that key (ded- and general-ded-ciphering), the GAK still in the AAD.

:meth:`AssociationService.open` makes that key in the token and returns the
glo-initiate-request. No PKCS#11 mechanism ciphers a key object at an offset inside a plaintext,
so the new key's bytes are read once to build the request (the profile's
``dedicated_key_on_host``, a named exception to docs/architecture.md, invariant 1, audited with the
opening): the key is generated non-sensitive, read into a ``bytearray``, wrapped under the
storage key and bound to the association's row, and destroyed; the request is ciphered in the
token and both buffers are zeroised. For use the key is unwrapped sensitive and
non-extractable (:meth:`~kms.services.hes.setup_keys.SetupKeyCache.dedicated_key`).

An association is stored, so that separate processes (one ``kms apdu protect`` each) can use
it, with invocation counters of its own (the key is fresh, so they start afresh and are never
reused). :meth:`AssociationService.close` wipes the stored key; a closed association is
refused everywhere.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import Protocol

from kms.db import Association, AssociationState, Database, KeyRole
from kms.db import repository as repo
from kms.db.base import utcnow
from kms.dlms.initiate_request import DEFAULT_CONFORMANCE, InitiateRequest
from kms.dlms.system_title import format_system_title
from kms.errors import (
    InputError,
    KeyStateError,
    KMSError,
    NotFoundError,
    UnsupportedMechanism,
    UnsupportedReason,
)
from kms.hsm import Hsm, KeyUse
from kms.keystore import hierarchy
from kms.keystore.blobs import seal
from kms.keystore.counters import FIRST_INVOCATION_COUNTER
from kms.memory import zeroise
from kms.services.common import audit
from kms.services.hes.apdu import Form, check_security_control, check_suite
from kms.services.hes.dedicated_keys import OpenAssociations
from kms.services.hes.key_refs import dedicated_identity
from kms.services.hes.protection import TokenApduProtection
from kms.services.hes.setup_keys import SetupKeyCache

__all__ = [
    "AssociationService",
    "OpenedAssociation",
    "TokenAssociationService",
    "association_factory",
]


@dataclass(frozen=True)
class OpenedAssociation:
    """A new association: its handle, and the glo-initiate-request to put in the AARQ."""

    handle: str
    apdu: bytes
    system_title: bytes
    invocation_counter: int

    def to_json(self) -> dict[str, object]:
        """``{"association", "apdu", "system_title", "ic"}`` for ``--json``."""
        return {
            "association": self.handle,
            "apdu": self.apdu.hex().upper(),
            "system_title": format_system_title(self.system_title),
            "ic": self.invocation_counter,
        }


class AssociationService(Protocol):
    """Opening and closing associations with dedicated keys."""

    def open(
        self,
        system_title: bytes,
        security_control: int,
        *,
        setup: int = 0,
        conformance: int = DEFAULT_CONFORMANCE,
        max_receive_pdu_size: int = 0xFFFF,
        actor: str,
    ) -> OpenedAssociation:
        """Make a dedicated key for the meter and cipher the glo-initiate-request carrying it
        under the GUEK (``security_control`` must ask for encryption); audited as ``actor``."""
        ...

    def close(self, handle: str, *, actor: str) -> None:
        """Wipe the association's stored key; it can no longer be used. Audited as ``actor``."""
        ...


class TokenAssociationService:
    """:class:`AssociationService` on the token and the database (module docstring)."""

    def __init__(
        self,
        apdus: TokenApduProtection,
        hsm: Hsm,
        db: Database,
        setups: SetupKeyCache,
        associations: OpenAssociations,
        lock: threading.RLock,
    ) -> None:
        self._apdus = apdus
        self._hsm = hsm
        self._db = db
        self._setups = setups
        self._associations = associations
        self._lock = lock
        self._root: hierarchy.RootKeys | None = None

    def open(
        self,
        system_title: bytes,
        security_control: int,
        *,
        setup: int = 0,
        conformance: int = DEFAULT_CONFORMANCE,
        max_receive_pdu_size: int = 0xFFFF,
        actor: str,
    ) -> OpenedAssociation:
        hsm = self._hsm
        # Everything that can be wrong is refused before a key is made and read.
        sc = check_security_control(security_control)
        if not sc.encryption:
            raise _needs_encryption(security_control)
        if sc.broadcast:
            raise InputError(
                f"security control 0x{security_control:02x} names the broadcast key: a "
                "dedicated key travels under the GUEK, to one meter",
                field="sc",
            )
        setup_keys = self._setups.setup(system_title, setup)
        check_suite(setup_keys, sc)
        setup_keys.key(KeyRole.GUEK)
        setup_keys.key(KeyRole.GAK)
        if not hsm.profile.dedicated_key_on_host:
            raise UnsupportedMechanism(
                f"HSM profile {hsm.profile.name!r} does not allow a dedicated key's bytes on the "
                "host (dedicated_key_on_host), and it names no mechanism that builds the "
                "glo-initiate-request in the token",
                UnsupportedReason.MISSING_FROM_PROFILE,
            )
        handle = secrets.token_hex(16)
        identity = dedicated_identity(system_title, setup_keys.logical_name, handle)
        length = setup_keys.suite.key_length
        with self._lock:
            with self._db.begin() as session:
                if self._root is None:  # loaded once per process
                    self._root = hierarchy.load_root_keys(hsm, session)
                root = self._root
            fresh = hsm.generate_key(KeyUse.DEDICATED, length)
            value = bytearray()
            plain = bytearray()
            try:
                value = hsm.read_dedicated_key(fresh)
                sealed = seal(hsm, root, fresh, identity)
                request = InitiateRequest(
                    value,
                    proposed_conformance=conformance,
                    client_max_receive_pdu_size=max_receive_pdu_size,
                )
                plain = request.to_bytes()
                # (python-pkcs11 takes the plaintext as bytes: that one copy is freed, not
                # zeroised, when the call returns.)
                result = self._apdus.protect(
                    system_title,
                    bytes(plain),
                    security_control,
                    setup=setup,
                    form=Form.GLO,
                    actor=actor,
                )
            except KMSError as exc:
                audit.record_failure(self._db, actor, "association.open", identity.describe(), exc)
                raise
            finally:
                hsm.destroy(fresh)
                zeroise(value)
                zeroise(plain)
            with self._db.begin() as session:
                repo.add(
                    session,
                    Association(
                        handle=handle,
                        security_setup_id=setup_keys.setup_id,
                        state=AssociationState.OPEN,
                        key_length=length,
                        wrapped_key=sealed.wrapped_key,
                        wrapping_key_label=sealed.wrapping_key_label,
                        wrapping_key_version=sealed.wrapping_key_version,
                        binding_mac=sealed.binding_mac,
                        next_send_ic=FIRST_INVOCATION_COUNTER,
                        receive_floor=0,
                        created_at=utcnow(),
                    ),
                )
                details = {
                    "handle": handle,
                    "dedicated_key_on_host": hsm.profile.dedicated_key_on_host,
                    "carried_under_ic": result.invocation_counter,
                }
                record = audit.AuditRecord("association.open", identity.describe(), details)
                audit.append(session, actor, [record])
        return OpenedAssociation(
            handle, result.apdu, result.system_title, result.invocation_counter
        )

    def close(self, handle: str, *, actor: str) -> None:
        with self._lock, self._db.begin() as session:
            row = repo.association_by_handle(session, handle)
            if row is None:
                raise NotFoundError(f"no association {handle!r}")
            if row.state is AssociationState.CLOSED:
                raise KeyStateError(f"association {handle} is already closed")
            locked = repo.lock_association(session, row.id)
            locked.state = AssociationState.CLOSED
            locked.wrapped_key = None
            locked.binding_mac = None
            locked.closed_at = utcnow()
            audit.append(session, actor, [audit.AuditRecord("association.close", handle)])
        self._associations.forget(handle)


def _needs_encryption(security_control: int) -> InputError:
    return InputError(
        f"security control 0x{security_control:02x} does not ask for encryption: the "
        "glo-initiate-request carries the dedicated key and must be ciphered (0x3s or 0x2s)",
        field="sc",
    )


def association_factory(apdus: TokenApduProtection) -> TokenAssociationService:
    """The association service of a process, sharing the APDU service's keys."""
    keys = apdus.keys
    return TokenAssociationService(
        apdus, keys.hsm, keys.database, keys.setups, keys.associations, keys.lock
    )
