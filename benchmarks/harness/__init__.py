"""What every benchmark shares, by concern.

* :mod:`~benchmarks.harness.token`: the throwaway SoftHSM2 token, the KMS's ``Hsm`` with its
  operations and token calls counted;
* :mod:`~benchmarks.harness.database`: the PostgreSQL server, throwaway databases on it and
  the CPU of the backends serving one;
* :mod:`~benchmarks.harness.timing`: CPU, wall time, peak RSS and the rest of the machine's load
  over a timed section, and the phase timer handed to the KMS (:mod:`kms.phases`);
* :mod:`~benchmarks.harness.children`: running a case in a fresh interpreter;
* :mod:`~benchmarks.harness.report`: progress, ``--json``/``--profile``/``--keep`` and the
  console tables.
"""
