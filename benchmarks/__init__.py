"""Benchmarks of the KMS against bare-token floors (see benchmarks/README.md).

Run each from the repository root as a module: ``python -m benchmarks.provision``,
``python -m benchmarks.apdu``, ``python -m benchmarks.pki``. What they share -- the throwaway
token and databases, the clocks, the report options and output -- is :mod:`benchmarks.harness`.
"""
