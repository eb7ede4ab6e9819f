"""Declarative base, naming convention and column aliases shared by every model.

After warehouse's ``db.py``: one ``ModelBase`` owning one ``MetaData`` with a naming convention (so
Alembic names every constraint the same way on SQLite and PostgreSQL), enums stored by ``.value``
as plain strings (a stable text survives re-ordering an enum, an ordinal does not), and
``Annotated`` aliases for the common column shapes.
"""

from __future__ import annotations

import datetime
import enum
from typing import Annotated, Any, ClassVar

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    Enum,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime.datetime:
    """Timezone-aware now; stored as UTC."""
    return datetime.datetime.now(datetime.UTC)


class UTCDateTime(TypeDecorator[datetime.datetime]):
    """A timezone-aware UTC datetime on every engine.

    SQLite keeps no zone and PostgreSQL answers in the server's zone; both come back as UTC
    here, so ``--json`` output and the audit chain's canonical form never depend on the engine.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime.datetime | None, dialect: Dialect
    ) -> datetime.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: give a timezone")
        return value.astimezone(datetime.UTC)

    def process_result_value(
        self, value: datetime.datetime | None, dialect: Dialect
    ) -> datetime.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=datetime.UTC)
        return value.astimezone(datetime.UTC)


def _enum_values(enum_cls: type[enum.Enum]) -> list[str]:
    return [str(member.value) for member in enum_cls]


class ModelBase(DeclarativeBase):
    """Base of every model; enums are stored by value as VARCHAR (no native enum type)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        enum.Enum: Enum(enum.Enum, native_enum=False, values_callable=_enum_values, length=16),
        bytes: LargeBinary(),
        str: String(),
        datetime.datetime: UTCDateTime(),
    }


intpk = Annotated[int, mapped_column(primary_key=True)]
bigint = Annotated[int, mapped_column(BigInteger)]
datetime_now = Annotated[datetime.datetime, mapped_column(UTCDateTime(), default=utcnow)]
