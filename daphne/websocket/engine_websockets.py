"""The sans-IO ``Protocol`` of websockets as daphne's WebSocket framing engine:
the one file that knows its internals.

daphne does the opening handshake itself (:mod:`.handshake`), so the
protocol starts OPEN. websockets parses frames (masking by its C
``speedups``), checks them, answers pings and runs the closing handshake;
this adapter assembles fragmented messages, checks that text is UTF-8 (frame
by frame, so a bad fragment fails at once), hands whole messages to the
:class:`~.engine.EngineOwner` (the session) and writes through it. Where it
hooks into ``Protocol`` beyond its public API, the names are in
:data:`PRIVATE_NAMES`, checked by ``tests/test_websocket_engine.py``; and
``setup.py`` bounds websockets' version.

It behaves toward its owner as :mod:`.engine_autobahn` does, with one
difference the RFC asks for (6455 section 7.1.7): when the client breaks the
protocol, its close frame goes out and the connection is closed, rather than
waiting for the client's answer. The owner is told ``closed()`` with that
close frame's code either way.

:class:`BoundedPerMessageDeflate` is websockets' permessage-deflate extension
with daphne's bounds (:mod:`.deflate`): zlib objects made only when a
message needs them, inflation at most one byte past what is left of the
message limit (1009), and data that does not inflate closed with 1007.
"""

from __future__ import annotations

import codecs
import dataclasses
import logging
import sys
import zlib
from collections.abc import Generator
from struct import pack
from typing import Any

from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import BINARY, CLOSE, CONT, CTRL_OPCODES, Frame
from websockets.protocol import CLOSED, CLOSING, OPEN, SEND_EOF, SERVER, Protocol
from websockets.streams import StreamReader

try:
    from websockets.speedups import apply_mask
except ImportError:  # (websockets built without its C extension)
    from websockets.utils import apply_mask

from ..config import Config
from .deflate import Agreement, DeflateSettings, Offer, Terms, negotiate
from .engine import EngineOwner, server_header

logger = logging.getLogger(__name__)

#: The websockets names this module uses beyond the public API of
#: ``Protocol`` (its hooks and parser state) and of ``PerMessageDeflate``;
#: checked by the engine's tests so an upgrade that drops one fails there.
PRIVATE_NAMES = (
    "recv_frame",
    "send_frame",
    "fail",
    "reader",
    "parser",
    "writes",
    "events",
    "current_size",
    "close_rcvd",
    "close_sent",
    "extensions",
    "id",
    "_state",
    "decode_cont_data",
    "remote_max_window_bits",
    "local_max_window_bits",
    "local_no_context_takeover",
)

#: What a sender removes from the end of each compressed message (RFC 7692
#: section 7.2.1) and the receiver puts back.
SYNC_TAIL = b"\x00\x00\xff\xff"

#: Close frame reasons are at most 123 bytes (a control frame's 125, less
#: the code).
MAX_REASON = 123

#: A control frame's largest payload (RFC 6455 section 5.5). Control frames
#: may come between a message's fragments (section 5.4) and never count
#: toward its size.
MAX_CONTROL = 125


def _with_room_for_control(limit: int | None) -> int | None:
    """The limit websockets gets: it applies its limits to every frame,
    control frames included, so they never fall below a control frame's
    size; :meth:`WebSocketsEngine.recv_frame` checks data frames against
    daphne's own limits."""
    return None if limit is None else max(limit, MAX_CONTROL)


_utf8_decoder = codecs.getincrementaldecoder("utf-8")

#: What websockets' parser waits in between frames.
_AT_EOF = StreamReader.at_eof.__code__


#: What websockets raises before a frame's length is known: the rest of the
#: stream cannot be followed after them.
_HEADER_ERRORS = frozenset({"invalid opcode", "incorrect masking"})


class BadCloseFrame(ProtocolError):
    """The client's close frame broke the protocol: it will send no other."""


def _rest_of_bad_frame(exc: BaseException | None) -> int | None:
    """How many bytes of the frame websockets refused are yet to be read (0:
    it was read whole), or None to close at once: the stream cannot be
    followed, or (as autobahn does) the text was not UTF-8, or the client
    has sent its close already."""
    if isinstance(exc, PayloadTooBig) and exc.size is not None:
        return 4 + exc.size  # refused from its header: its mask key and payload
    if isinstance(exc, (UnicodeDecodeError, BadCloseFrame)):
        return None
    if isinstance(exc, ProtocolError) and str(exc) in _HEADER_ERRORS:
        return None
    return 0


#: The two header bytes of a short unmasked text or binary message, by
#: length.
_TEXT_HEADERS = [bytes((0x81, length)) for length in range(126)]
_BINARY_HEADERS = [bytes((0x82, length)) for length in range(126)]


class WebSocketsEngineFactory:
    """websockets' options for every WebSocket of one server."""

    def __init__(self, config: Config, reactor: Any) -> None:
        self.server_header = server_header(config)
        self.deflate = DeflateSettings.from_config(config)
        #: Largest message and frame (None: no limit); larger ones: 1009.
        self.max_size = (
            config.websocket_max_message_size or None,
            config.websocket_max_frame_size or None,
        )

    def negotiate(self, offers: list[Offer]) -> Agreement | None:
        """The compression agreed for a client's extension offers, if any."""
        agreed = negotiate(offers, self.deflate)
        if agreed is None:
            return None
        codec = BoundedPerMessageDeflate(agreed.terms)
        return dataclasses.replace(agreed, codec=codec)

    def engine(
        self,
        owner: EngineOwner,
        transport: Any,
        subprotocol: str | None,
        codec: BoundedPerMessageDeflate | None = None,
    ) -> WebSocketsEngine:
        """An engine for a socket whose handshake daphne has completed."""
        return WebSocketsEngine(owner, self.max_size, subprotocol, codec)


class WebSocketsEngine(Protocol):
    """One open WebSocket's framing, closing handshake and protocol checks."""

    def __init__(
        self,
        owner: EngineOwner,
        max_size: tuple[int | None, int | None],
        subprotocol: str | None,
        codec: BoundedPerMessageDeflate | None = None,
    ) -> None:
        message_limit, frame_limit = max_size
        super().__init__(
            SERVER,
            state=OPEN,
            max_size=(
                _with_room_for_control(message_limit),
                _with_room_for_control(frame_limit),
            ),
            logger=logger,
        )
        self.owner = owner
        #: daphne's limits for data: the largest message and the largest
        #: frame (the factory's tuple, shared by every socket).
        self.limits = max_size
        #: Largest payload feed()'s shortcut takes (at most 125: a length
        #: that fits the frame's second byte).
        self.fast_limit = min([125, *(limit for limit in max_size if limit)])
        self.subprotocol = subprotocol
        self.codec = codec
        # (Sequences are all websockets asks of these: none shared by every
        # socket without compression, and no per-socket id for websockets'
        # own logs, which daphne does not use: 232 bytes an idle socket.)
        self.extensions = () if codec is None else (codec,)
        self.id = None
        #: A fragmented message so far: its pieces, whether it is binary,
        #: (text) the decoder that checks its UTF-8 frame by frame, and its
        #: size.
        self.partial: tuple[list[bytes], bool, Any, int] | None = None
        #: While the owner pauses reading: the raw bytes not unframed yet.
        self.held: bytearray | None = None
        #: The code daphne closed with because the client broke the protocol.
        self.failed_code: int | None = None
        # (Attributes are few on purpose: up to 29, CPython 3.11+ keeps an
        # instance's attributes in a compact split table; one more and the
        # socket's engine takes a 1.5 KiB dict.)

    @property
    def finished(self) -> bool:
        """The connection is gone."""
        return self._state is CLOSED

    # -- used by the session --------------------------------------------------

    def feed(self, data: bytes) -> None:
        held = self.held
        if held is not None:
            held += data  # paused: unframed on resume()
            return
        # The common case on its own: one whole small message in one read
        # (masked, unfragmented, uncompressed, within the limits) while
        # websockets' parser waits between frames; it gets exactly what
        # websockets' parser would do with it (less its generators, the
        # Frame, its checks that cannot fail here).
        length = len(data) - 6
        if (
            0 <= length <= self.fast_limit
            and data[1] == 0x80 | length
            and (data[0] == 0x81 or data[0] == 0x82)
            and self._state is OPEN
            and self.partial is None
            and not self.reader.buffer
        ):
            waiting = self.parser.gi_yieldfrom
            if waiting is not None and waiting.gi_code is _AT_EOF:
                payload = apply_mask(data[6:], data[2:6])
                if data[0] == 0x82:
                    self.deliver(payload, True)
                    return
                try:
                    payload.decode()
                except UnicodeDecodeError:
                    pass  # (the parser refuses it, with its reason)
                else:
                    self.deliver(payload, False)
                    return
        self.receive_data(data)
        if self.writes:
            self.flush()

    def resume(self) -> None:
        """Unframe what was held back while reading was paused."""
        held = self.held
        if held is None:
            return
        self.held = None
        if held and not self.finished:
            self.feed(held)

    def send_message(self, payload: bytes, binary: bool) -> None:
        if self._state is not OPEN:
            return
        if self.extensions:
            # Compressed: websockets frames it through the codec.
            if binary:
                self.send_binary(payload)
            else:
                self.send_text(payload)
            self.flush()
            return
        # A whole, unmasked, uncompressed message: its header is all there is
        # to make (websockets' serializer goes through a BytesIO and checks a
        # frame built for the purpose).
        length = len(payload)
        if length < 126:
            headers = _BINARY_HEADERS if binary else _TEXT_HEADERS
            self.owner.send(headers[length] + payload)
            return
        first = 0x82 if binary else 0x81
        if length < 65536:
            self.owner.send(pack("!BBH", first, 126, length) + payload)
        else:
            # (Two writes rather than a copy of a large payload.)
            self.owner.send(pack("!BBQ", first, 127, length))
            self.owner.send(payload)

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake."""
        if self._state is not OPEN:
            return
        if reason:
            # (At most 123 bytes, cut at a character's boundary.)
            reason = reason.encode()[:MAX_REASON].decode("utf-8", "ignore")
        self.send_close(code, reason)  # send_frame() reports close_sent()
        self.flush()
        self.owner.awaiting_close()

    def ping(self) -> None:
        if self._state is OPEN or self._state is CLOSING:
            self.send_ping(b"")
            self.flush()

    def drop(self) -> None:
        """Abort the TCP connection (no close handshake)."""
        owner = self.owner
        owner.unregister_producer()
        owner.close_transport(True)

    def connection_lost(self, reason: Any) -> None:
        if self._state is CLOSED:
            return
        self.state = CLOSED
        self.held = self.partial = None
        if self.failed_code is not None:
            code, text = self.failed_code, ""
        elif self.close_rcvd is not None and self.close_sent is not None:
            # (A close frame without a code parses as 1005.)
            code, text = int(self.close_rcvd.code), self.close_rcvd.reason
        else:
            code, text = 1006, ""
        self.owner.closed(code, text)

    # -- writing ----------------------------------------------------------------

    def flush(self, abort: bool = False) -> None:
        """Write out what the protocol produced; its end-of-stream marker
        closes the connection (a server closes first, RFC 6455 7.1.1):
        ``abort`` once the client has answered daphne's close, as autobahn
        does (nothing is left to send, and the client may not read)."""
        writes = self.writes
        self.writes = []
        owner = self.owner
        for data in writes:
            if data:
                owner.send(data)
            else:
                owner.unregister_producer()
                owner.close_transport(abort)

    # -- websockets' hooks, overridden -----------------------------------------

    def send_frame(self, frame: Frame) -> None:
        # Every close frame goes out here, daphne's and the protocol's own
        # (1002, 1007, 1009, replies): from now on nothing but the closing
        # handshake is sent.
        if frame.opcode is CLOSE and self._state is OPEN:
            self.owner.close_sent()
        super().send_frame(frame)

    def fail(self, code: int, reason: str = "") -> None:
        # (websockets' parser calls this while handling what it raised.)
        rest = _rest_of_bad_frame(sys.exc_info()[1])
        if self._state is OPEN:
            codec = self.codec
            if code == 1002 and codec is not None and codec.corrupt:
                code, reason = 1007, "invalid permessage-deflate data"
            self.failed_code = int(code)  # (not websockets' CloseCode enum)
        reader = self.reader
        kept, reader.buffer = reader.buffer, bytearray()  # (discard() empties it)
        super().fail(code, reason)
        if rest is None:
            return  # the stream is lost: close at once, as websockets does
        reader.buffer = kept
        # Read on to the client's close instead (autobahn does too): a client
        # still sending a large message would otherwise get a TCP reset,
        # which can destroy the close frame before it reads it.
        if self.writes and not self.writes[-1]:
            self.writes.pop()  # (not the end of the stream yet)
        self.parser = self.drain(rest)
        next(self.parser)
        self.owner.awaiting_close()

    def drain(self, skip: int) -> Generator[None]:
        """Replaces the parser once the connection has failed: skip the rest
        of the bad frame, then whole frames unread, until the client's close
        ends the connection (or the owner's close timer drops it)."""
        buffer = self.reader.buffer
        while True:
            while skip:
                while not buffer:
                    yield
                taken = min(skip, len(buffer))
                del buffer[:taken]  # (a frame's length may be anything)
                skip -= taken
            while len(buffer) < 2:
                yield
            first, second = buffer[0], buffer[1]
            length, size = second & 0x7F, 2
            if length == 126:
                size = 4
            elif length == 127:
                size = 10
            while len(buffer) < size:
                yield
            if size > 2:
                length = int.from_bytes(buffer[2:size], "big")
            skip = size + (4 if second & 0x80 else 0) + length
            if first & 0x0F == CLOSE and length <= 125:
                while len(buffer) < skip:
                    yield
                break
        self.writes.append(SEND_EOF)  # the closing handshake is complete
        while True:
            del buffer[:]
            yield

    def recv_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode in CTRL_OPCODES:
            if opcode is CLOSE and self.partial is not None:
                # A close may come between fragments (RFC 6455 5.4): the
                # unfinished message is dropped (websockets would fail 1002).
                self.current_size = self.partial = None
            answer = opcode is CLOSE and self._state is CLOSING
            try:
                super().recv_frame(frame)  # answers pings and closes
            except ProtocolError as exc:
                if opcode is not CLOSE:
                    raise
                raise BadCloseFrame(str(exc)) from exc
            del self.events[:]  # (events are not used: nothing piles up)
            if self.writes:
                self.flush(answer)
            return
        data = frame.data
        message_limit, frame_limit = self.limits
        size = len(data)
        if frame_limit is not None and size > frame_limit:
            raise PayloadTooBig(None, frame_limit)  # (read whole: 1009)
        if opcode is CONT:
            partial = self.partial
            if partial is None:
                raise ProtocolError("unexpected continuation frame")
            fragments, binary, utf8, size = partial
            size += len(data)
            if message_limit is not None and size > message_limit:
                raise PayloadTooBig(None, message_limit)
            if utf8 is not None:
                utf8.decode(data, frame.fin)  # UnicodeDecodeError: 1007
            fragments.append(data)
            if not frame.fin:
                self.partial = (fragments, binary, utf8, size)
                self.current_size = self.counted(size)
                return
            self.current_size = self.partial = None
            data = b"".join(fragments)
        else:
            if self.partial is not None:
                raise ProtocolError("expected a continuation frame")
            if message_limit is not None and size > message_limit:
                raise PayloadTooBig(None, message_limit)
            binary = opcode is BINARY
            if not frame.fin:
                utf8 = None
                if not binary:
                    utf8 = _utf8_decoder()
                    utf8.decode(data, False)  # UnicodeDecodeError: 1007
                self.partial = ([data], binary, utf8, size)
                self.current_size = self.counted(size)
                return
            if not binary:
                data.decode()  # UnicodeDecodeError: 1007
        self.deliver(data, binary)

    def counted(self, size: int) -> int:
        """What websockets is told of a fragmented message's size so far: it
        limits the next frame to what is left, and that must leave room for
        a control frame (the data frame is then checked against the real
        limit in :meth:`recv_frame`, so a message can still not exceed it)."""
        limit = self.max_message_size  # (websockets', at least MAX_CONTROL)
        return size if limit is None else min(size, limit - MAX_CONTROL)

    def deliver(self, data: bytes, binary: bool) -> None:
        """A whole message to the owner; stop if it pauses reading."""
        owner = self.owner
        owner.message(data, binary)
        if owner.read_paused:
            # Stop between frames: the rest stays raw bytes until resume().
            reader = self.reader
            self.held, reader.buffer = reader.buffer, bytearray()


class BoundedPerMessageDeflate(PerMessageDeflate):
    """websockets' permessage-deflate extension, for a server, with daphne's
    bounds; its zlib objects are made when a message first needs them."""

    def __init__(self, terms: Terms) -> None:
        # (Not PerMessageDeflate's __init__: it makes both zlib objects now.)
        self.remote_no_context_takeover = False
        self.local_no_context_takeover = terms.server_no_context_takeover
        self.remote_max_window_bits = terms.inflate_window
        self.local_max_window_bits = terms.server_window
        self.compress_settings = {"level": terms.level, "memLevel": terms.mem_level}
        self.decode_cont_data = False
        #: Largest decompressed message (0: no limit), and this one so far.
        self.limit = terms.limit
        self.inflated = 0
        self.encoder: Any = None
        self.decoder: Any = None
        #: Set when the client's data did not inflate (the engine closes 1007).
        self.corrupt = False

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        opcode = frame.opcode
        if opcode in CTRL_OPCODES:
            return frame
        if opcode is CONT:
            if not self.decode_cont_data:
                return frame
            if frame.rsv1:
                raise ProtocolError("RSV1 bit set in continuation frame")
            if frame.fin:
                self.decode_cont_data = False
        else:
            if not frame.rsv1:
                return frame
            self.decode_cont_data = not frame.fin
            self.inflated = 0
            decoder = self.decoder
            # A sender may end its stream with a final block (RFC 7692
            # 7.2.3.4): what follows is a new stream.
            if decoder is None or decoder.eof:
                self.decoder = zlib.decompressobj(-self.remote_max_window_bits)
        decoder = self.decoder
        # What is left of the message limit; asking zlib for one byte more
        # shows a message over it (max_length 0 would mean no limit).
        budget = self.limit - self.inflated if self.limit else None
        try:
            if budget is None:
                data = decoder.decompress(frame.data)
                if frame.fin:
                    data += decoder.decompress(SYNC_TAIL)
            else:
                data = decoder.decompress(frame.data, budget + 1)
                if frame.fin and len(data) <= budget:
                    data += decoder.decompress(SYNC_TAIL, budget + 1 - len(data))
        except zlib.error as exc:
            self.corrupt = True
            raise ProtocolError("invalid permessage-deflate data") from exc
        if budget is not None and len(data) > budget:
            raise PayloadTooBig(None, self.limit)
        self.inflated += len(data)
        return Frame(opcode, data, frame.fin, False, frame.rsv2, frame.rsv3)

    def encode(self, frame: Frame) -> Frame:
        opcode = frame.opcode
        if opcode in CTRL_OPCODES:
            return frame
        encoder = self.encoder
        if encoder is None or (opcode is not CONT and self.local_no_context_takeover):
            settings = self.compress_settings
            encoder = self.encoder = zlib.compressobj(
                settings["level"],
                zlib.DEFLATED,
                -self.local_max_window_bits,
                settings["memLevel"],
            )
        data = encoder.compress(frame.data) + encoder.flush(zlib.Z_SYNC_FLUSH)
        if frame.fin:
            data = data[:-4]  # RFC 7692 7.2.1: without the 00 00 ff ff tail
            if self.local_no_context_takeover:
                self.encoder = None
        return Frame(
            opcode, data, frame.fin, opcode is not CONT, frame.rsv2, frame.rsv3
        )
