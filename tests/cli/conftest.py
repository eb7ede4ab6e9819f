"""Fixtures of the CLI tests: the ``kms`` command bound to the test's token and database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import Cli


@pytest.fixture
def cli(kms_env: dict[str, str], tmp_path: Path) -> Cli:
    """``kms`` with ``kms_env`` (a fresh token and database), run in ``tmp_path``."""
    return Cli(kms_env, tmp_path)
