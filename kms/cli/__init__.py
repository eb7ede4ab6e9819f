"""The ``kms`` command: thin commands that parse, call one service and print."""
