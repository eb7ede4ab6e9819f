"""Alembic, driven from code: upgrade to head, and the gate that refuses a database behind it.

The migration scripts live in ``schema/`` at the top of the repository (docs/architecture.md
section 5) and ship in the package (:mod:`kms._data`), so an installed KMS migrates with no
checkout.
Every command that reads or writes the key store (all but ``kms db upgrade|status``, ``kms init``
and ``kms selftest``, which touches only the token) calls :func:`require_current` first, so a
database that is behind is refused with the command that fixes it, not with a missing-table error
half-way through a batch.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine

from kms._data import data_path
from kms.db.session import database_errors
from kms.errors import ConfigError, SchemaOutdatedError

#: Alembic's script directory (``env.py``, ``versions/``): a real directory, as Alembic loads
#: its files by path.
SCHEMA_DIR: Path = data_path("schema")


def alembic_config(engine: Engine) -> AlembicConfig:
    """An Alembic config bound to ``engine`` (the URL never goes through ini interpolation)."""
    if not (SCHEMA_DIR / "env.py").is_file():
        # Rather than Alembic's traceback: this installation lacks its migrations.
        raise ConfigError(
            f"the database migrations are missing (looked for {SCHEMA_DIR / 'env.py'}): "
            "reinstall dlms-kms"
        )
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(SCHEMA_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` when it was never migrated."""
    with database_errors("cannot read the schema revision"), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _known(engine: Engine, revision: str) -> bool:
    try:
        return (
            ScriptDirectory.from_config(alembic_config(engine)).get_revision(revision) is not None
        )
    except CommandError:
        return False


def _refuse_unknown(engine: Engine, current: str | None) -> None:
    if current is not None and not _known(engine, current):
        raise SchemaOutdatedError(
            f"the database is at revision {current}, which this KMS does not know: it was "
            "migrated by a newer release; run that release (or restore a matching backup)"
        )


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the database to ``revision``; returns (before, after)."""
    before = current_revision(engine)
    _refuse_unknown(engine, before)
    with database_errors("schema upgrade failed"):
        command.upgrade(alembic_config(engine), revision)
    return before, current_revision(engine) or "base"


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database down to ``revision`` (tests and operators undoing a release)."""
    with database_errors("schema downgrade failed"):
        command.downgrade(alembic_config(engine), revision)


def require_current(engine: Engine) -> None:
    """Refuse a database that is not at head, naming the command that fixes it."""
    current = current_revision(engine)
    head = head_revision(engine)
    _refuse_unknown(engine, current)
    if current != head:
        state = "not migrated" if current is None else f"at revision {current}"
        raise SchemaOutdatedError(
            f"the database is {state} but this KMS needs revision {head}: run `kms db upgrade`"
        )
