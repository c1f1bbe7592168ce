"""ASGI entry point of the test project with Django Channels.

HTTP goes to Django as in asgi.py; WebSocket connections go through a
Channels URLRouter (routes in routing.py).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_project.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

# Set Django up (settings, app registry) before anything imports consumers.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from .routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
