"""Fixtures: see tests/kms_fixtures.py."""

from tests.kms_fixtures import *  # noqa: F403
