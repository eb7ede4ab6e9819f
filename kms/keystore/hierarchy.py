"""Root keys: the token objects every per-meter key depends on.

=========  ======================================  ==========================================
purpose    token object                            job
=========  ======================================  ==========================================
STORAGE    AES-256, wrap/unwrap only               wraps every per-meter key stored in the DB
BINDING    256-bit generic secret, sign/verify     HMAC binding a blob to its row
AUDIT      ECDSA P-384 key pair                    signs audit checkpoints
TRANSPORT  AES-128/256, wrap/unwrap                a vendor's initial master key (ceremony)
=========  ======================================  ==========================================

All are ``CKA_TOKEN``, ``CKA_SENSITIVE`` and not extractable (docs/architecture.md, invariant 2),
recorded in
``root_key`` with label, CKA_ID, purpose and version. ``kms init`` is idempotent and never
overwrites: a key the token already has is adopted, a key the database records but the token has
lost is an error (the blobs wrapped under it would be unreadable), and only a key neither has is
created.

A token object is made before the row that records it, so a ceremony that fails in between would
leave an object no row records. Run inside :func:`undone_on_failure`, the keys it made are
destroyed again, once the database confirms it recorded none of them; a process that dies in
between, or a database that cannot say, leaves them to the next run, which adopts them (``kms
init``, and a transport-key import from the same key file).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from kms.db import Database, RootKey, RootKeyPurpose, Session
from kms.db import repository as repo
from kms.errors import (
    ConflictError,
    InputError,
    KMSError,
    NotFoundError,
    NotInitialisedError,
    TokenKeyNotFound,
)
from kms.hsm import Hsm, TokenKey

STORAGE_LABEL = "kms-storage-v1"
BINDING_LABEL = "kms-binding-v1"
AUDIT_LABEL = "kms-audit-v1"

_SPECS: tuple[tuple[RootKeyPurpose, str, str], ...] = (
    (RootKeyPurpose.STORAGE, STORAGE_LABEL, "AES-256"),
    (RootKeyPurpose.BINDING, BINDING_LABEL, "HMAC-SHA256"),
    (RootKeyPurpose.AUDIT, AUDIT_LABEL, "ECDSA-P384"),
)


@dataclass(frozen=True)
class RootKeys:
    """Handles on the root keys a process needs, with the storage key's version."""

    storage: TokenKey
    storage_version: int
    binding: TokenKey
    audit: TokenKey


@dataclass(frozen=True)
class InitOutcome:
    """What ``kms init`` did for one root key."""

    purpose: str
    label: str
    algorithm: str
    action: str  # "created" | "adopted" | "present"


def _token_key(purpose: RootKeyPurpose, label: str) -> TokenKey:
    return TokenKey(label, "private" if purpose is RootKeyPurpose.AUDIT else "secret")


@contextlib.contextmanager
def undone_on_failure(hsm: Hsm, db: Database) -> Iterator[list[TokenKey]]:
    """Collect the token keys a ceremony makes; destroy them if it fails before it commits.

    Wrap it around the ceremony's transaction (``with undone_on_failure(hsm, db) as made,
    db.begin() as session``), so that a commit the database refuses comes through here too. A
    key is destroyed only when a fresh read shows no row records its label: a commit whose
    outcome is unknown (the connection lost during COMMIT) may have recorded it, and destroying a
    recorded root key cannot be undone, whereas an orphan is adopted by the next run. The
    original error is what propagates; a failed clean-up only leaves the orphan.
    """
    made: list[TokenKey] = []
    try:
        yield made
    except BaseException:
        for key in reversed(made):
            with contextlib.suppress(KMSError):
                if _recorded(db, key.label) is False:
                    if key.object_class == "private":
                        hsm.destroy_key_pair(key)
                    else:
                        hsm.destroy_token_key(key)
        raise


def _recorded(db: Database, label: str) -> bool | None:
    """Whether a row records ``label``; None when the database cannot say."""
    try:
        with db.begin() as session:
            return repo.root_key_by_label(session, label) is not None
    except KMSError:
        return None


def initialise(hsm: Hsm, session: Session, made: list[TokenKey] | None = None) -> list[InitOutcome]:
    """Create whatever root key is missing from both token and database; never overwrite.

    Each key created is appended to ``made`` (see :func:`undone_on_failure`).
    """
    outcomes = []
    for purpose, label, algorithm in _SPECS:
        key = _token_key(purpose, label)
        recorded = repo.root_key_by_label(session, label)
        in_token = hsm.has_token_key(key)
        if recorded is not None and not in_token:
            raise TokenKeyNotFound(
                f"the database records root key {label!r} but token {hsm.token_label!r} lacks it; "
                "restore the token from backup, or point KMS_DATABASE_URL at this token's database"
            )
        if recorded is not None:
            outcomes.append(InitOutcome(purpose.value, label, algorithm, "present"))
            continue
        action = "adopted"
        key_id = label.encode()
        if not in_token:
            action = "created"
            if purpose is RootKeyPurpose.STORAGE:
                created = hsm.create_storage_key(label, key_id)
            elif purpose is RootKeyPurpose.BINDING:
                created = hsm.create_binding_key(label, key_id)
            else:
                created = hsm.create_ec_key_pair(label, key_id, "P-384")
            if made is not None:
                made.append(created)
        check_value = hsm.check_value(key) if purpose is RootKeyPurpose.STORAGE else None
        repo.add(
            session,
            RootKey(
                label=label,
                key_id=key_id,
                purpose=purpose,
                version=1,
                algorithm=algorithm,
                check_value=check_value,
            ),
        )
        outcomes.append(InitOutcome(purpose.value, label, algorithm, action))
    return outcomes


def load_root_keys(hsm: Hsm, session: Session) -> RootKeys:
    """The current root keys, or :class:`NotInitialisedError` naming ``kms init``."""
    found: dict[RootKeyPurpose, RootKey] = {}
    for purpose, _label, _alg in _SPECS:
        rows = repo.root_keys(session, purpose)
        if not rows:
            raise NotInitialisedError(
                f"no {purpose.value.lower()} key is recorded: run `kms init` first"
            )
        found[purpose] = rows[0]
    storage = found[RootKeyPurpose.STORAGE]
    keys = RootKeys(
        storage=TokenKey(storage.label),
        storage_version=storage.version,
        binding=TokenKey(found[RootKeyPurpose.BINDING].label),
        audit=TokenKey(found[RootKeyPurpose.AUDIT].label, "private"),
    )
    for key in (keys.storage, keys.binding):
        if not hsm.has_token_key(key):
            raise NotInitialisedError(
                f"token {hsm.token_label!r} has no root key {key.label!r}: run `kms init` "
                "against this token, or check KMS_TOKEN_LABEL"
            )
    return keys


# --- transport keys (ceremony) ----------------------------------------------------------------


def create_transport_key(
    hsm: Hsm,
    session: Session,
    label: str,
    value: bytes | None,
    length: int,
    made: list[TokenKey] | None = None,
) -> RootKey:
    """Import (``value``) or generate a transport key as a non-extractable token object; the
    key, if created here, is appended to ``made`` (see :func:`undone_on_failure`)."""
    if not label or len(label) > 64 or not label.isprintable():
        raise InputError("a label is 1 to 64 printable characters", field="label")
    if repo.root_key_by_label(session, label) is not None:
        raise ConflictError(
            f"a key labelled {label!r} is already recorded; labels are never reused"
        )
    key = TokenKey(label)
    key_length = len(value) if value is not None else length
    if not hsm.has_token_key(key):
        created = hsm.create_transport_key(label, label.encode(), value, key_length)
        if made is not None:
            made.append(created)
    elif value is None or not _holds(hsm, key, value):
        # The token object outlived a ceremony whose transaction failed, or is someone else's.
        retry = "" if value is None else "it is not the key in this file; "
        raise ConflictError(
            f"token {hsm.token_label!r} already holds a key labelled {label!r} that the database "
            f"does not record; {retry}choose another label"
        )
    # else: an import interrupted after the token object was made; the same key file adopts it.
    row = RootKey(
        label=label,
        key_id=label.encode(),
        purpose=RootKeyPurpose.TRANSPORT,
        version=1,
        algorithm=f"AES-{key_length * 8}",
        check_value=hsm.check_value(key),
    )
    repo.add(session, row)
    return row


def _holds(hsm: Hsm, key: TokenKey, value: bytes) -> bool:
    """Whether ``key`` has this value, compared by the token's check values, never on the host."""
    probe = hsm.load_known_key(value)
    try:
        return hsm.check_value(probe) == hsm.check_value(key)
    finally:
        hsm.destroy(probe)


def transport_key(hsm: Hsm, session: Session, label: str) -> tuple[TokenKey, int]:
    """A recorded transport key and its length in bytes, or NotFoundError."""
    row = repo.root_key_by_label(session, label)
    if row is None or row.purpose is not RootKeyPurpose.TRANSPORT:
        raise NotFoundError(f"no transport key labelled {label!r}")
    return TokenKey(label), int(row.algorithm.split("-")[1]) // 8
