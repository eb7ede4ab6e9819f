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

from sqlalchemy import BigInteger, DateTime, Enum, LargeBinary, MetaData, String
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


def _enum_values(enum_cls: type[enum.Enum]) -> list[str]:
    return [str(member.value) for member in enum_cls]


class ModelBase(DeclarativeBase):
    """Base of every model; enums are stored by value as VARCHAR (no native enum type)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        enum.Enum: Enum(enum.Enum, native_enum=False, values_callable=_enum_values, length=16),
        bytes: LargeBinary(),
        str: String(),
        datetime.datetime: DateTime(timezone=True),
    }


intpk = Annotated[int, mapped_column(primary_key=True)]
bigint = Annotated[int, mapped_column(BigInteger)]
datetime_now = Annotated[datetime.datetime, mapped_column(DateTime(timezone=True), default=utcnow)]
