"""Alembic environment for the KMS metadata database.

Run through :mod:`kms.db.migrate` (``kms db upgrade``, ``kms init``, the tests), which hands over an
engine; ``alembic -c alembic.ini`` from the repository root works too (``KMS_DATABASE_URL``).
``compare_type`` and ``compare_server_default`` are on so the drift test sees every difference.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Engine

from kms.config import DEFAULT_DATABASE_URL
from kms.db.models import ModelBase
from kms.db.session import make_engine

config = context.config
target_metadata = ModelBase.metadata


def run_migrations() -> None:
    engine = config.attributes.get("engine")
    if not isinstance(engine, Engine):
        engine = make_engine(os.environ.get("KMS_DATABASE_URL", DEFAULT_DATABASE_URL))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            compare_server_default=True,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations()
