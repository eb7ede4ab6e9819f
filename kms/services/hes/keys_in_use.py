"""The head-end's keys in use in one process, built together: the setup key cache, the invocation
counters, the open associations, and the one lock they share.

They are three objects with one concern each (:mod:`kms.services.hes.setup_keys`,
:mod:`kms.services.hes.invocation_counters`, :mod:`kms.services.hes.dedicated_keys`), but the
services of a process (APDU protection, associations, HLS) must share one of each: a second key
cache would unwrap every key twice, and two sets of counter blocks would waste ICs. And they
share one lock, because SoftHSM crashes under concurrent threads (docs/token.md section 4: one lock
per process, parallelism from processes). :class:`KeysInUse` is only that grouping, so that a
factory can hand the same ones to each service; a service takes the collaborators it uses in its
``__init__`` and never keeps this object.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from kms.config import Config
from kms.db import Database
from kms.hsm import Hsm
from kms.services.hes.dedicated_keys import OpenAssociations
from kms.services.hes.invocation_counters import InvocationCounters
from kms.services.hes.setup_keys import SetupKeyCache

__all__ = ["KeysInUse", "keys_in_use"]


@dataclass(frozen=True)
class KeysInUse:
    """One process's keys in use and what they run on (module docstring)."""

    hsm: Hsm
    database: Database
    lock: threading.RLock
    setups: SetupKeyCache
    counters: InvocationCounters
    associations: OpenAssociations

    def close(self) -> None:
        """Destroy every cached key (session objects in the token, AK bytes zeroised) and forget
        every counter block, after a reservation under way committed."""
        self.counters.close()
        self.associations.close()
        self.setups.close()


def keys_in_use(
    hsm: Hsm, db: Database, config: Config, *, ic_block_size: int | None = None
) -> KeysInUse:
    """Fresh keys in use for a process. ``ic_block_size`` overrides the configured block size
    (the CLI protects one APDU per process and reserves exactly one counter)."""
    lock = threading.RLock()
    setups = SetupKeyCache(hsm, db, config, lock)
    counters = InvocationCounters(db, config, lock, setups, ic_block_size=ic_block_size)
    associations = OpenAssociations(db, lock, setups, counters)
    return KeysInUse(hsm, db, lock, setups, counters, associations)
