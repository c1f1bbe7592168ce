"""The Django app ``daphne``: put ``"daphne"`` in ``INSTALLED_APPS``.

Listing it gives a project daphne's ``runserver`` command (HTTP and WebSocket
through :class:`daphne.server.Server`) and the system checks in
:mod:`daphne.checks`. Only Django imports this module; ``import daphne``
itself needs no Django.
"""

from __future__ import annotations

from django.apps import AppConfig


class DaphneConfig(AppConfig):
    """daphne as a Django app: registers its system checks when ready."""

    name = "daphne"
    verbose_name = "Daphne"

    def ready(self) -> None:
        from django.core import checks

        from .checks import check_app_order, check_asgi_application

        checks.register(check_asgi_application)
        checks.register(check_app_order)
