"""permessage-deflate (RFC 7692): choosing what to agree to.

The client's offers are parsed by :func:`.handshake.extension_offers`; this
module picks the first ``permessage-deflate`` offer it can accept (an offer
with unknown, repeated or out-of-range parameters is declined, RFC 7692
section 5.1), and builds the ``Sec-WebSocket-Extensions`` answer from the
very :class:`Terms` each engine's codec then runs with, so the 101 says
exactly what was agreed, whichever engine runs the socket.

autobahn's :class:`PerMessageDeflateOffer` checks the parameters of an offer.
The codecs are the engines' own (``BoundedDeflate`` in
:mod:`.engine_autobahn`, ``BoundedPerMessageDeflate`` in
:mod:`.engine_websockets`), built from the same terms and bounds:

* memory: a 4 KiB window (12 bits) and ``memLevel`` 5 for the compressor, and
  a 12-bit window asked of clients that allow it, keep the zlib state of an
  open socket to tens of KiB (RFC 7692 lets a server ask for smaller windows
  than the client offers; never larger);
* inflation is bounded: a frame is inflated at most one byte past what is
  left of ``websocket_max_message_size``, so a small frame that would inflate
  to gigabytes closes the socket with 1009 after that much, not after all;
  data that does not inflate closes it with 1007.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from autobahn.websocket.compress import PerMessageDeflateOffer

from ..config import Config

#: The extension's registered name.
NAME = "permessage-deflate"

#: zlib's largest window (RFC 7692: a peer that does not limit uses it).
MAX_WINDOW_BITS = 15

#: A window-bits value: a decimal 8..15 without leading zeros (RFC 7692
#: section 7.1.2). autobahn's own check accepts "+9" and "09".
WINDOW_BITS_VALUE = re.compile(r"[89]|1[0-5]")

#: What an offer is: the extension's name and its parameters, each with the
#: list of values it was given (``True`` for a parameter without a value).
Offer = tuple[str, dict[str, list[Any]]]


@dataclasses.dataclass(frozen=True)
class DeflateSettings:
    """The server's side of every negotiation, from the config."""

    enabled: bool = True
    #: Window of the server's compressor, and the most it asks of clients.
    window_bits: int = 12
    #: zlib memLevel of the compressor (1..9): its hash table's size.
    mem_level: int = 5
    #: zlib level (1 fastest .. 9 smallest). Memory does not depend on it.
    level: int = 1
    #: Largest decompressed message (0: no limit).
    max_message_size: int = 0

    @classmethod
    def from_config(cls, config: Config) -> DeflateSettings:
        return cls(
            enabled=config.ws_per_message_deflate,
            window_bits=config.ws_deflate_window_bits,
            mem_level=config.ws_deflate_mem_level,
            level=config.ws_deflate_level,
            max_message_size=config.websocket_max_message_size,
        )


@dataclasses.dataclass(frozen=True)
class Terms:
    """What was agreed for one socket, whatever the engine's codec."""

    #: Window of the server's compressor (9..15).
    server_window: int
    #: Window the client was asked to keep to; 0: not asked (up to 15).
    client_window: int
    #: The server starts every message with a fresh compressor.
    server_no_context_takeover: bool
    #: zlib level and memLevel of the compressor.
    level: int
    mem_level: int
    #: Largest decompressed message (0: no limit).
    limit: int

    @property
    def inflate_window(self) -> int:
        """Window of the inflater for the client's messages."""
        return self.client_window or MAX_WINDOW_BITS


@dataclasses.dataclass(frozen=True)
class Agreement:
    """An accepted offer: its terms, the answer's value, and (from the
    engine's factory) the engine's codec for the socket."""

    terms: Terms
    header: bytes
    codec: Any = None


def _window_bits(values: list[Any]) -> int | None:
    """An offer's window-bits value (``None``: no value), or ValueError."""
    value = values[0]
    if value is True:
        return None
    if not isinstance(value, str) or not WINDOW_BITS_VALUE.fullmatch(value):
        raise ValueError(f"invalid window bits {value!r}")
    return int(value)


def accept_offer(params: dict[str, list[Any]], settings: DeflateSettings) -> Agreement:
    """Accept one ``permessage-deflate`` offer, or raise (the offer is then
    declined)."""
    for values in params.values():
        if len(values) != 1:
            raise ValueError("a parameter is repeated")
    client_bits = server_bits = None
    if "client_max_window_bits" in params:
        client_bits = _window_bits(params["client_max_window_bits"])
    if "server_max_window_bits" in params:
        server_bits = _window_bits(params["server_max_window_bits"])
        if server_bits is None:
            raise ValueError("server_max_window_bits needs a value")
    # autobahn checks the rest (names, flag values, zlib's 9..15 range).
    offer = PerMessageDeflateOffer.parse(params)
    ours = settings.window_bits
    server_window = min(server_bits or ours, ours)
    # The client's window can be limited only if it says it can be (RFC 7692
    # 7.1.2.2), and never above what it announced.
    client_window = 0
    if offer.accept_max_window_bits:
        client_window = min(client_bits or ours, ours)
    terms = Terms(
        server_window=server_window,
        client_window=client_window,
        server_no_context_takeover=bool(offer.request_no_context_takeover),
        level=settings.level,
        mem_level=settings.mem_level,
        limit=settings.max_message_size,
    )
    parts = [NAME]
    if terms.server_no_context_takeover:
        parts.append("server_no_context_takeover")
    if server_window != MAX_WINDOW_BITS or server_bits is not None:
        # (A server may state its window even if not asked: RFC 7692 7.1.2.1.)
        parts.append(f"server_max_window_bits={server_window}")
    if client_window:
        parts.append(f"client_max_window_bits={client_window}")
    return Agreement(terms, "; ".join(parts).encode("ascii"))


def negotiate(offers: list[Offer], settings: DeflateSettings) -> Agreement | None:
    """The first acceptable ``permessage-deflate`` offer, or ``None``: other
    extensions and unacceptable offers are declined (left out of the 101)."""
    if not settings.enabled:
        return None
    for name, params in offers:
        if name != NAME:
            continue
        try:
            return accept_offer(params, settings)
        except Exception:  # autobahn raises plain Exception for a bad offer
            continue  # RFC 7692 5.1: decline it, try the next one
    return None
