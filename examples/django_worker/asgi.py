"""What daphne and the workers import.

``daphne examples.django_worker.asgi:channel_layer`` serves the layer (the
front server holds the connections); ``daphne-worker
examples.django_worker.asgi:channel_layer examples.django_worker.asgi:application``
runs the Django application behind it.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_worker.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()

from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from .consumers import ChatConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": URLRouter([path("ws/chat", ChatConsumer.as_asgi())]),
    }
)

channel_layer = get_channel_layer()
