"""Fixtures for the database tests: a migrated database, and warehouse's per-test transaction.

``db``
    A :class:`kms.db.Database` on a fresh database (``database_url``: SQLite or PostgreSQL as
    ``KMS_TEST_DATABASE`` says) brought to head by the real migrations, never by
    ``metadata.create_all()``. Tests that must see what :meth:`Database.begin` commits or rolls
    back use it directly.

``db_session``
    warehouse's ``get_db_session_for_app_config`` (docs/style-by-example.md): a connection with an
    open transaction, a session joined to it with ``join_transaction_mode="create_savepoint"``,
    and a rollback at the end, so nothing the test writes outlives it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from kms.db import Database
from kms.db.migrate import upgrade


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated database, disposed of after the test."""
    database = Database(database_url)
    upgrade(database.engine)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def db_session(db: Database) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test."""
    connection = db.engine.connect()
    transaction = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint")
    try:
        yield session
    finally:
        session.close()
        transaction.rollback()
        connection.close()
