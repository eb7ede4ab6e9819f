"""Known-answer self-tests (kms/hsm/selftest.py) on SoftHSM2."""

from __future__ import annotations

from kms.hsm import Hsm
from kms.hsm.selftest import run_selftest


def test_both_known_answer_tests_pass_on_softhsm(hsm: Hsm) -> None:
    results = run_selftest(hsm)
    assert len(results) == 2
    failed = [(r.name, r.detail) for r in results if not r.passed]
    assert failed == []
    names = " ".join(r.name for r in results)
    assert "RFC 3394" in names
    assert "GCM" in names


def test_the_self_tests_leave_the_session_usable_and_can_run_again(hsm: Hsm) -> None:
    assert all(r.passed for r in run_selftest(hsm))
    assert all(r.passed for r in run_selftest(hsm))
