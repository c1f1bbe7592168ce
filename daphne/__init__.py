"""daphne: a Twisted-based ASGI protocol server."""

__version__ = "5.0.0.dev0"
