"""Invocation counters survive SIGKILL and concurrency (issue 4 section 6;
docs/architecture.md, invariant 4).

Two head-end processes (:mod:`tests.services.hes.ic_worker`) protect APDUs for the same meter at
once, each with its own token login and database connection and a small counter block (so that
reservations commit often and kills land inside blocks and inside reservations). The test kills
one of them with SIGKILL at a random moment, restarts it, and does that again, at least
``KILLS`` times; then it stops both cleanly and checks everything that was ever *emitted* (an
APDU is emitted once its worker wrote and fsync'd its line):

* no IC appears twice across all processes and runs, and every IC is in 1 .. 0xFFFFFFFE;
* every emitted APDU verifies under pyca/cryptography with the keys the simulated meter learnt
  (IV = client system title || IC, AAD = SC || GAK, 12-byte tag) -- not through the KMS's own
  verify, whose receive floor refuses out-of-order ICs from two senders by design;
* the database's SEND counter is above every emitted IC, and the ICs reserved but never emitted
  are at most one block per process run (a crash skips the rest of a block, nothing more);
* the audit trail's ``ic.reserve`` blocks are disjoint and hold every emitted IC, and the chain
  still verifies after the kills.

A kill counts only when it hit a worker that had emitted at least one APDU in its current run
(so was inside its loop); a worker that fails to start (a login colliding with another process's
beyond the adapter's retries) is restarted, not counted. The random seed is printed and can be
fixed with ``KMS_TEST_IC_SEED`` to replay a schedule.

PostgreSQL (row lock on the counter) is the engine this is about; on the SQLite leg the same test
runs against ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sqlalchemy import select

from kms.db import AuditEvent, Direction, KeyRole
from kms.db import repository as repo
from kms.keystore.counters import FIRST_INVOCATION_COUNTER, LAST_INVOCATION_COUNTER
from kms.services.common import audit
from kms.services.hes.protection import apdu_protection_factory
from tests.conftest import CLIENT_SYSTEM_TITLE, REPO_ROOT, database_kind
from tests.kms_fixtures import Kms, field_meter
from tests.services.hes.ic_worker import GET_REQUEST, SECURITY_CONTROL

CLIENT = bytes.fromhex(CLIENT_SYSTEM_TITLE)
#: Counters per reservation: small, so a run of a second or less commits dozens of blocks.
IC_BLOCK_SIZE = 7
#: SIGKILLs delivered to a worker inside its loop, per test.
KILLS = 24
#: A kill comes this long (uniformly drawn) after the victim emitted its first APDU of the run.
MAX_KILL_DELAY = 0.3
#: Guards against a hang, not timing assertions: the kill phase takes ~15 s on two idle cores
#: (a worker needs ~0.5 s to import, log in and emit), 70-90 s with both cores busy elsewhere.
BUDGET_SECONDS = 240.0
#: A worker must emit its first APDU within this time of being started.
START_TIMEOUT = 60.0
#: Workers that die before emitting (e.g. a login collision beyond the retries), per test.
MAX_START_FAILURES = 10
GLO_GET_REQUEST = 0xC8
TAG_LENGTH = 12


@dataclass
class Worker:
    """One of the two head-end slots: the process running now, and every output it wrote."""

    slot: int
    system_title: bytes
    out_dir: Path
    env: dict[str, str]
    runs: int = 0
    outputs: list[Path] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    stderr: IO[bytes] | None = None
    started_at: float = 0.0

    @property
    def output(self) -> Path:
        return self.outputs[-1]

    def start(self) -> None:
        self.runs += 1
        name = f"worker{self.slot}-run{self.runs:02d}"
        self.outputs.append(self.out_dir / f"{name}.out")
        if self.stderr is not None:
            self.stderr.close()
        self.stderr = (self.out_dir / f"{name}.err").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.services.hes.ic_worker",
                self.system_title.hex(),
                str(self.output),
                str(IC_BLOCK_SIZE),
            ],
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )
        self.started_at = time.monotonic()

    def emitting(self) -> bool:
        """True once this run has written at least one APDU."""
        try:
            return self.output.stat().st_size > 0
        except FileNotFoundError:
            return False

    def error_output(self) -> str:
        path = self.output.with_suffix(".err")
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None


class Supervisor:
    """Starts, watches, kills and restarts the workers."""

    def __init__(self, workers: list[Worker], seed: int) -> None:
        self.workers = workers
        self.seed = seed
        self.kills = 0
        self.start_failures = 0
        self.deadline = time.monotonic() + BUDGET_SECONDS

    def fail(self, message: str) -> None:
        pytest.fail(f"{message} (seed {self.seed}, {self.kills} kills so far)", pytrace=False)

    def check(self, worker: Worker) -> None:
        """Restart a worker that died before emitting; fail on one that died inside its loop."""
        assert worker.process is not None
        status = worker.process.poll()
        if status is None:
            return
        if worker.emitting():
            self.fail(
                f"worker {worker.slot} exited with status {status} by itself after emitting "
                f"APDUs ({worker.output.name}):\n{worker.error_output()}"
            )
        self.start_failures += 1
        if self.start_failures > MAX_START_FAILURES:
            self.fail(
                f"workers failed to start {self.start_failures} times; the last one said:\n"
                f"{worker.error_output()}"
            )
        worker.start()

    def wait_until_emitting(self, worker: Worker) -> None:
        while not worker.emitting():
            for each in self.workers:
                self.check(each)
            now = time.monotonic()
            if now > self.deadline:
                self.fail(f"the kill phase took longer than {BUDGET_SECONDS} s")
            if now - worker.started_at > START_TIMEOUT:
                self.fail(
                    f"worker {worker.slot} emitted nothing within {START_TIMEOUT} s of its start:"
                    f"\n{worker.error_output()}"
                )
            time.sleep(0.01)

    def kill_at_random(self, rng: random.Random) -> None:
        """Wait until a random worker is inside its loop, SIGKILL it a bit later, restart it."""
        victim = rng.choice(self.workers)
        self.wait_until_emitting(victim)
        time.sleep(rng.uniform(0.0, MAX_KILL_DELAY))
        self.check(victim)  # fails the test if it died on its own
        assert victim.process is not None
        victim.process.send_signal(signal.SIGKILL)
        status = victim.process.wait()
        if status != -signal.SIGKILL:
            self.fail(f"worker {victim.slot} ended with status {status}, not by the SIGKILL")
        self.kills += 1
        victim.start()

    def stop(self) -> None:
        """Let both workers emit once more, then stop them with SIGTERM (a clean exit)."""
        for worker in self.workers:
            self.wait_until_emitting(worker)
        for worker in self.workers:
            assert worker.process is not None
            worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            assert worker.process is not None
            try:
                status = worker.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.fail(f"worker {worker.slot} did not stop within 30 s of SIGTERM")
            if status != 0:
                self.fail(
                    f"worker {worker.slot} stopped with status {status}:\n{worker.error_output()}"
                )


@dataclass(frozen=True)
class Emitted:
    """One line a worker wrote: the IC it reported and the ciphered APDU."""

    source: str
    ic: int
    apdu: bytes


def read_emitted(path: Path) -> list[Emitted]:
    """Every complete line of a worker's output. A line cut short by SIGKILL in the middle of
    its write was never fsync'd, so never emitted: it is left out (and only a last line can be)."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    emitted = []
    for number, line in enumerate(lines[:-1], start=1):
        ic, apdu = line.decode("ascii").split(" ")
        emitted.append(Emitted(f"{path.name}:{number}", int(ic), bytes.fromhex(apdu)))
    return emitted


def verify_with_pyca(item: Emitted, guek: bytes, gak: bytes) -> None:
    """The glo-get-request as a meter checks it, by pyca/cryptography alone."""
    apdu = item.apdu
    assert apdu[0] == GLO_GET_REQUEST, f"{item.source}: tag 0x{apdu[0]:02x}"
    assert apdu[1] == len(apdu) - 2, f"{item.source}: length byte {apdu[1]}"
    assert apdu[2] == SECURITY_CONTROL, f"{item.source}: SC 0x{apdu[2]:02x}"
    header_ic = int.from_bytes(apdu[3:7], "big")
    assert header_ic == item.ic, f"{item.source}: IC {header_ic} in the APDU, {item.ic} reported"
    ciphertext, tag = apdu[7:-TAG_LENGTH], apdu[-TAG_LENGTH:]
    iv = CLIENT + header_ic.to_bytes(4, "big")
    decryptor = Cipher(
        algorithms.AES(guek), modes.GCM(iv, tag, min_tag_length=TAG_LENGTH)
    ).decryptor()
    decryptor.authenticate_additional_data(bytes([SECURITY_CONTROL]) + gak)
    try:
        plain = decryptor.update(ciphertext) + decryptor.finalize()
    except InvalidTag:
        pytest.fail(f"{item.source}: the APDU with IC {item.ic} does not verify", pytrace=False)
    assert plain == GET_REQUEST, f"{item.source}: deciphered to {plain.hex()}"


def reserved_blocks(kms: Kms, subject: str) -> list[tuple[int, int]]:
    """The (first, last) of every SEND block the audit trail records for ``subject``."""
    with kms.db.begin() as session:
        query = select(AuditEvent.details).where(
            AuditEvent.operation == "ic.reserve", AuditEvent.subject == subject
        )
        details = [json.loads(text) for text in session.scalars(query)]
    return sorted((d["first"], d["last"]) for d in details if d["direction"] == "SEND")


@pytest.mark.slow
@pytest.mark.parametrize(
    "engine",
    [
        pytest.param(
            "postgresql",
            marks=[
                pytest.mark.postgresql,
                pytest.mark.skipif(
                    database_kind() != "postgresql",
                    reason="needs KMS_TEST_DATABASE=postgresql (and a server, "
                    "scripts/postgres-test.sh start)",
                ),
            ],
        ),
        pytest.param(
            "sqlite",
            marks=pytest.mark.skipif(
                database_kind() != "sqlite", reason="runs on the SQLite leg (KMS_TEST_DATABASE)"
            ),
        ),
    ],
)
def test_sigkilled_concurrent_senders_never_reuse_an_invocation_counter(
    kms: Kms, kms_env: dict[str, str], tmp_path: Path, engine: str
) -> None:
    assert kms.db.engine.dialect.name == engine
    meter = field_meter(kms, tmp_path, 1, 0)
    keys = meter.keys()
    seed = int(os.environ.get("KMS_TEST_IC_SEED") or random.SystemRandom().randrange(2**32))
    print(f"KMS_TEST_IC_SEED={seed}")
    rng = random.Random(seed)
    out_dir = tmp_path / "workers"
    out_dir.mkdir()
    workers = [Worker(slot, meter.system_title, out_dir, kms_env) for slot in (0, 1)]
    supervisor = Supervisor(workers, seed)
    began = time.monotonic()
    try:
        for worker in workers:  # both at once: their logins may collide, the adapter retries
            worker.start()
        while supervisor.kills < KILLS:
            supervisor.kill_at_random(rng)
        supervisor.stop()
    finally:
        for worker in workers:
            worker.close()
    elapsed = time.monotonic() - began

    emitted = [item for worker in workers for path in worker.outputs for item in read_emitted(path)]
    runs = sum(worker.runs for worker in workers)
    print(
        f"{engine}: {supervisor.kills} kills, {runs} runs, {supervisor.start_failures} failed "
        f"starts, {len(emitted)} APDUs emitted in {elapsed:.1f} s"
    )
    assert supervisor.kills >= KILLS

    # No IC twice, across every process and run; each one a valid IC.
    counts = Counter(item.ic for item in emitted)
    duplicates = {ic: n for ic, n in counts.items() if n > 1}
    assert not duplicates, f"ICs emitted more than once (seed {seed}): {sorted(duplicates)[:20]}"
    assert all(FIRST_INVOCATION_COUNTER <= item.ic <= LAST_INVOCATION_COUNTER for item in emitted)
    # Within one run the ICs only go up (each new block lies above the previous one).
    for worker in workers:
        for path in worker.outputs:
            ics = [item.ic for item in read_emitted(path)]
            assert ics == sorted(set(ics)), f"{path.name}: ICs not strictly increasing"

    # Every emitted APDU is what a meter accepts.
    for item in emitted:
        verify_with_pyca(item, keys["GUEK"], keys["GAK"])

    # The database's SEND counter lies above everything emitted, and what was reserved but never
    # emitted is at most one block per run (the rest of a block lost to a crash or a stop).
    service = apdu_protection_factory(kms.hsm, kms.db, kms.config)
    try:
        guek = service.keys.setups.setup(meter.system_title, 0).key(KeyRole.GUEK)
    finally:
        service.close()
    with kms.db.begin() as session:
        next_free = repo.invocation_counter(session, guek.id, Direction.SEND)
    assert next_free is not None
    assert next_free > max(counts)
    assert next_free - FIRST_INVOCATION_COUNTER - len(emitted) <= runs * IC_BLOCK_SIZE

    # The audit trail holds each reservation: disjoint blocks, back to back, covering every
    # emitted IC; and the chain survived the kills.
    blocks = reserved_blocks(kms, guek.describe())
    expected_start = FIRST_INVOCATION_COUNTER
    for first, last in blocks:
        assert (first, last) == (expected_start, expected_start + IC_BLOCK_SIZE - 1)
        expected_start = last + 1
    assert expected_start == next_free
    with kms.db.begin() as session:
        audit.verify(kms.hsm, session)
