"""The meters this KMS knows (``kms meter list|show``): metadata, setups, key versions, states
and check values as plain data; never a key byte. A read of the database only: no token login.
"""

from __future__ import annotations

from typing import Any

from kms.db import KeyRole, Meter, MeterState
from kms.db import repository as repo
from kms.dlms.obis import format_logical_name
from kms.dlms.system_title import format_system_title
from kms.errors import NotFoundError
from kms.services.common.resources import Resources

__all__ = ["MeterService", "describe_meter"]

#: Keys listed as the Green Book lists them: master key first, then GUEK, GBEK, GAK.
_ROLE_ORDER = {role: index for index, role in enumerate(KeyRole)}


def describe_meter(meter: Meter, *, keys: bool) -> dict[str, Any]:
    """A meter as plain data (metadata and check values only)."""
    out: dict[str, Any] = {
        "system_title": format_system_title(meter.system_title),
        "serial": meter.serial,
        "manufacturer": meter.manufacturer,
        "suite": meter.suite,
        "state": meter.state.value,
        "initial_kek": meter.initial_kek_label,
        "created_at": meter.created_at.isoformat(),
        "confirmed_at": meter.confirmed_at.isoformat() if meter.confirmed_at else None,
    }
    if keys:
        out["setups"] = [
            {
                "logical_name": format_logical_name(setup.logical_name),
                "keys": [
                    {
                        "role": k.role.value,
                        "version": k.version,
                        "state": k.state.value,
                        "length": k.key_length,
                        "kcv": k.check_value.hex().upper(),
                        "wrapping_key": f"{k.wrapping_key_label} v{k.wrapping_key_version}",
                    }
                    for k in sorted(setup.keys, key=lambda k: (_ROLE_ORDER[k.role], k.version))
                ],
            }
            for setup in meter.setups
        ]
    return out


class MeterService:
    """The meters recorded in the database (module docstring)."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources

    def list(
        self, *, state: MeterState | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Meters with their suite and state (no setups), ``state`` and ``limit`` filtering."""
        with self._resources.database().begin() as session:
            return [describe_meter(m, keys=False) for m in repo.list_meters(session, state, limit)]

    def show(self, system_title: bytes) -> dict[str, Any]:
        """One meter with its setups, key versions, states and check values."""
        with self._resources.database().begin() as session:
            found = repo.meter_by_system_title(session, system_title)
            if found is None:
                raise NotFoundError(
                    f"no meter with system title {format_system_title(system_title)}"
                )
            return describe_meter(found, keys=True)
