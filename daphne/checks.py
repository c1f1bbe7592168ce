"""Django system checks for a project that serves through daphne, and the
loader of ``settings.ASGI_APPLICATION`` they share with ``runserver``.

- ``daphne.E001``: ``ASGI_APPLICATION`` is not set;
- ``daphne.E002``: it names something that cannot be imported;
- ``daphne.W001``: ``daphne`` comes after ``django.contrib.staticfiles`` in
  ``INSTALLED_APPS``, so Django's own ``runserver`` (WSGI, no WebSocket) wins.
"""

from __future__ import annotations

import importlib
import traceback
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured

STATICFILES = "django.contrib.staticfiles"


class ApplicationNotSet(ImproperlyConfigured):
    """``settings.ASGI_APPLICATION`` is missing or empty."""


def load_asgi_application() -> Any:
    """The object ``settings.ASGI_APPLICATION`` names (``"package.module.name"``).

    Raises ImproperlyConfigured when the setting is missing, its module does
    not exist or lacks the name; an exception raised by the project's own
    code while it is imported propagates unchanged, traceback and all.
    """
    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        raise ApplicationNotSet(
            "settings.ASGI_APPLICATION is not set; daphne serves the ASGI "
            "application it names, e.g. ASGI_APPLICATION = "
            '"myproject.asgi.application"'
        )
    if not isinstance(path, str) or "." not in path.strip("."):
        raise ImproperlyConfigured(
            f"settings.ASGI_APPLICATION must be a dotted path such as "
            f'"myproject.asgi.application", not {path!r}'
        )
    module_path, _, name = path.rpartition(".")
    try:
        module = importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_path == missing or module_path.startswith(missing + "."):
            raise ImproperlyConfigured(
                f"settings.ASGI_APPLICATION is {path!r}, but there is no "
                f"module named {missing!r}"
            ) from None
        raise  # a module the project's code imports is missing: its error
    try:
        return getattr(module, name)
    except AttributeError:
        raise ImproperlyConfigured(
            f"settings.ASGI_APPLICATION is {path!r}, but module "
            f"{module_path!r} has no {name!r}"
        ) from None


def check_asgi_application(
    app_configs: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """``ASGI_APPLICATION`` is set and can be imported."""
    try:
        load_asgi_application()
    except ApplicationNotSet as exc:
        return [Error(str(exc), id="daphne.E001")]
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="daphne.E002")]
    except Exception as exc:
        return [
            Error(
                f"settings.ASGI_APPLICATION ({settings.ASGI_APPLICATION!r}) "
                f"could not be imported: {type(exc).__name__}: {exc}",
                hint=_where(exc),
                id="daphne.E002",
            )
        ]
    return []


def check_app_order(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``daphne`` is listed before ``django.contrib.staticfiles``."""
    names = [config.name for config in apps.get_app_configs()]
    if STATICFILES in names and names.index("daphne") > names.index(STATICFILES):
        return [
            Warning(
                "'daphne' is listed after 'django.contrib.staticfiles' in "
                "INSTALLED_APPS, so runserver is Django's own (WSGI, no "
                "WebSocket) rather than daphne's",
                hint="Move 'daphne' above 'django.contrib.staticfiles' "
                "(the first app to define a command wins).",
                id="daphne.W001",
            )
        ]
    return []


def _where(exc: BaseException) -> str | None:
    """The innermost frame of ``exc`` as ``File ..., line ...`` and its source."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    frame = frames[-1]
    where = f'File "{frame.filename}", line {frame.lineno}, in {frame.name}'
    return f"{where}: {frame.line}" if frame.line else where
