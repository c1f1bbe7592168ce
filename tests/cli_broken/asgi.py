"""An ASGI module that imports a consumers module with a NameError."""

from tests.cli_broken.consumers import ChatConsumer

application = ChatConsumer
