"""The benchmarks still run: each script in its shortest form on SQLite (a check, not a
measurement: the figures are not looked at), and the harness's phase timer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks.harness.timing import WORKER, PhaseTimer
from kms.phases import Phases
from tests.conftest import pkcs11_module_path, require_hsm, softhsm_problem

ROOT = Path(__file__).resolve().parents[2]


def test_the_phase_timer_reports_exclusive_time_and_worker_threads() -> None:
    timer: Phases = PhaseTimer()
    with timer.phase("outer"):
        time.sleep(0.02)
        with timer.phase("inner"):
            time.sleep(0.03)

    def apart() -> None:
        with timer.phase("apart"):
            pass

    worker = threading.Thread(target=apart)
    worker.start()
    worker.join()
    assert isinstance(timer, PhaseTimer)
    breakdown = timer.breakdown()
    assert set(breakdown) == {"outer", "inner", "apart" + WORKER}
    assert breakdown["inner"]["seconds"] >= 0.03
    assert 0.02 <= breakdown["outer"]["seconds"] < 0.03 + 0.02  # the inner phase taken out
    assert breakdown["outer"]["calls"] == breakdown["inner"]["calls"] == 1


#: The shortest run of each script, JSON on stdout.
SHORTEST = {
    "provision": ["--sizes", "20", "--databases", "sqlite"],
    "apdu": ["--count", "64", "--sizes", "13", "--suites", "0"],
    "pki": ["--p256", "16", "--p384", "0", "--seconds", "0.05", "--meters", "insert",
            "--breakdown"],
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHORTEST))
def test_each_benchmark_runs_in_its_shortest_form(name: str) -> None:
    problem = softhsm_problem(pkcs11_module_path())
    if problem is not None:
        if require_hsm():
            pytest.fail(problem)
        pytest.skip(problem)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMS_")}
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *SHORTEST[name], "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    document = json.loads(proc.stdout)
    assert document["command"].split()[1:3] == ["-m", f"benchmarks.{name}"]
    rows = document.get("results") or document.get("rows")
    assert rows
    assert all(row["checks"] == "ok" for row in rows)
    if name == "provision":
        assert document["setup"]["floor_matches_kms"]
    if name == "apdu":
        counts = document["setup"]["counts"]["0"]
        assert counts["protect_token_calls"] == counts["protects"]  # one token call per APDU
    if name == "pki":
        issue = next(row for row in rows if row["kind"] == "issue")
        assert "token: ECDSA sign (a slice per call)" in issue["breakdown"]
        assert "commit" in issue["breakdown"]
