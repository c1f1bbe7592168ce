"""WebSocket URL routes of the test project, for channels.routing.URLRouter."""

from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/echo/<str:room>/", consumers.EchoConsumer.as_asgi()),
    path("ws/async-echo/<str:room>/", consumers.AsyncEchoConsumer.as_asgi()),
    path("ws/deny/", consumers.DenyConsumer.as_asgi()),
    path("ws/chat/<str:room>/", consumers.ChatConsumer.as_asgi()),
    path("ws/silent/", consumers.SilentConsumer.as_asgi()),
    # Accepts only an Origin header whose host is in settings.ALLOWED_HOSTS.
    path(
        "ws/guarded/<str:room>/",
        AllowedHostsOriginValidator(consumers.EchoConsumer.as_asgi()),
    ),
]
