"""The installation itself: the database schema (``kms db upgrade|status``) and the token's
self-test (``kms selftest``). Nothing here touches key material or writes an audit record.
"""

from __future__ import annotations

from dataclasses import dataclass

from kms.db.migrate import current_revision, head_revision, upgrade
from kms.hsm.selftest import SelfTestResult, run_selftest
from kms.services.common.resources import Resources

__all__ = ["SchemaStatus", "SelfTestReport", "SystemService"]


@dataclass(frozen=True)
class SchemaStatus:
    """The schema revision of the database and the one this code needs."""

    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


@dataclass(frozen=True)
class SelfTestReport:
    """The token's known-answer tests and the mechanisms it offers and the profile uses."""

    token: str
    profile: str
    tests: list[SelfTestResult]
    mechanisms: list[str]
    profile_mechanisms: dict[str, str]

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.tests)


class SystemService:
    """The schema and the token's health (module docstring)."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources

    def upgrade_schema(self) -> tuple[str | None, str]:
        """Bring the database to the newest schema; returns (before, after)."""
        return upgrade(self._resources.database(migrated=False).engine)

    def schema_status(self) -> SchemaStatus:
        """Where the database's schema is, and where this code needs it."""
        engine = self._resources.database(migrated=False).engine
        return SchemaStatus(current_revision(engine), head_revision(engine))

    def selftest(self) -> SelfTestReport:
        """Known-answer tests in the token with throwaway session keys (no database)."""
        hsm = self._resources.hsm()
        results = run_selftest(hsm)
        return SelfTestReport(
            token=hsm.token_label,
            profile=hsm.profile.name,
            tests=results,
            mechanisms=hsm.mechanisms(),
            profile_mechanisms=hsm.profile.mechanism_names(),
        )
