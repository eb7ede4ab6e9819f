"""A head-end process for tests/services/hes/test_ic_crash_concurrency.py: protect APDUs until told
to stop, or until SIGKILL.

Run as ``python -m tests.services.hes.ic_worker SYSTEM_TITLE_HEX OUTPUT IC_BLOCK_SIZE`` with the
environment of a KMS process (``kms_env``). It opens its own login on the token and its own
database connection, exactly as a second head-end node would, and loops protecting a GET request
with SC 0x30 for one meter. Each result is appended to ``OUTPUT`` as one line ``IC APDU_HEX``,
written with a single ``write`` and fsync'd before the next APDU is asked for: an APDU is
*emitted* once its line is on disk. A kill between ``protect`` and the write loses an APDU that
was never emitted; its IC is burnt all the same (invariant 4).

Before the loop it creates ``OUTPUT.ready``, so the test knows the login and the first database
round trips are behind it. SIGTERM asks for a clean stop: the loop ends, the keys are destroyed,
the session closed, and the exit status is 0.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType

#: A GET request (invoke-id 0x01, class 8, 0.0.1.0.0.255, attribute 2): the clock's time.
GET_REQUEST = bytes.fromhex("C0010000080000010000FF0200")
#: Authenticated and encrypted, suite 0.
SECURITY_CONTROL = 0x30

_stop = False


def _request_stop(_signum: int, _frame: FrameType | None) -> None:
    global _stop
    _stop = True


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: ic_worker SYSTEM_TITLE_HEX OUTPUT IC_BLOCK_SIZE", file=sys.stderr)
        return 2
    system_title = bytes.fromhex(argv[0])
    output = Path(argv[1])
    block_size = int(argv[2])
    signal.signal(signal.SIGTERM, _request_stop)

    from kms.config import load_config
    from kms.services.root import Services

    services = Services(load_config(os.environ))
    service = services.apdus(ic_block_size=block_size)
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # Load the meter's setup before announcing readiness (a database round trip).
        service.keys.setups.setup(system_title, 0)
        Path(f"{output}.ready").touch()
        while not _stop:
            result = service.protect(
                system_title, GET_REQUEST, SECURITY_CONTROL, actor=services.config.actor
            )
            line = f"{result.invocation_counter} {result.apdu.hex()}\n".encode()
            if os.write(fd, line) != len(line):
                raise OSError(f"short write to {output}")
            os.fsync(fd)
    finally:
        os.close(fd)
        services.close()  # the APDU service's keys first, then the token and the database
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
