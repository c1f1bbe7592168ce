"""autobahn as daphne's WebSocket framing engine: the one file that knows its
internals.

daphne does the opening handshake itself (:mod:`.handshake`); autobahn only
unframes and frames messages and runs the closing handshake. Every private
autobahn name daphne relies on is used here and nowhere else, and
``tests/test_websocket_engine.py`` fails loudly if an autobahn upgrade removes
one. ``setup.py`` bounds autobahn's version for the same reason.

The engine reports to its :class:`~.engine.EngineOwner` (the session) and
writes through the owner's connection; it never starts timers of its own.
:class:`BoundedDeflate` is autobahn's permessage-deflate codec with daphne's
bounds (see :mod:`.deflate`).
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

from autobahn.exception import PayloadCorruptError, PayloadExceededError
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.util import encode_truncate
from autobahn.websocket.compress import PerMessageDeflate
from autobahn.websocket.protocol import WebSocketProtocol as _Autobahn
from twisted.python.failure import Failure

from ..config import Config
from .deflate import Agreement, DeflateSettings, Offer, Terms, negotiate
from .engine import EngineOwner, server_header

_OPEN = _Autobahn.STATE_OPEN
_CLOSING = _Autobahn.STATE_CLOSING
_CLOSED = _Autobahn.STATE_CLOSED

#: The autobahn names this module uses beyond its public API; checked by the
#: engine's tests so an upgrade that drops one fails there, not in production.
PRIVATE_NAMES = (
    "_connectionMade",
    "_connectionLost",
    "_dataReceived",
    "_closeConnection",
    "_onOpen",
    "consumeData",
    "processData",
    "sendCloseFrame",
    "send_queue",
    "STATE_OPEN",
    "STATE_CLOSING",
    "STATE_CLOSED",
    "CONFIG_ATTRS",
    "_perMessageCompress",
)


class AutobahnEngineFactory(WebSocketServerFactory):
    """autobahn's options for every WebSocket of one server.

    autobahn's own timers (opening handshake, close handshake, auto-ping)
    stay off: the session's timers replace them (autobahn's run on a batched
    timer that rounds deadlines to whole seconds).
    """

    def __init__(self, config: Config, reactor: Any) -> None:
        super().__init__(server=config.server_name, reactor=reactor)
        #: The 101 answer's Server line (the handshake is daphne's).
        self.server_header = server_header(config)
        self.setProtocolOptions(
            maxFramePayloadSize=config.websocket_max_frame_size,
            maxMessagePayloadSize=config.websocket_max_message_size,
            # Oversize or invalid traffic gets a close frame with its code
            # (1009, 1007, ...) instead of a silent TCP drop.
            failByDrop=False,
            echoCloseCodeReason=True,
            openHandshakeTimeout=0,
            closeHandshakeTimeout=0,
            autoPingInterval=0,
            webStatus=False,
        )
        # autobahn copies each option onto every connection unless its class
        # already has it: a subclass carrying them saves ~1 KiB per socket.
        # (Function options such as perMessageCompressionAccept must not
        # become methods of that class.)
        options = {}
        for name in AutobahnEngine.CONFIG_ATTRS:
            value = getattr(self, name)
            options[name] = staticmethod(value) if callable(value) else value
        self.protocol = type("AutobahnEngine", (AutobahnEngine,), options)
        #: permessage-deflate: on or off, and its bounds.
        self.deflate = DeflateSettings.from_config(config)

    def negotiate(self, offers: list[Offer]) -> Agreement | None:
        """The compression agreed for a client's extension offers, if any."""
        agreed = negotiate(offers, self.deflate)
        if agreed is None:
            return None
        return dataclasses.replace(
            agreed, codec=BoundedDeflate.from_terms(agreed.terms)
        )

    def engine(
        self,
        owner: EngineOwner,
        transport: Any,
        subprotocol: str | None,
        codec: BoundedDeflate | None = None,
    ):
        """An engine for a socket whose handshake daphne has completed (with
        the permessage-deflate codec agreed in it, if any)."""
        engine = self.protocol()
        engine.factory = self
        engine.open(owner, transport, subprotocol, codec)
        return engine


class AutobahnEngine(WebSocketServerProtocol):
    """One open WebSocket's framing, closing handshake and protocol checks."""

    owner: EngineOwner

    def open(
        self,
        owner: EngineOwner,
        transport: Any,
        subprotocol: str | None,
        codec: BoundedDeflate | None = None,
    ) -> None:
        """Start in the OPEN state: the opening handshake is already done."""
        self.owner = owner
        self.transport = transport
        self._connectionMade()
        self.websocket_version = 13
        self.websocket_protocols = []
        self.websocket_protocol_in_use = subprotocol
        self.websocket_extensions = []
        self.websocket_extensions_in_use = [] if codec is None else [codec]
        # autobahn unframes RSV1 (compressed) messages, and inflates them,
        # only with a codec in place.
        self._perMessageCompress = codec
        self.http_headers = {}
        self.inside_message = False
        self.current_frame = None
        self.state = _OPEN

    # -- used by the session --------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._dataReceived(data)

    def resume(self) -> None:
        """Unframe what was held back while reading was paused."""
        if self.data and self.state != _CLOSED:
            self.consumeData()

    @property
    def subprotocol(self) -> str | None:
        return self.websocket_protocol_in_use

    @property
    def finished(self) -> bool:
        """The socket is closed (``is_closed`` is autobahn's Deferred)."""
        return self.state == _CLOSED

    def send_message(self, payload: bytes, binary: bool) -> None:
        codec = self._perMessageCompress
        if codec is None:
            self.sendFrame(opcode=2 if binary else 1, payload=payload)
            return
        # (autobahn's sendMessage would refuse a message whose compressed
        # size exceeds the incoming limit; outgoing messages have none.)
        codec.start_compress_message()
        payload = codec.compress_message_data(payload) + codec.end_compress_message()
        self.sendFrame(opcode=2 if binary else 1, payload=payload, rsv=4)

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake."""
        reason_bytes = encode_truncate(reason, 123) if reason else None
        self.sendCloseFrame(code=code, reasonUtf8=reason_bytes, isReply=False)

    def ping(self) -> None:
        self.sendPing()

    def drop(self) -> None:
        """Abort the TCP connection (no close handshake)."""
        self.dropConnection(abort=True)

    def connection_lost(self, reason: Failure) -> None:
        self._connectionLost(reason)  # autobahn calls onClose

    # -- autobahn's callbacks -------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.owner.message(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not wasClean:
            code, reason = 1006, None  # (autobahn's reason describes its state)
        elif self.failedByMe and self.localCloseCode:
            # The client broke the protocol (e.g. a reserved close code); what
            # autobahn records as its code is not what happened.
            code, reason = self.localCloseCode, None
        elif code is None:
            code = 1005  # a close frame without a status code
        self.owner.closed(code, reason or "")

    # -- autobahn's hooks, overridden ------------------------------------------

    def consumeData(self) -> None:
        # autobahn would unframe everything buffered at once; stop between
        # frames while the application's queue is full, so the backlog stays
        # raw bytes (at most one read) rather than a growing list of events.
        if self.state != _OPEN and self.state != _CLOSING:
            return  # closed: nothing more is read
        owner = self.owner
        while not owner.read_paused and self.processData() and self.state != _CLOSED:
            pass

    # autobahn's hot path formats debug-log arguments, counts traffic
    # statistics and fires observers on every read, write and message; daphne
    # uses none of that. These overrides keep its behaviour without the cost
    # (about a tenth of an echo round trip).

    def _dataReceived(self, data: bytes) -> None:
        self.data += data
        self.consumeData()

    def onMessageEnd(self) -> None:
        if not self.failedByMe:
            self.onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None

    def sendData(self, data: bytes, sync: bool = False, chopsize=None) -> None:
        if sync or chopsize or self.send_queue:
            super().sendData(data, sync, chopsize)
        else:
            self.owner.send(data)

    def sendCloseFrame(
        self, code: int | None = None, reasonUtf8: bytes | None = None, isReply=False
    ) -> None:
        # Every close frame goes out here, daphne's and autobahn's own (1009,
        # 1007, replies): from now on nothing but the close handshake is sent.
        if self.state == _OPEN:
            self.owner.close_sent()
        super().sendCloseFrame(code, reasonUtf8, isReply)
        if not isReply and self.state == _CLOSING:
            self.owner.awaiting_close()

    def unregisterProducer(self) -> None:
        self.owner.unregister_producer()  # (the connection registered itself)

    def _closeConnection(self, abort: bool = False) -> None:
        self.owner.close_transport(abort)


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

    @classmethod
    def from_terms(cls, terms: Terms) -> BoundedDeflate:
        codec = cls(
            True,
            terms.server_no_context_takeover,
            False,
            terms.server_window,
            terms.client_window,
            terms.mem_level,
        )
        codec.level = terms.level
        codec.limit = terms.limit
        return codec

    # autobahn's codec keeps its zlib objects in _compressor/_decompressor;
    # this one keeps its own, set up lazily (an idle socket that never sent a
    # message holds no compressor).
    compressor: Any = None
    inflater: Any = None
    inflated: int = 0
    #: Set once a message was refused: nothing more is inflated.
    failed: bool = False
