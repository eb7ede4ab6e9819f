"""The resources every service of a process shares: the configuration, the token session and the
metadata database, each opened on first use.

A command that needs only the database never logs in to the token, and services open the
database (whose schema gate refuses a database behind the code) before the token, so a stale
schema is refused before anything touches the token. Tests and embedding programs may hand in a
token and a database they opened themselves; those are theirs to close.
"""

from __future__ import annotations

from kms.config import Config
from kms.db import Database
from kms.db.migrate import require_current
from kms.hsm import Hsm, open_hsm

__all__ = ["Resources"]


class Resources:
    """The configuration, token and database of one process, each opened on first use."""

    def __init__(
        self, config: Config, *, hsm: Hsm | None = None, database: Database | None = None
    ) -> None:
        self.config = config
        self._hsm = hsm
        self._db = database
        #: Only what this object opened is closed by it.
        self._owns_hsm = hsm is None
        self._owns_db = database is None

    def database(self, *, migrated: bool = True) -> Database:
        """The metadata database; with ``migrated`` (the default) refused unless its schema is
        the newest this code knows (:class:`~kms.errors.SchemaOutdatedError` names the fix)."""
        if self._db is None:
            self._db = Database(self.config.database_url)
        if migrated:
            require_current(self._db.engine)
        return self._db

    def hsm(self) -> Hsm:
        """The token, logged in with the configured user PIN."""
        if self._hsm is None:
            self._hsm = open_hsm(self.config)
        return self._hsm

    def close(self) -> None:
        """Log out of the token and close the database pool."""
        if self._hsm is not None and self._owns_hsm:
            self._hsm.close()
        if self._db is not None and self._owns_db:
            self._db.dispose()
        self._hsm = self._hsm if not self._owns_hsm else None
        self._db = self._db if not self._owns_db else None
