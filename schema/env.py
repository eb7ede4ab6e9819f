"""Alembic environment for the KMS metadata database.

Run through :mod:`kms.db.migrate` (``kms db upgrade``, ``kms init``, the tests), which hands over an
engine; ``alembic -c alembic.ini`` from the repository root works too, on the database the KMS's
own configuration names (``KMS_DATABASE_URL``, kms.toml, or the default in the data directory).
The KMS ships this folder in its package and Alembic loads it by path: it is never imported.
``compare_type`` and ``compare_server_default`` are on so the drift test sees every difference.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from kms.config import load_config
from kms.db.models import ModelBase
from kms.db.session import make_engine

config = context.config
target_metadata = ModelBase.metadata


def run_migrations() -> None:
    engine = config.attributes.get("engine")
    if not isinstance(engine, Engine):
        engine = make_engine(load_config().database_url)
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
