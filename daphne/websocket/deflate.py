"""permessage-deflate (RFC 7692): choosing what to agree to, and the codec.

The client's offers are parsed by :func:`.handshake.extension_offers`; this
module picks the first ``permessage-deflate`` offer it can accept (an offer
with unknown, repeated or out-of-range parameters is declined, RFC 7692
section 5.1), and builds the ``Sec-WebSocket-Extensions`` answer from the
very parameters the codec then runs with, so the 101 says exactly what was
agreed.

autobahn validates offers (:class:`PerMessageDeflateOffer`) and drives the
codec from its framing; :class:`BoundedDeflate` is its ``PerMessageDeflate``
with two server choices:

* memory: a 4 KiB window (12 bits) and ``memLevel`` 5 for the compressor, and
  a 12-bit window asked of clients that allow it, keep the zlib state of an
  open socket to tens of KiB (RFC 7692 lets a server ask for smaller windows
  than the client offers; never larger);
* inflation is bounded: a frame is inflated at most one byte past what is
  left of ``websocket_max_message_size``, so a small frame that would inflate
  to gigabytes closes the socket with 1009 after that much, not after all.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from typing import Any

from autobahn.exception import PayloadCorruptError, PayloadExceededError
from autobahn.websocket.compress import (
    PerMessageDeflate,
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)

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


class BoundedDeflate(PerMessageDeflate):
    """autobahn's permessage-deflate codec, with a chosen compression level
    and an inflater that never produces more than the message may hold."""

    #: zlib level of the compressor.
    level: int = zlib.Z_DEFAULT_COMPRESSION
    #: Largest decompressed message (0: no limit).
    limit: int = 0

    def start_compress_message(self) -> None:
        compressor = self.compressor
        if compressor is None or self.server_no_context_takeover:
            self.compressor = zlib.compressobj(
                self.level, zlib.DEFLATED, -self.server_max_window_bits, self.mem_level
            )

    def compress_message_data(self, data: bytes) -> bytes:
        return self.compressor.compress(data)

    def end_compress_message(self) -> bytes:
        # RFC 7692 7.2.1: flush to a byte boundary and drop the empty
        # stored block's 00 00 ff ff tail.
        data = self.compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]
        if self.server_no_context_takeover:
            self.compressor = None  # (its next message starts afresh anyway)
        return data

    def start_decompress_message(self) -> None:
        inflater = self.inflater
        # A sender may end its stream with a final block (RFC 7692 7.2.3.4):
        # what follows is a new stream, with no context to take over.
        if inflater is None or self.client_no_context_takeover or inflater.eof:
            self.inflater = zlib.decompressobj(-self.client_max_window_bits)
        self.inflated = 0

    def decompress_message_data(
        self, data: bytes, max_output_len: int | None = None
    ) -> bytes:
        """Inflate one piece of a message, at most one byte past its budget
        (what is left of the message limit, or autobahn's own budget)."""
        if self.failed:
            # autobahn has sent its close (1009 or 1007) and reads on to the
            # client's answer; the rest of the bad frame is skipped here.
            # (Raising again would stop it at the same frame for good.)
            return b""
        budget = self.limit - self.inflated if self.limit else None
        if max_output_len is not None and (budget is None or max_output_len < budget):
            budget = max_output_len
        try:
            if budget is None:
                out = self.inflater.decompress(data)
            else:
                # (max_length 0 means "no limit" to zlib: ask one more byte
                # than the budget, so that too much shows as len > budget.)
                out = self.inflater.decompress(data, max(budget, 0) + 1)
        except zlib.error as exc:
            self.failed = True
            raise PayloadCorruptError(
                f"invalid permessage-deflate data: {exc}"
            ) from exc
        self.inflated += len(out)
        if budget is not None and len(out) > budget:
            self.failed = True
            raise PayloadExceededError(
                "WebSocket message larger than the limit once decompressed"
            )
        return out

    def end_decompress_message(self) -> None:
        if self.failed:
            return
        try:
            # The 00 00 ff ff the sender removed (RFC 7692 7.2.2).
            self.inflater.decompress(b"\x00\x00\xff\xff")
        except zlib.error as exc:
            self.failed = True
            raise PayloadCorruptError(
                f"invalid permessage-deflate data: {exc}"
            ) from exc
        if self.client_no_context_takeover:
            self.inflater = None

    # autobahn's codec keeps its zlib objects in _compressor/_decompressor;
    # this one keeps its own, set up lazily (an idle socket that never sent a
    # message holds no compressor).
    compressor: Any = None
    inflater: Any = None
    inflated: int = 0
    #: Set once a message was refused: nothing more is inflated.
    failed: bool = False


@dataclasses.dataclass(frozen=True)
class Agreement:
    """An accepted offer: the codec for the socket and the answer's value."""

    codec: BoundedDeflate
    header: bytes


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
    accept = PerMessageDeflateOfferAccept(
        offer,
        request_max_window_bits=client_window,
        window_bits=server_window,
        mem_level=settings.mem_level,
    )
    codec = BoundedDeflate.create_from_offer_accept(True, accept)
    codec.level = settings.level
    codec.limit = settings.max_message_size
    parts = [NAME]
    if codec.server_no_context_takeover:
        parts.append("server_no_context_takeover")
    if server_window != MAX_WINDOW_BITS or server_bits is not None:
        # (A server may state its window even if not asked: RFC 7692 7.1.2.1.)
        parts.append(f"server_max_window_bits={server_window}")
    if client_window:
        parts.append(f"client_max_window_bits={client_window}")
    return Agreement(codec, "; ".join(parts).encode("ascii"))


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
