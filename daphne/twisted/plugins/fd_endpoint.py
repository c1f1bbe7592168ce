"""Twisted endpoint plugin for the ``fd:`` server endpoint type.

Lets ``serverFromString(reactor, "fd:fileno=3")`` adopt an already-listening
socket when Twisted discovers this plugin. The parsing lives in
``daphne.endpoints`` so that daphne itself does not depend on discovery.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.plugin import IPlugin
from zope.interface import implementer

from daphne.endpoints import fd_endpoint


@implementer(IPlugin, IStreamServerEndpointStringParser)
class FileDescriptorEndpointParser:
    """Parses ``fd:fileno=N[:domain=INET|INET6|UNIX]`` (or ``fd:N``)."""

    prefix = "fd"

    # The camelCase name is dictated by IStreamServerEndpointStringParser.
    def parseStreamServer(
        self, reactor: Any, *args: Any, **kwargs: Any
    ) -> AdoptedStreamServerEndpoint:
        return fd_endpoint(reactor, *args, **kwargs)


# Twisted's plugin discovery looks for provider instances at module level.
fd_endpoint_parser = FileDescriptorEndpointParser()
