"""HTTP/2 connections: the h2 library driven sans-IO on a Twisted transport.

An :class:`H2Connection` takes over an accepted connection once it is known
to speak HTTP/2 (ALPN ``h2``, the cleartext preface, or an ``Upgrade: h2c``;
see :mod:`.http2_handover`). It feeds the bytes to h2, turns h2's events into
per-stream work, and writes what h2 has to send. Each stream is one
:class:`~daphne.http.exchange.HTTPExchange` whose Writer is an
:class:`~.http2_stream.H2Stream`.

Flow control is the backpressure, per stream: received DATA is acknowledged
(WINDOW_UPDATE) once the stream's application has room for it, and a response
body the windows cannot take waits in its stream while that application's
``send`` waits. Cheap frames a client could send without end (RST_STREAM,
SETTINGS, PING, empty frames) are counted by a :class:`FloodGuard`; a flood is
answered with GOAWAY ENHANCE_YOUR_CALM and the connection closes.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.exceptions import InvalidDataError
from hyperframe.frame import GoAwayFrame

from ..access import describe_client
from ..http.headers import RequestHead
from .http2_requests import EXTENSIONS, Flood, RequestStreams
from .http2_stream import H2Stream

logger = logging.getLogger(__name__)

#: Flood budgets: ``kind: (burst, refill per second)``. Far above what a
#: browser or a proxy sends; a flood exceeds the burst within one read.
FLOOD_BUDGETS = {
    # Streams the client reset while they were open (CVE-2023-44487).
    "reset": (200.0, 50.0),
    "settings": (100.0, 10.0),
    "ping": (100.0, 10.0),
    # DATA without data or END_STREAM, unknown and PRIORITY frames.
    "empty": (200.0, 50.0),
}


class FloodGuard:
    """Token buckets, one per kind of cheap frame; on the connection's clock."""

    __slots__ = ("seconds", "levels", "stamp")

    def __init__(self, seconds: Any) -> None:
        self.seconds = seconds
        self.levels = {kind: burst for kind, (burst, _) in FLOOD_BUDGETS.items()}
        self.stamp = {kind: seconds() for kind in FLOOD_BUDGETS}

    def charge(self, kind: str) -> bool:
        """Spend one token of ``kind``; False once the bucket is empty."""
        burst, rate = FLOOD_BUDGETS[kind]
        now = self.seconds()
        level = min(burst, self.levels[kind] + (now - self.stamp[kind]) * rate) - 1
        self.stamp[kind] = now
        self.levels[kind] = level
        return level >= 0


def connection_error_code(exc: h2.exceptions.ProtocolError) -> int:
    """The GOAWAY code for an error h2 raised, where RFC 9113 names a more
    precise one than h2 does."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, HPACKError) and not isinstance(
        cause, OversizedHeaderListError
    ):
        return ErrorCodes.COMPRESSION_ERROR  # section 4.3
    if isinstance(cause, InvalidDataError) and "ack" in str(cause).lower():
        return ErrorCodes.FRAME_SIZE_ERROR  # a SETTINGS ACK with a payload, 6.5
    return exc.error_code


class H2Connection(RequestStreams):
    """One HTTP/2 connection, on the HTTP/1.1 connection it took over
    (``carrier``: its transport, timers, addresses and factory)."""

    def __init__(self, carrier: Any) -> None:
        self.carrier = carrier
        self.transport = carrier.transport
        factory = self.factory = carrier.factory
        config = self.config = factory.config
        self.reactor = carrier.reactor
        self.host = carrier.host
        self.server_name = (
            config.server_name.encode("latin-1") if config.server_name else None
        )
        #: The header rules of HTTP/1.1, with the HTTP/2 header list size.
        self.head_config = factory.http2_head_config
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=False,
                header_encoding=None,
                # read_request_head validates: its errors are stream errors
                # (h2's are connection errors), and the shared rules apply.
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
                # The exchange checked the application's fields already.
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: (
                    config.http2_max_concurrent_streams
                ),
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: (
                    config.http2_max_header_list_size
                ),
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        #: A header block decoding to this much more than the advertised
        #: list size is an HPACK bomb (GOAWAY); up to it, a 431 answers.
        self.bomb_size = 4 * config.http2_max_header_list_size
        self.h2.decoder.max_header_list_size = self.bomb_size
        self.guard = FloodGuard(self.reactor.seconds)
        self.streams: dict[int, H2Stream] = {}
        #: Streams whose response waits for window.
        self.waiting: set[H2Stream] = set()
        #: Streams whose application is running.
        self.running: set[H2Stream] = set()
        self.write_paused = False
        self.closed = False
        #: GOAWAY sent: no new streams; close once the last one is done.
        self.draining = False
        self.idle_timer: Any = None
        self.handlers = {
            h2.events.RequestReceived: self.request_received,
            h2.events.DataReceived: self.data_received_event,
            h2.events.StreamEnded: self.stream_ended,
            h2.events.StreamReset: self.stream_reset,
            h2.events.WindowUpdated: self.window_updated,
            h2.events.RemoteSettingsChanged: self.settings_changed,
            h2.events.SettingsAcknowledged: self.settings_acknowledged,
            h2.events.PingReceived: self.ping_received,
            h2.events.ConnectionTerminated: self.terminated,
            h2.events.PriorityUpdated: self.cheap_frame,
            h2.events.UnknownFrameReceived: self.cheap_frame,
        }

    # -- start ---------------------------------------------------------------

    def start(self, data: bytes) -> None:
        """Begin with the server preface, then ``data`` (the client's)."""
        self.h2.initiate_connection()
        self.open_connection_window()
        self.flush()
        self.set_idle()
        if data:
            self.data_received(data)

    def start_upgrade(self, settings: bytes, scope: dict, rest: bytes) -> None:
        """h2c (RFC 7540 section 3.2): the 101 is written; answer the request
        that asked for the upgrade on stream 1, then read ``rest``."""
        self.h2.initiate_upgrade_connection(settings)
        self.open_connection_window()
        self.flush()
        stream = self.streams[1] = H2Stream(self, 1)
        scope["http_version"] = "2"
        # The upgrade's own fields were for the HTTP/1.1 hop only.
        scope["headers"] = [
            (name, value)
            for name, value in scope["headers"]
            if name not in (b"connection", b"upgrade", b"http2-settings")
        ]
        scope["extensions"] = EXTENSIONS
        self.begin(stream, scope, RequestHead(self.head_config), ended=True)
        if rest:
            self.data_received(rest)

    def open_connection_window(self) -> None:
        # Stream windows are the backpressure; the connection window only
        # must not let one stalled stream stall the others.
        streams = self.config.http2_max_concurrent_streams
        self.h2.increment_flow_control_window(streams * 65535)

    # -- bytes in, bytes out ---------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self.h2.receive_data(data)
            handlers = self.handlers
            for event in events:
                handler = handlers.get(type(event))
                if handler is not None:
                    # h2 reads the whole batch first: a later frame of it
                    # may have closed this stream (its event comes next).
                    with contextlib.suppress(h2.exceptions.StreamClosedError):
                        handler(event)
        except h2.exceptions.ProtocolError as exc:
            self.connection_error(connection_error_code(exc), str(exc), sent=True)
            return
        except Flood as exc:
            self.connection_error(ErrorCodes.ENHANCE_YOUR_CALM, str(exc))
            return
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.transport.write(data)

    def connection_error(self, code: int, message: str, sent: bool = False) -> None:
        """GOAWAY with ``code`` and close. ``sent``: h2 queued a GOAWAY of
        its own (with its code), replaced here by ours."""
        logger.info(
            "HTTP/2 connection error with %s: %s (%s)",
            describe_client(self.carrier.client),
            message,
            ErrorCodes(code).name if code in ErrorCodes._value2member_map_ else code,
        )
        data = self.h2.data_to_send()
        if sent and data[-17:-14] == b"\x00\x00\x08" and data[-14:-13] == b"\x07":
            data = data[:-17]  # h2's GOAWAY: 9-byte header, 8-byte payload
        self.goaway(code, data)
        self.close()

    def goaway(self, code: int, before: bytes = b"") -> None:
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.h2.highest_inbound_stream_id
        frame.error_code = code
        if not self.closed:
            self.transport.write(before + frame.serialize())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.cancel_idle()
            self.carrier.close()

    # -- h2 events ---------------------------------------------------------------

    def stream_reset(self, event: h2.events.StreamReset) -> None:
        if not self.guard.charge("reset"):
            raise Flood("RST_STREAM flood (rapid reset)")
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        stream.closed = True
        if stream.head_sent:
            stream.log()  # a response cut short is logged with what was sent
        self.stream_gone(stream)

    def window_updated(self, event: h2.events.WindowUpdated) -> None:
        if event.stream_id == 0:
            self.push_waiting()
        else:
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream in self.waiting:
                stream.push()

    def settings_changed(self, event: h2.events.RemoteSettingsChanged) -> None:
        if not self.guard.charge("settings"):
            raise Flood("SETTINGS flood")
        if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            self.push_waiting()

    def settings_acknowledged(self, event: Any) -> None:
        # h2 applies the advertised list size to its decoder; daphne's own
        # check answers 431 below the bomb size.
        self.h2.decoder.max_header_list_size = self.bomb_size

    def ping_received(self, event: Any) -> None:
        if not self.guard.charge("ping"):
            raise Flood("PING flood")

    def cheap_frame(self, event: Any) -> None:
        if not self.guard.charge("empty"):
            raise Flood("Frame flood")

    def terminated(self, event: h2.events.ConnectionTerminated) -> None:
        # The client's GOAWAY: it opens no more streams; finish the others.
        self.draining = True
        self.h2.clear_outbound_data_buffer()
        self.close_if_done()

    # -- streams -----------------------------------------------------------------

    def acknowledge(self, stream_id: int, size: int) -> None:
        if not self.closed:
            # (On a stream closed meanwhile, h2 credits the connection only.)
            self.h2.acknowledge_received_data(size, stream_id)
            self.flush()

    def reset_stream(self, stream: H2Stream, code: int) -> None:
        if not stream.closed:
            stream.closed = True
            self.h2.reset_stream(stream.stream_id, code)
            self.flush()
        self.stream_gone(stream)

    def stream_gone(self, stream: H2Stream) -> None:
        """The stream is over before its response was: tell its app."""
        stream.outbound.clear()
        self.waiting.discard(stream)
        exchange = stream.exchange
        if exchange is not None and stream in self.running:
            exchange.gone = True
            instance = exchange.instance
            if instance is not None:
                instance.put({"type": "http.disconnect"})
                instance.disconnected()
        self.forget(stream)

    def response_sent(self, stream: H2Stream) -> None:
        exchange = stream.exchange
        if exchange is not None and not exchange.body_complete:
            # Answered before the body ended: the rest is not wanted
            # (RFC 9113 section 8.1).
            self.h2.reset_stream(stream.stream_id, ErrorCodes.NO_ERROR)
        stream.closed = True
        self.waiting.discard(stream)
        if exchange is not None and exchange.instance is not None:
            exchange.instance.put({"type": "http.disconnect"})
            exchange.instance.resume_sending()
        self.forget(stream)

    def application_ended(self, stream: H2Stream) -> None:
        if stream in self.running:
            self.running.discard(stream)
            limits = self.factory.limits
            if limits is not None:
                limits.release()
        stream.cancel_timer()
        self.forget(stream)

    def forget(self, stream: H2Stream) -> None:
        if stream.closed and stream not in self.running:
            self.streams.pop(stream.stream_id, None)
            self.close_if_done()
            self.set_idle()

    def blocked(self, stream: H2Stream) -> None:
        if stream not in self.waiting:
            self.waiting.add(stream)
            exchange = stream.exchange
            if exchange is not None and exchange.instance is not None:
                exchange.instance.pause_sending()

    def unblocked(self, stream: H2Stream) -> None:
        if stream in self.waiting:
            self.waiting.discard(stream)
            exchange = stream.exchange
            if (
                not self.write_paused
                and exchange is not None
                and exchange.instance is not None
            ):
                exchange.instance.resume_sending()

    def push_waiting(self) -> None:
        for stream in list(self.waiting):
            if stream in self.waiting:
                stream.push()
        self.flush()

    # -- timers --------------------------------------------------------------------

    def set_idle(self) -> None:
        if self.streams or self.closed or self.idle_timer is not None:
            return
        self.idle_timer = self.reactor.callLater(
            self.config.http2_idle_timeout, self.idle
        )

    def cancel_idle(self) -> None:
        timer, self.idle_timer = self.idle_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def idle(self) -> None:
        self.idle_timer = None
        if not self.streams:
            self.goaway(ErrorCodes.NO_ERROR)
            self.close()

    # -- the carrier's calls ---------------------------------------------------------

    def pause_sending(self) -> None:
        self.write_paused = True
        for stream in self.running:
            stream.exchange.instance.pause_sending()

    def resume_sending(self) -> None:
        self.write_paused = False
        for stream in self.running:
            if stream not in self.waiting:
                stream.exchange.instance.resume_sending()

    def shutdown(self) -> None:
        """Graceful: GOAWAY with the last stream id; in-flight streams finish."""
        if self.draining or self.closed:
            self.close_if_done()
            return
        self.draining = True
        self.flush()
        self.goaway(ErrorCodes.NO_ERROR)
        self.close_if_done()

    def close_if_done(self) -> None:
        if self.draining and not self.streams and not self.closed:
            self.flush()
            self.close()

    def connection_lost(self, reason: Any) -> None:
        self.closed = True
        self.cancel_idle()
        for stream in list(self.streams.values()):
            if not stream.closed:
                stream.closed = True
                stream.log()
            stream.cancel_timer()
            self.stream_gone(stream)
