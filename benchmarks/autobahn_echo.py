"""The WebSocket limit: autobahn's own echo server on daphne's reactor and loop.

A plain ``autobahn.twisted.websocket.WebSocketServerProtocol`` that sends
every message back, on Twisted's asyncio reactor over uvloop, listening
through the same endpoint strings as daphne. No HTTP parsing of daphne's, no
ASGI, no application: the difference to daphne's echo is what daphne adds
on top of the framing library it uses. ``GET /`` gets autobahn's status page,
which is all the benchmark's readiness check needs.

Run it with daphne's virtualenv::

    .venv/bin/python benchmarks/autobahn_echo.py --port 8000
"""

from raw_twisted import serve


def build_factory(reactor):
    from autobahn.twisted.websocket import (
        WebSocketServerFactory,
        WebSocketServerProtocol,
    )

    class Echo(WebSocketServerProtocol):
        def onMessage(self, payload, isBinary):
            self.sendMessage(payload, isBinary)

    factory = WebSocketServerFactory(reactor=reactor)
    factory.protocol = Echo
    return factory


if __name__ == "__main__":
    serve(__doc__.splitlines()[0], build_factory)
