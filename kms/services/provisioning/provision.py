"""Factory provisioning (seed steps 1 and 2): a unique key set per meter, and its key_transfer.

For every meter and security setup of a manifest the token generates a KEK (the meter's new
master key), GUEK, GBEK and GAK (16 bytes for suites 0 and 1, 32 for suite 2). Each is wrapped
under the storage key and bound to its row (:mod:`kms.keystore.blobs`), stored as version 1 in
state PENDING, and the station gets two action-requests per setup, all wrapping done in the
token (C_WrapKey, RFC 3394):

1. security setup method 2 with key_id 3 alone: the new KEK wrapped under the meter's initial
   (transport) KEK;
2. method 2 with key_ids 0, 1, 2: GUEK, GBEK and GAK wrapped under the new KEK.

Sending key_id 3 alone avoids the open question of which KEK unwraps later entries of the same
array (docs/dlms-security.md section 11).

Transactions and the resume rule. The whole manifest is checked first (format, duplicates in the
file and in the database, transport keys and their lengths): any problem is reported and nothing
is written. The meters are then processed in chunks (``provision_chunk_size``, default 500), each
chunk one transaction with its audit events. ``result.jsonl`` is written to a temporary file in
the same directory and renamed into place only when every chunk has committed. If a run stops
half-way, the meters of the committed chunks stay PENDING and running the same manifest again
re-derives their APDUs from the stored blobs (the same keys, never a second set), so the re-run
writes a complete ``result.jsonl``. A meter that is already ACTIVE is refused.

Throughput. The token work of one chunk overlaps the commit of the previous one on a single
database thread; only the calling thread ever calls the token, so the one-lock-per-process rule of
docs/token.md section 4 holds, and chunks still commit one after the other, in manifest order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from kms.config import Config
from kms.db import Database, KeyRole, KeyState, Meter, MeterState, Session
from kms.db import repository as repo
from kms.db.base import utcnow
from kms.dlms.key_transfer import KeyId, KeyTransferEntry, key_transfer_request
from kms.dlms.obis import format_logical_name
from kms.dlms.system_title import format_system_title, manufacturer_id
from kms.errors import (
    CryptoError,
    DatabaseError,
    HsmError,
    InputError,
    IntegrityError,
    NotFoundError,
)
from kms.formats.files import atomic_text_writer
from kms.formats.manifest import ManifestRow, read_manifest
from kms.formats.result import ResultSetup, read_result_titles, result_line
from kms.hsm import Hsm, KeyUse, SessionKey, TokenKey
from kms.keystore import hierarchy
from kms.keystore.blobs import KeyIdentity, seal, unseal
from kms.keystore.hierarchy import RootKeys
from kms.services.common import audit
from kms.services.common.resources import Resources
from kms.services.provisioning.confirmation import ConfirmReport, activate

__all__ = ["ROLES", "ProvisionReport", "ProvisioningService"]

#: Role, what the key may do in the token, and its key_id in key_transfer.
ROLES: tuple[tuple[KeyRole, KeyUse, KeyId], ...] = (
    (KeyRole.KEK, KeyUse.KEK, KeyId.MASTER_KEY),
    (KeyRole.GUEK, KeyUse.EK, KeyId.GLOBAL_UNICAST_ENCRYPTION_KEY),
    (KeyRole.GBEK, KeyUse.EK, KeyId.GLOBAL_BROADCAST_ENCRYPTION_KEY),
    (KeyRole.GAK, KeyUse.AK, KeyId.AUTHENTICATION_KEY),
)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ProvisionReport:
    """What a provisioning run did."""

    meters: int
    generated: int
    repeated: int
    keys: int
    seconds: float
    out: str

    @property
    def meters_per_second(self) -> float:
        """Throughput of the run."""
        return self.meters / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _SetupOutput:
    logical_name: bytes
    kcv: dict[str, bytes]
    apdus: list[bytes]


@dataclass
class _PreparedChunk:
    """A chunk after its token work, before its transaction."""

    meter_rows: list[dict[str, Any]] = field(default_factory=list)
    setups: list[list[tuple[_SetupOutput, list[dict[str, Any]]]]] = field(default_factory=list)
    records: list[audit.AuditRecord] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


class ProvisioningService:
    """Steps 1 and 2 for a provisioning station: generate, wrap, store, hand over, confirm."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources

    # --- provision ---------------------------------------------------------------------------

    def provision(
        self, manifest: Path, out: Path, *, actor: str, progress: Progress | None = None
    ) -> ProvisionReport:
        """Provision every meter of ``manifest`` and write ``out`` (JSON lines) atomically."""
        return self.provision_rows(
            read_manifest(manifest), manifest.name, out, actor=actor, progress=progress
        )

    def provision_rows(
        self,
        rows: Sequence[ManifestRow],
        source: str,
        out: Path,
        *,
        actor: str,
        progress: Progress | None = None,
    ) -> ProvisionReport:
        """Provision already parsed manifest rows (``source`` names the file in errors).

        A failure of the token, of a stored blob's binding or of the database is audited (in a
        transaction of its own) before it is raised; bad input touched no key and is not.
        """
        db = self._resources.database()  # the schema gate before the token login
        run = _Run(self._resources.hsm(), db, self._resources.config, actor)
        try:
            return run.provision_rows(rows, source, out, progress)
        except (CryptoError, HsmError, IntegrityError, DatabaseError) as exc:
            audit.record_failure(db, actor, "meter.provision", source, exc)
            raise

    # --- confirm -----------------------------------------------------------------------------

    def confirm(
        self,
        system_titles: Sequence[bytes],
        *,
        actor: str,
        result_files: Sequence[Path] = (),
    ) -> ConfirmReport:
        """Move PENDING meters (and their keys) to ACTIVE; already ACTIVE meters are reported.
        ``result_files`` (result.jsonl) add every meter they list.

        A state change in the database only: no key is touched, so no token login is needed. An
        unknown meter refuses the whole confirmation.
        """
        titles = list(system_titles)
        for path in result_files:
            titles.extend(read_result_titles(path))
        system_titles = list(dict.fromkeys(titles))
        if not system_titles:
            raise InputError("no meter to confirm")
        with self._resources.database().begin() as session:
            return activate(session, actor, system_titles)


class _Run:
    """One provisioning run: the token, database, configuration and actor it works with."""

    def __init__(self, hsm: Hsm, db: Database, config: Config, actor: str) -> None:
        self._hsm = hsm
        self._db = db
        self._config = config
        self._actor = actor

    def provision_rows(
        self,
        rows: Sequence[ManifestRow],
        source: str,
        out: Path,
        progress: Progress | None,
    ) -> ProvisionReport:
        started = time.perf_counter()
        with self._db.begin() as session:
            root = hierarchy.load_root_keys(self._hsm, session)
            existing = repo.meters_by_system_title(session, [r.system_title for r in rows])
            transports = self._check(session, source, rows, existing)
            session.expunge_all()
        generated = done = 0
        chunk_size = self._config.provision_chunk_size
        # Token work for chunk n+1 overlaps the commit of chunk n on one database thread. Only
        # this thread calls the token (docs/token.md section 4); chunks commit strictly in order.
        with (
            atomic_text_writer(out) as handle,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="kms-db") as pool,
        ):
            in_flight: Future[int] | None = None
            for start in range(0, len(rows), chunk_size):
                chunk = _PreparedChunk()
                for row in rows[start : start + chunk_size]:
                    self._prepare(root, transports, existing.get(row.system_title), row, chunk)
                if in_flight is not None:
                    done += in_flight.result()
                    if progress is not None:
                        progress(done, len(rows))
                generated += len(chunk.meter_rows)
                in_flight = pool.submit(self._store, chunk, handle)
            if in_flight is not None:
                done += in_flight.result()
                if progress is not None:
                    progress(done, len(rows))
        return ProvisionReport(
            meters=len(rows),
            generated=generated,
            repeated=len(rows) - generated,
            keys=sum(len(r.setups) for r in rows) * len(ROLES),
            seconds=time.perf_counter() - started,
            out=str(out),
        )

    def _check(
        self,
        session: Session,
        source: str,
        rows: Sequence[ManifestRow],
        existing: dict[bytes, Meter],
    ) -> dict[str, tuple[TokenKey, int]]:
        """Everything that can be wrong with the request, before any key is generated."""
        transports: dict[str, tuple[TokenKey, int]] = {}
        for row in rows:
            if row.initial_kek not in transports:
                try:
                    key, length = hierarchy.transport_key(self._hsm, session, row.initial_kek)
                except NotFoundError:
                    raise InputError(
                        f"no transport key labelled {row.initial_kek!r} "
                        "(import it with `kms transport-key import`)",
                        source=source,
                        row=row.row,
                        field="initial_kek",
                    ) from None
                if not self._hsm.has_token_key(key):
                    raise InputError(
                        f"transport key {row.initial_kek!r} is recorded but missing from token "
                        f"{self._hsm.token_label!r}",
                        source=source,
                        row=row.row,
                        field="initial_kek",
                    )
                transports[row.initial_kek] = (key, length)
            length = transports[row.initial_kek][1]
            if length != row.suite.key_length:
                raise InputError(
                    f"transport key {row.initial_kek!r} is {length} bytes but suite "
                    f"{int(row.suite)} meters use {row.suite.key_length}-byte keys",
                    source=source,
                    row=row.row,
                    field="initial_kek",
                )
            meter = existing.get(row.system_title)
            if meter is None:
                continue
            title = format_system_title(row.system_title)
            if meter.state is not MeterState.PENDING:
                raise InputError(
                    f"meter {title} is already {meter.state.value}; it is never provisioned twice",
                    source=source,
                    row=row.row,
                    field="system_title",
                )
            stored_setups = tuple(s.logical_name for s in meter.setups)
            if (
                meter.suite != int(row.suite)
                or meter.initial_kek_label != row.initial_kek
                or sorted(stored_setups) != sorted(row.setups)
            ):
                raise InputError(
                    f"meter {title} is already PENDING with another suite, initial KEK or set of "
                    "setups; a repeated run must use the same manifest row",
                    source=source,
                    row=row.row,
                    field="system_title",
                )
        return transports

    def _prepare(
        self,
        root: RootKeys,
        transports: dict[str, tuple[TokenKey, int]],
        stored: Meter | None,
        row: ManifestRow,
        chunk: _PreparedChunk,
    ) -> None:
        """The token work for one meter: new keys, or the stored ones re-derived."""
        initial = transports[row.initial_kek][0]
        if stored is not None:
            by_name = {setup.logical_name: setup for setup in stored.setups}
            outputs = [self._rederive(root, initial, row, by_name[ln]) for ln in row.setups]
            chunk.records.append(_audit_record("meter.provision.repeat", row, outputs))
        else:
            made = [self._generate(root, initial, row, ln) for ln in row.setups]
            outputs = [output for output, _ in made]
            chunk.meter_rows.append(_meter_row(row))
            chunk.setups.append(made)
            chunk.records.append(_audit_record("meter.provision", row, outputs))
        chunk.lines.append(_result_line(row, outputs))

    def _store(self, chunk: _PreparedChunk, handle: IO[str]) -> int:
        """One transaction per chunk: meters, setups, key versions and their audit events.

        Runs on the database thread; the chunk's result lines are written once it committed.
        """
        now = utcnow()
        with self._db.begin() as session:
            meter_ids = repo.insert_meters(
                session, [{**meter, "created_at": now} for meter in chunk.meter_rows]
            )
            owners = [meter_ids[meter["system_title"]] for meter in chunk.meter_rows]
            setup_ids = repo.insert_setups(
                session,
                [
                    {"meter_id": meter_id, "logical_name": output.logical_name}
                    for meter_id, made in zip(owners, chunk.setups, strict=True)
                    for output, _ in made
                ],
            )
            key_rows: list[dict[str, Any]] = []
            for meter_id, made in zip(owners, chunk.setups, strict=True):
                for output, keys in made:
                    setup_id = setup_ids[(meter_id, output.logical_name)]
                    key_rows.extend(
                        {**key, "security_setup_id": setup_id, "created_at": now} for key in keys
                    )
            repo.insert_key_versions(session, key_rows)
            audit.append(session, self._actor, chunk.records)
        handle.writelines(chunk.lines)
        return len(chunk.lines)

    def _generate(
        self, root: RootKeys, initial: TokenKey, row: ManifestRow, logical_name: bytes
    ) -> tuple[_SetupOutput, list[dict[str, Any]]]:
        hsm = self._hsm
        length = row.suite.key_length
        keys: dict[KeyRole, SessionKey] = {}
        try:
            for role, use, _ in ROLES:
                keys[role] = hsm.generate_key(use, length)
            output = _SetupOutput(logical_name, {}, [])
            key_rows: list[dict[str, Any]] = []
            for role, _, _ in ROLES:
                identity = KeyIdentity(row.system_title, logical_name, role.value, 1)
                sealed = seal(hsm, root, keys[role], identity)
                kcv = hsm.check_value(keys[role])
                output.kcv[role.value] = kcv
                key_rows.append(
                    {
                        "role": role,
                        "version": 1,
                        "state": KeyState.PENDING,
                        "key_length": length,
                        "wrapped_key": sealed.wrapped_key,
                        "wrapping_key_label": sealed.wrapping_key_label,
                        "wrapping_key_version": sealed.wrapping_key_version,
                        "binding_mac": sealed.binding_mac,
                        "check_value": kcv,
                    }
                )
            output.apdus = self._key_transfer(initial, logical_name, keys)
            return output, key_rows
        finally:
            for key in keys.values():
                hsm.destroy(key)

    def _rederive(
        self, root: RootKeys, initial: TokenKey, row: ManifestRow, setup: Any
    ) -> _SetupOutput:
        hsm = self._hsm
        stored = {k.role: k for k in setup.keys if k.version == 1}
        keys: dict[KeyRole, SessionKey] = {}
        try:
            for role, use, _ in ROLES:
                version = stored[role]
                identity = KeyIdentity(row.system_title, setup.logical_name, role.value, 1)
                keys[role] = unseal(
                    hsm,
                    root,
                    identity,
                    version.wrapped_key,
                    version.binding_mac,
                    use,
                    version.key_length,
                )
            kcv = {role.value: stored[role].check_value for role, _, _ in ROLES}
            return _SetupOutput(
                setup.logical_name, kcv, self._key_transfer(initial, setup.logical_name, keys)
            )
        finally:
            for key in keys.values():
                hsm.destroy(key)

    def _key_transfer(
        self, initial: TokenKey, logical_name: bytes, keys: dict[KeyRole, SessionKey]
    ) -> list[bytes]:
        """The two action-requests: the new KEK under the initial one, then the rest under it."""
        hsm = self._hsm
        kek = keys[KeyRole.KEK]
        first = key_transfer_request(
            logical_name, [KeyTransferEntry(KeyId.MASTER_KEY, hsm.wrap_key(initial, kek))]
        )
        second = key_transfer_request(
            logical_name,
            [
                KeyTransferEntry(key_id, hsm.wrap_key(kek, keys[role]))
                for role, _, key_id in ROLES
                if role is not KeyRole.KEK
            ],
        )
        return [first, second]


def _meter_row(row: ManifestRow) -> dict[str, Any]:
    return {
        "system_title": row.system_title,
        "serial": row.serial,
        "manufacturer": manufacturer_id(row.system_title),
        "suite": int(row.suite),
        "state": MeterState.PENDING,
        "initial_kek_label": row.initial_kek,
    }


def _audit_record(
    operation: str, row: ManifestRow, outputs: Sequence[_SetupOutput]
) -> audit.AuditRecord:
    return audit.AuditRecord(
        operation,
        format_system_title(row.system_title),
        {
            "suite": int(row.suite),
            "initial_kek": row.initial_kek,
            "setups": {
                format_logical_name(o.logical_name): {r: v.hex().upper() for r, v in o.kcv.items()}
                for o in outputs
            },
        },
    )


def _result_line(row: ManifestRow, outputs: Sequence[_SetupOutput]) -> str:
    return result_line(
        row.system_title,
        int(row.suite),
        [
            ResultSetup(
                o.logical_name, {role.value: o.kcv[role.value] for role, _, _ in ROLES}, o.apdus
            )
            for o in outputs
        ],
    )
