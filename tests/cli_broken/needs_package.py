"""Imports a package that is not installed (the user's error, not daphne's)."""

import daphne_test_package_not_installed  # noqa: F401 - line 3

application = None
