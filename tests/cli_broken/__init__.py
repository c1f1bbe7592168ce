"""Applications whose own code fails, for the command-line error tests.

Each module fails in a different place (see tests/test_cli_user_errors.py);
the line numbers are checked there, so keep the failing lines where they are.
"""
