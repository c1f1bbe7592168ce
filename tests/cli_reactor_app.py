from twisted.internet import reactor  # noqa: F401  (the default one, at import)

from tests.cli_apps import application

__all__ = ["application"]
