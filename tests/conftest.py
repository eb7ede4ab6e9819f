"""Fixtures every test can use: a private SoftHSM2 token, an empty database, a KMS environment.

SoftHSM2 sandbox
    On import, before anything can load the PKCS#11 library, this module writes its own
    ``softhsm2.conf`` into a fresh temporary directory and points ``SOFTHSM2_CONF`` at it, so no
    test ever reads or writes the system token directory (``/var/lib/softhsm/tokens``).

``token``
    A freshly initialised SoftHSM2 token with random PINs, deleted after the test. The module is
    ``KMS_PKCS11_MODULE`` or Debian's ``/usr/lib/softhsm/libsofthsm2.so``. Without SoftHSM2 the
    test is skipped, unless ``KMS_REQUIRE_HSM=1`` (as CI sets), which makes it an error.
    SoftHSM reads its token directory in ``C_Initialize``: a process that loaded the library
    before the token was made must re-initialise it (``lib.reinitialize()``) to see the token.

``database_url``
    A fresh, empty database (no schema: tests run the real migrations). ``KMS_TEST_DATABASE``
    picks the engine: ``sqlite`` (default) or ``postgresql``, in which case a database
    ``kms_test_<uuid>`` is created on the server at ``KMS_TEST_POSTGRES_URL`` (default: the output
    of ``scripts/postgres-test.sh url``) and dropped afterwards. A session-scoped fixture that needs
    its own database uses ``database_factory``.

``kms_env`` / ``kms_config``
    The environment of a KMS process bound to that token and database (for CLI subprocesses), and
    the :class:`kms.config.Config` it yields.

On the PostgreSQL leg, the number of tests that used a PostgreSQL database (through
``database_factory`` or ``database_url``) and passed is written to
``var/ci/postgresql-tests.count`` at the end of the session; ``make test`` and ``.ci/run`` check it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Connection, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests.postgres import drop_database

if TYPE_CHECKING:
    from kms.config import Config

DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
SYSTEM_TOKEN_DIR = Path("/var/lib/softhsm/tokens")
REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_SCRIPT = REPO_ROOT / "scripts" / "postgres-test.sh"
POSTGRES_COUNT_FILE = Path("var") / "ci" / "postgresql-tests.count"
DATABASE_KINDS = ("sqlite", "postgresql")
#: The head-end's system title in every test KMS ("KMS" and a serial part).
CLIENT_SYSTEM_TITLE = "4B4D5300000000A1"

# Environment variables a test run is steered by; kms_env passes them on, and drops every other
# KMS_* variable of the caller's shell so that a subprocess sees only the test's settings.
_RUNNER_VARIABLES = ("KMS_REQUIRE_HSM", "KMS_TEST_DATABASE", "KMS_TEST_POSTGRES_URL")


def _make_softhsm_sandbox() -> tuple[Path, Path]:
    # The same file as tests/softhsm.py writes, spelled out here because test_infrastructure.py
    # runs this conftest on its own, outside the package, where tests.softhsm cannot be imported.
    root = Path(tempfile.mkdtemp(prefix="kms-pytest-softhsm-"))
    tokens = root / "tokens"
    tokens.mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n",
        encoding="utf-8",
    )
    return root, conf


SOFTHSM_SANDBOX, SOFTHSM2_CONF = _make_softhsm_sandbox()
os.environ["SOFTHSM2_CONF"] = str(SOFTHSM2_CONF)


def require_hsm() -> bool:
    """True when a missing HSM must fail the run rather than skip (``KMS_REQUIRE_HSM=1``)."""
    return os.environ.get("KMS_REQUIRE_HSM", "").strip().lower() in {"1", "true", "yes"}


def database_kind() -> str:
    """``sqlite`` or ``postgresql``, from ``KMS_TEST_DATABASE``."""
    return os.environ.get("KMS_TEST_DATABASE", "").strip().lower() or "sqlite"


def pkcs11_module_path() -> str:
    """The PKCS#11 module the tests use."""
    return os.environ.get("KMS_PKCS11_MODULE") or DEFAULT_PKCS11_MODULE


def softhsm_problem(module: str) -> str | None:
    """Why SoftHSM2 tokens cannot be made here, or None."""
    if not Path(module).is_file():
        return f"PKCS#11 module {module} not found (apt-get install softhsm2, or KMS_PKCS11_MODULE)"
    if "softhsm" not in Path(module).name.lower():
        # The token fixture runs C_InitToken on a free slot: never point it at a real HSM.
        return f"{module} is not SoftHSM2, and the token fixture only initialises SoftHSM2 tokens"
    if shutil.which("softhsm2-util") is None:
        return "softhsm2-util not found on PATH (apt-get install softhsm2)"
    return None


def _softhsm2_util(*args: str, module: str | None = None) -> subprocess.CompletedProcess[str]:
    command = ["softhsm2-util", *args]
    if module is not None:
        command += ["--module", module]
    return subprocess.run(
        command,
        env={**os.environ, "SOFTHSM2_CONF": str(SOFTHSM2_CONF)},
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


# --- hooks -------------------------------------------------------------------------------------

_postgres_tests: set[str] = set()


def pytest_configure(config: pytest.Config) -> None:
    if database_kind() not in DATABASE_KINDS:
        raise pytest.UsageError(
            f"KMS_TEST_DATABASE={database_kind()!r}: expected one of {', '.join(DATABASE_KINDS)}"
        )


def pytest_report_header(config: pytest.Config) -> list[str]:
    module = pkcs11_module_path()
    problem = softhsm_problem(module)
    hsm = f"SoftHSM2 {module}" if problem is None else f"no SoftHSM2 ({problem})"
    return [
        f"kms: database={database_kind()} require_hsm={require_hsm()} {hsm}",
        f"kms: SOFTHSM2_CONF={SOFTHSM2_CONF}",
    ]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if (
        report.when == "call"
        and report.passed
        and database_kind() == "postgresql"
        and "database_factory" in getattr(item, "fixturenames", ())
    ):
        _postgres_tests.add(item.nodeid)
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if database_kind() != "postgresql":
        return
    count_file = session.config.rootpath / POSTGRES_COUNT_FILE
    count_file.parent.mkdir(parents=True, exist_ok=True)
    count_file.write_text(f"{len(_postgres_tests)}\n", encoding="utf-8")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(SOFTHSM_SANDBOX, ignore_errors=True)


# --- HSM fixtures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestToken:
    """A SoftHSM2 token initialised for one test."""

    __test__ = False  # not a test class, despite the name

    label: str
    user_pin: str
    so_pin: str
    module: str
    softhsm2_conf: str


@pytest.fixture(scope="session")
def pkcs11_module() -> str:
    """The SoftHSM2 module path; skips (or, with KMS_REQUIRE_HSM=1, fails) if there is none."""
    module = pkcs11_module_path()
    problem = softhsm_problem(module)
    if problem is not None:
        if require_hsm():
            pytest.fail(f"KMS_REQUIRE_HSM=1 but {problem}", pytrace=False)
        pytest.skip(f"SoftHSM2 unavailable: {problem} (KMS_REQUIRE_HSM=1 makes this a failure)")
    return module


@pytest.fixture
def token(pkcs11_module: str) -> Iterator[TestToken]:
    """A fresh SoftHSM2 token with random PINs, in the sandbox; deleted afterwards."""
    label = f"kms-test-{uuid.uuid4().hex[:8]}"
    user_pin = secrets.token_hex(8)
    so_pin = secrets.token_hex(8)
    result = _softhsm2_util(
        "--init-token", "--free", "--label", label, "--pin", user_pin, "--so-pin", so_pin,
        module=pkcs11_module,
    )  # fmt: skip
    if result.returncode != 0:
        # The argv holds the PINs: report only what the tool said.
        pytest.fail(
            f"softhsm2-util --init-token failed ({result.returncode}): "
            f"{result.stdout.strip()} {result.stderr.strip()}",
            pytrace=False,
        )
    try:
        yield TestToken(
            label=label,
            user_pin=user_pin,
            so_pin=so_pin,
            module=pkcs11_module,
            softhsm2_conf=str(SOFTHSM2_CONF),
        )
    finally:
        _softhsm2_util("--delete-token", "--token", label)


# --- database fixtures -------------------------------------------------------------------------


def _postgres_admin_url() -> str:
    url = os.environ.get("KMS_TEST_POSTGRES_URL", "").strip()
    if url:
        return url
    result = subprocess.run(
        [str(POSTGRES_SCRIPT), "url"],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    if result.returncode != 0 or not result.stdout.strip():
        pytest.fail(
            "KMS_TEST_DATABASE=postgresql but KMS_TEST_POSTGRES_URL is unset and "
            f"`scripts/postgres-test.sh url` failed: {result.stderr.strip()}",
            pytrace=False,
        )
    return result.stdout.strip()


class DatabaseFactory:
    """Creates empty databases of the kind ``KMS_TEST_DATABASE`` names, and drops them."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self._workdir = workdir
        self._live: list[str] = []
        self._admin_url = _postgres_admin_url() if kind == "postgresql" else None

    def create(self) -> str:
        """The URL of a new, empty database."""
        name = f"kms_test_{uuid.uuid4().hex}"
        if self._admin_url is None:
            url = f"sqlite:///{self._workdir / name}.db"
        else:
            with self._admin_connection() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            url = make_url(self._admin_url).set(database=name).render_as_string(False)
        self._live.append(url)
        return url

    def drop(self, url: str) -> None:
        """Drop a database this factory made, terminating its connections first."""
        if url not in self._live:
            return
        self._live.remove(url)
        name = make_url(url).database or ""
        if self._admin_url is None:
            Path(name).unlink(missing_ok=True)
            return
        drop_database(self._admin_url, name)

    def drop_all(self) -> None:
        for url in list(self._live):
            self.drop(url)

    @contextmanager
    def _admin_connection(self) -> Iterator[Connection]:
        assert self._admin_url is not None
        engine = create_engine(self._admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()


@pytest.fixture(scope="session")
def database_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseFactory]:
    """Makes empty databases on demand; whatever is still there at the end is dropped."""
    factory = DatabaseFactory(database_kind(), tmp_path_factory.mktemp("databases"))
    try:
        yield factory
    finally:
        factory.drop_all()


@pytest.fixture
def database_url(database_factory: DatabaseFactory, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    if database_factory.kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'kms.db'}"
        return
    url = database_factory.create()
    try:
        yield url
    finally:
        database_factory.drop(url)


# --- KMS environment ---------------------------------------------------------------------------


@pytest.fixture
def kms_env(token: TestToken, database_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a KMS process using ``token`` and ``database_url`` (for subprocesses)."""
    config_file = tmp_path / "kms.toml"
    config_file.touch()  # KMS_CONFIG must name a file that exists
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("KMS_") or key in _RUNNER_VARIABLES
    }
    env.update(
        SOFTHSM2_CONF=token.softhsm2_conf,
        KMS_PKCS11_MODULE=token.module,
        KMS_TOKEN_LABEL=token.label,
        KMS_USER_PIN=token.user_pin,
        KMS_DATABASE_URL=database_url,
        KMS_CONFIG=str(config_file),
        KMS_ACTOR="pytest",
        KMS_CLIENT_SYSTEM_TITLE=CLIENT_SYSTEM_TITLE,
    )
    return env


@pytest.fixture
def kms_config(kms_env: dict[str, str]) -> Config:
    """The KMS configuration ``kms_env`` describes."""
    from kms.config import load_config

    return load_config(kms_env)
