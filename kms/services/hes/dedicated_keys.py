"""The open associations a process uses, and what it holds of their dedicated keys.

An association (:mod:`kms.services.hes.associations`) is stored, so that separate processes can
use it; each process that protects or verifies under one looks it up once by its handle and
keeps a :class:`~kms.services.hes.key_refs.DedicatedRef` (enough to unwrap its dedicated key
again without the database). The key itself is unwrapped into the process's key cache
(:meth:`~kms.services.hes.setup_keys.SetupKeyCache.dedicated_key`) and its counters are kept
with the others (:class:`~kms.services.hes.invocation_counters.InvocationCounters`).

A closed association is refused everywhere: found closed here, or by the counters under the
association's row lock, everything the process holds of it goes (:meth:`OpenAssociations.forget`):
the reference, the unwrapped key (destroyed in the token), the counter block and the floor.
"""

from __future__ import annotations

import threading

from kms.db import AssociationState, Database
from kms.db import repository as repo
from kms.errors import KeyStateError, NotFoundError
from kms.services.hes.invocation_counters import InvocationCounters
from kms.services.hes.key_refs import DedicatedRef, dedicated_identity
from kms.services.hes.setup_keys import SetupKeyCache

__all__ = ["OpenAssociations"]


class OpenAssociations:
    """The open associations of a process, by handle (module docstring)."""

    def __init__(
        self,
        db: Database,
        lock: threading.RLock,
        setups: SetupKeyCache,
        counters: InvocationCounters,
    ) -> None:
        self._db = db
        self._lock = lock
        self._setups = setups
        self._counters = counters
        self._associations: dict[str, DedicatedRef] = {}
        counters.on_closed(self.forget)

    def association(self, handle: str) -> DedicatedRef:
        """An OPEN association by its handle (cached), or NotFoundError / KeyStateError."""
        with self._lock:
            cached = self._associations.get(handle)
            if cached is not None:
                return cached
            with self._db.begin() as session:
                row = repo.association_by_handle(session, handle)
                if row is None:
                    raise NotFoundError(f"no association {handle!r}")
                if row.state is not AssociationState.OPEN or row.wrapped_key is None:
                    raise KeyStateError(f"association {handle} is closed: open a new one")
                assert row.binding_mac is not None
                title, logical_name = row.setup.meter.system_title, row.setup.logical_name
                wrapped, mac, length, row_id = (
                    row.wrapped_key,
                    row.binding_mac,
                    row.key_length,
                    row.id,
                )
            setup = self._setups.setup(title, logical_name[4])
            ref = DedicatedRef(
                row_id,
                handle,
                setup,
                dedicated_identity(title, logical_name, handle),
                length,
                wrapped,
                mac,
            )
            self._associations[handle] = ref
            return ref

    def forget(self, handle: str) -> None:
        """Destroy what this process holds of an association (it was closed)."""
        with self._lock:
            ref = self._associations.pop(handle, None)
            if ref is not None:
                self._setups.drop_key(ref.cache_name)
                self._counters.forget_dedicated(ref)

    def close(self) -> None:
        """Forget every association (their keys go with the key cache)."""
        with self._lock:
            self._associations.clear()
