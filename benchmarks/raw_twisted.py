"""The limit: a bare Twisted protocol on the reactor and loop daphne uses.

It installs Twisted's asyncio reactor on a uvloop event loop, exactly as
daphne does, listens through the same endpoint-string machinery, and answers
every request head it sees (each ``\\r\\n\\r\\n``) with a canned
``Hello, world!`` response. There is no HTTP parsing, no ASGI, no
application: whatever a real server spends above this line is its own cost.

Run it with daphne's virtualenv, so the Twisted and uvloop versions are the
ones daphne runs on::

    .venv/bin/python benchmarks/raw_twisted.py --port 8000
"""

import argparse

RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 13\r\n"
    b"\r\n"
    b"Hello, world!"
)
HEAD_END = b"\r\n\r\n"


def install_reactor():
    """Twisted's asyncio reactor on a fresh uvloop loop, like daphne's."""
    import uvloop
    from twisted.internet import asyncioreactor

    asyncioreactor.install(uvloop.new_event_loop())
    from twisted.internet import reactor

    return reactor


def build_factory(reactor):
    from twisted.internet.protocol import Factory, Protocol

    class CannedHello(Protocol):
        """Counts request heads; a head split across reads is still one."""

        tail = b""

        def dataReceived(self, data):
            buffer = self.tail + data if self.tail else data
            heads = buffer.count(HEAD_END)
            # Keep three bytes: enough to finish a terminator in the next read,
            # never enough to count a whole one twice.
            self.tail = buffer[-3:]
            if heads:
                self.transport.write(RESPONSE * heads)

    return Factory.forProtocol(CannedHello)


def serve(description, build_factory, argv=None):
    """Parse ``--host``/``--port``, then serve ``build_factory(reactor)`` on
    daphne's reactor and loop until interrupted."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)

    reactor = install_reactor()
    from twisted.internet.endpoints import serverFromString

    endpoint = serverFromString(reactor, f"tcp:{args.port}:interface={args.host}")
    endpoint.listen(build_factory(reactor))
    reactor.run()


if __name__ == "__main__":
    serve(__doc__.splitlines()[0], build_factory)
