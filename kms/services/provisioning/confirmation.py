"""Confirmation (the end of step 2): the station wrote a meter's keys, so they become ACTIVE.

A state change in the database only: no key is touched, so no token login is needed. Meters
already ACTIVE are reported rather than refused, so a station can retry a confirmation; an
unknown meter refuses the whole confirmation. ``--from`` reads the system titles out of the
``result.jsonl`` that ``kms provision`` wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kms.db import MeterState, Session
from kms.db import repository as repo
from kms.db.base import utcnow
from kms.dlms.system_title import format_system_title
from kms.errors import InputError, NotFoundError
from kms.services.common import audit


@dataclass(frozen=True)
class ConfirmReport:
    """What a confirmation did."""

    activated: list[str]
    already_active: list[str]
    keys_activated: int


def activate(session: Session, actor: str, system_titles: Sequence[bytes]) -> ConfirmReport:
    """In the caller's transaction (:meth:`ProvisioningService.confirm
    <kms.services.provisioning.provision.ProvisioningService.confirm>`): PENDING meters and their
    keys become ACTIVE, already ACTIVE ones are reported, an unknown meter refuses them all."""
    activated: list[str] = []
    already: list[str] = []
    keys = 0
    meters = repo.meters_by_system_title(session, system_titles)
    for title in system_titles:
        if title not in meters:
            raise NotFoundError(f"no meter with system title {format_system_title(title)}")
    now = utcnow()
    records = []
    for title in system_titles:
        meter = meters[title]
        hex_title = format_system_title(title)
        if meter.state is MeterState.ACTIVE:
            already.append(hex_title)
            continue
        if meter.state is not MeterState.PENDING:
            raise InputError(f"meter {hex_title} is {meter.state.value}, not PENDING")
        keys += repo.activate_meter(session, meter, now)
        activated.append(hex_title)
        records.append(audit.AuditRecord("meter.confirm", hex_title, {"keys": "ACTIVE"}))
    if records:
        audit.append(session, actor, records)
    return ConfirmReport(activated, already, keys)
