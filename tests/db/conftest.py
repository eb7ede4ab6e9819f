"""Fixtures for the database tests, on the engine ``KMS_TEST_DATABASE`` names (SQLite, PostgreSQL).

Creating and dropping a PostgreSQL database costs most of a second on a busy machine, so each
test module gets one database of its own (from ``database_factory``) and every test gets it back
in the state it promises:

``engine``
    An engine on an *empty* database (no table, no ``alembic_version``). After the test every
    table is dropped again (found by reflection, so a test that broke the schema on purpose is
    cleaned up too); the fixture checks the database is empty before handing it over.

``db``
    A :class:`kms.db.Database` brought to head by the real migrations (never by
    ``metadata.create_all()``); every row is deleted after the test. Tests that must see what
    :meth:`Database.begin` commits or rolls back use it directly.

``db_session``
    warehouse's ``get_db_session_for_app_config`` (docs/architecture.md section 7.6): a connection
    with an
    open transaction, a session joined to it with ``join_transaction_mode="create_savepoint"``,
    and a rollback at the end, so nothing the test writes outlives it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, MetaData, inspect
from sqlalchemy.orm import Session

from kms.db import Database, ModelBase
from kms.db.migrate import upgrade
from kms.db.session import make_engine

if TYPE_CHECKING:
    from tests.conftest import DatabaseFactory


@pytest.fixture(scope="module")
def module_database_url(database_factory: DatabaseFactory) -> Iterator[str]:
    """An empty database for the whole module, dropped at its end."""
    url = database_factory.create()
    try:
        yield url
    finally:
        database_factory.drop(url)


def _drop_every_table(engine: Engine) -> None:
    reflected = MetaData()
    reflected.reflect(engine)
    reflected.drop_all(engine)


@pytest.fixture
def engine(module_database_url: str) -> Iterator[Engine]:
    """An engine on an empty database; whatever the test created is dropped afterwards."""
    eng = make_engine(module_database_url)
    try:
        leftover = inspect(eng).get_table_names()
        assert leftover == [], f"the database is not empty: {leftover}"
        yield eng
    finally:
        _drop_every_table(eng)
        eng.dispose()


@pytest.fixture(scope="module")
def _migrated(module_database_url: str) -> Iterator[Database]:
    database = Database(module_database_url)
    upgrade(database.engine)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def db(_migrated: Database) -> Iterator[Database]:
    """A migrated database with no rows; every row the test wrote is deleted afterwards."""
    try:
        yield _migrated
    finally:
        with _migrated.engine.begin() as conn:
            for table in reversed(ModelBase.metadata.sorted_tables):
                conn.execute(table.delete())


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
