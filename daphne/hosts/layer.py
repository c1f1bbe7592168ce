"""LayerHost: serves through a channel layer (ASGI v1) instead of an application.

Each request or WebSocket becomes messages on the layer's well-known channels
(``http.request``, ``http.disconnect``, ``websocket.connect``,
``websocket.receive``, ``websocket.disconnect``), in exactly the shapes the
original Daphne 1.x sent, so workers written for it run unchanged. Workers
answer on the connection's reply channel: one process-specific channel
``daphne.response.<random>!`` for the whole server, with one name under it per
connection. A reply reader receives on it and routes each reply to its
connection, translated into the ASGI 3 events the protocol objects take.

This module is the only place that knows ASGI v1 message shapes; the
protocol classes are the same as for applications.

Two additions to the v1 messages, both ignored by v1 workers:

* every message daphne sends carries ``type``, equal to the name of the
  well-known channel it belongs to (``http.request``, ``websocket.receive``,
  ...), so that Channels 4 consumers (behind a ``ChannelNameRouter``, e.g.
  ``manage.py runworker``) can take them;
* a reply may carry ``worker_channel`` (see :data:`WORKER_CHANNEL`): the
  channel the connection's later messages (``websocket.receive``,
  ``websocket.disconnect``, ``http.disconnect``) go to instead of the
  well-known one, so that they reach the worker running the connection's
  application instance (``daphne-worker``, :mod:`daphne.worker`); such a
  worker gets no ``http.disconnect`` for a response it completed. While a
  connection has such a worker, every message sent to it must be answered
  within ``http_timeout`` (a reply of ``worker_channel`` alone is an
  acknowledgement), or the socket closes with 1011: its worker is gone. A
  reply with ``worker_channel: None`` hands the socket back: daphne sends
  its ``websocket.connect`` again (with ``resumed: True``) for another
  worker to take, and holds its frames until that worker answers.

Reply readers, best first:

* :class:`RedisReader`, for ``channels_redis``: one loop taking every reply
  off the server's process-specific prefix as it arrives (``BZPOPMIN``, see
  :mod:`daphne.layers.redis_direct`), never cancelled;
* :class:`AsyncReader`, for other layers whose ``send``/``receive`` are coroutines
  (Channels 4 layers such as ``channels_redis``): one ``receive`` per
  connection, on the reactor's asyncio loop;
* :class:`TwistedReader`, for layers with the ``twisted`` extension
  (``daphne.layers.InMemoryChannelLayer``, ``asgi_redis`` with txredisapi):
  the layer wakes the reactor when a reply arrives, so nothing polls (and
  the in-memory layer's queued replies are taken a batch at a time);
* :class:`PollingReader`, for any other layer (or ``--force-sync``): a
  non-blocking ``receive`` whose delay shrinks under traffic and grows when
  idle, and which stops while no connection awaits a reply.

A layer that raises is logged and answered (503, close 1011/1013); readers
back off and carry on, so service resumes when the backend returns.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import random
import string
from collections import deque
from itertools import chain
from typing import Any
from urllib.parse import quote

from ..config import Config
from ..http.pages import error_page
from ..layers.base import ChannelFull, MessageTooLarge
from ..layers.redis_direct import (
    ExactlyOnceReceiver,
    OneTripSender,
    is_channels_redis,
)
from . import ASGIProtocolError, ClientDisconnected, Event, Scope, Sink

logger = logging.getLogger(__name__)

#: Default ``http_timeout`` in channel-layer mode: a worker that never answers
#: must not hold a request (and its connection) forever.
LAYER_HTTP_TIMEOUT = 120.0
#: ``websocket_timeout`` when the layer has no ``group_expiry``.
DEFAULT_GROUP_EXPIRY = 86400.0

#: The reply key naming the worker that runs a connection's instance.
WORKER_CHANNEL = "worker_channel"

#: Keys a WebSocket reply may carry.
WEBSOCKET_REPLY_KEYS = frozenset({"accept", "text", "bytes", "close", WORKER_CHANNEL})

_random = random.SystemRandom()

#: Hexadecimal digits to letters, for reply channel names made of letters.
LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")


def random_name(length: int = 10) -> str:
    return "".join(_random.choices(string.ascii_letters, k=length))


def is_async_layer(layer: Any) -> bool:
    """Whether ``layer`` is an asyncio layer (Channels 4 style)."""
    return inspect.iscoroutinefunction(getattr(layer, "send", None))


def has_layer_methods(target: Any) -> bool:
    """Whether ``target`` (an object or a class) has a channel layer's methods."""
    return all(
        callable(getattr(target, name, None))
        for name in ("send", "receive", "new_channel")
    )


def is_channel_layer(target: Any) -> bool:
    """Whether ``target`` looks like a channel layer rather than an application."""
    return not inspect.isclass(target) and has_layer_methods(target)


def layer_config(config: Config, layer: Any, explicit: set[str]) -> Config:
    """``config`` with channel-layer defaults for the fields not in ``explicit``:
    a 120 s HTTP timeout, and WebSocket lifetime from the layer's group expiry
    (a socket outliving its group memberships would stop getting messages)."""
    changes: dict[str, Any] = {}
    if "http_timeout" not in explicit and config.http_timeout is None:
        changes["http_timeout"] = LAYER_HTTP_TIMEOUT
    if "websocket_timeout" not in explicit:
        expiry = getattr(layer, "group_expiry", None)
        if isinstance(expiry, (int, float)) and expiry > 0:
            changes["websocket_timeout"] = float(expiry)
        else:
            changes["websocket_timeout"] = DEFAULT_GROUP_EXPIRY
    return config.replace(**changes) if changes else config


def shortcut(layer: Any, name: str, *bypassed: str) -> Any:
    """The layer's method ``name``, a faster way to do what its methods
    ``bypassed`` do, unless the layer overrides one of those below the class
    that defines ``name`` (a subclass that changes ``send`` must see every
    message, and would not if daphne used the base class's ``send_owned``)."""
    method = getattr(layer, name, None)
    if method is None:
        return None
    if name not in vars(layer) and any(other in vars(layer) for other in bypassed):
        return None
    mro = type(layer).__mro__

    def depth(attribute: str) -> int:
        return next(
            (i for i, cls in enumerate(mro) if attribute in vars(cls)), len(mro)
        )

    if any(depth(other) < depth(name) for other in bypassed):
        return None
    return method


def is_channel_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a layer's ChannelFull: ASGI v1 layers and Channels 4
    layers each define their own class, and all of them call it that."""
    return isinstance(exc, ChannelFull) or _named(exc, "ChannelFull")


def is_message_too_large(exc: BaseException) -> bool:
    return isinstance(exc, MessageTooLarge) or _named(exc, "MessageTooLarge")


def _named(exc: BaseException, name: str) -> bool:
    return any(cls.__name__ == name for cls in type(exc).__mro__)


class InvalidReply(ASGIProtocolError):
    """A worker's reply message does not fit the ASGI v1 shapes."""


class LayerHost:
    """Starts one :class:`LayerInstance` per request or WebSocket."""

    def __init__(
        self,
        layer: Any,
        config: Config,
        reactor: Any,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.layer = layer
        self.config = config
        self.reactor = reactor
        self._loop = loop
        self.is_async = is_async_layer(layer)
        #: How asyncio layers' messages go out (channels_redis: one trip).
        self.send_async = (
            OneTripSender(layer).send if is_channels_redis(layer) else layer.send
        )
        #: A layer that takes messages without copying them (the in-memory
        #: one): every message is built afresh for its send, so it may.
        self.send_owned = (
            None if self.is_async else shortcut(layer, "send_owned", "send")
        )
        #: The process-specific channel replies arrive on (an asyncio layer
        #: names it itself, in :meth:`start_reading`).
        self.prefix = f"daphne.response.{random_name()}!"
        self.counter = itertools.count()
        #: reply channel -> the instance awaiting replies on it
        self.instances: dict[str, LayerInstance] = {}
        self.reader: Reader = self._choose_reader()
        #: The reader wants to hear of every send (to poll sooner).
        self.polling = isinstance(self.reader, PollingReader)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_event_loop()
        return self._loop

    def _choose_reader(self) -> Reader:
        if self.is_async:
            if is_channels_redis(self.layer):
                return RedisReader(self)
            return AsyncReader(self)
        extensions = getattr(self.layer, "extensions", ()) or ()
        if "twisted" in extensions and not self.config.force_sync:
            return TwistedReader(self)
        return PollingReader(self)

    # -- Host ----------------------------------------------------------------

    def start(self, scope: Scope, sink: Sink) -> LayerInstance:
        if scope["type"] == "websocket":
            return WebSocketInstance(self, scope, sink)
        return HTTPInstance(self, scope, sink)

    # -- the reply reader --------------------------------------------------------

    async def start_reading(self) -> None:
        await self.reader.start()
        logger.info("%s", self.reader.description)

    async def close(self, timeout: float) -> None:
        """Stop the reader (the server has closed every connection)."""
        self.reader.stop()

    def register(self, instance: LayerInstance) -> str:
        # Unique within the process (a counter, spelt in letters); the prefix
        # is random, so names are unique across processes too.
        channel = self.prefix + format(next(self.counter), "010x").translate(LETTERS)
        self.instances[channel] = instance
        self.reader.registered(channel)
        return channel

    def unregister(self, channel: str) -> None:
        if self.instances.pop(channel, None) is not None:
            self.reader.unregistered(channel)

    def dispatch(self, channel: str, message: Any) -> None:
        """Route one reply to its connection."""
        instance = self.instances.get(channel)
        if instance is None:
            logger.debug(
                "Dropped a reply for %s: no such connection (any more)", channel
            )
            return
        instance.reply(message)

    # -- sending -------------------------------------------------------------------

    def send(
        self, instance: LayerInstance, channel: str, message: dict, size: int = 0
    ) -> None:
        """Send ``message``; a failure is reported to ``instance.send_failed``
        (always later, never from inside this call).

        ``message`` is the layer's from now on: built for this send, sharing
        no list or dict with anything else, never touched again. ``size`` is
        about how many bytes it holds beyond its fixed keys."""
        if self.polling:
            self.reader.activity()
        if self.is_async:
            if instance.outbox is None:
                instance.outbox = deque()
            instance.outbox.append((channel, message))
            if len(instance.outbox) == 1:
                self.loop.create_task(self._drain(instance))
            return
        try:
            if self.send_owned is not None:
                self.send_owned(channel, message, size)
            else:
                self.layer.send(channel, message)
        except Exception as exc:
            # Nothing more may go out for this exchange from now on; the
            # answer to the client comes from a fresh call stack.
            instance.refuse_sends(channel)
            self.reactor.callLater(0, instance.send_failed, channel, exc)

    async def _drain(self, instance: LayerInstance) -> None:
        # One task per connection at a time keeps its messages in order.
        outbox = instance.outbox
        while outbox:
            channel, message = outbox[0]
            try:
                await self.send_async(channel, message)
            except Exception as exc:
                instance.refuse_sends(channel)
                instance.send_failed(channel, exc)
            outbox.popleft()
            if instance.muted:
                outbox.clear()


class LayerInstance:
    """One connection's exchange with the workers, seen as an ASGI instance."""

    __slots__ = (
        "host",
        "scope",
        "sink",
        "channel",
        "ended",
        "replying",
        "outbox",
        "muted",
        "owner",
    )

    def __init__(self, host: LayerHost, scope: Scope, sink: Sink) -> None:
        self.host = host
        self.scope = scope
        self.sink = sink
        self.ended = False
        #: A reply is being delivered; its end is reported after it.
        self.replying = False
        #: Messages not yet sent (asyncio layers only).
        self.outbox: deque[tuple[str, dict]] | None = None
        #: The layer refused a message: no more are sent for this exchange.
        self.muted = False
        #: The worker running this connection's instance, if it named itself
        #: (``worker_channel`` in a reply): later messages go there.
        self.owner: str | None = None
        self.channel = host.register(self)

    # -- Instance ------------------------------------------------------------

    def put(self, event: Event) -> bool:
        raise NotImplementedError

    def pause_sending(self) -> None:
        pass  # (a worker cannot be told to wait: its replies are buffered)

    def resume_sending(self) -> None:
        pass

    def disconnected(self) -> None:
        self.host.unregister(self.channel)
        self.end_soon()

    # -- the end -----------------------------------------------------------------

    def end(self, exc: BaseException | None = None) -> None:
        """Report the end of the exchange to the protocol (once)."""
        if self.ended:
            return
        self.ended = True
        self.host.unregister(self.channel)
        self.sink.application_finished(exc)

    def end_soon(self, exc: BaseException | None = None) -> None:
        """:meth:`end`, from a fresh call stack (the protocol may be in the
        middle of calling us)."""
        if not self.ended:
            self.host.reactor.callLater(0, self.end, exc)

    # -- replies ---------------------------------------------------------------

    def reply(self, message: Any) -> None:
        """Deliver one reply message from a worker."""
        self.replying = True
        try:
            if type(message) is not dict:
                raise InvalidReply(f"A reply must be a dict, not {type(message)}")
            self.handle(message)
        except InvalidReply as exc:
            logger.error("Invalid reply on %s: %s", self.channel, exc)
            self.refused(exc)
        except ClientDisconnected:
            pass  # the socket closed meanwhile; its disconnect is on its way
        except ASGIProtocolError as exc:
            # (The protocol has logged it and answered 500 or closed 1011.)
            self.refused(exc)
        except Exception as exc:
            logger.exception("Could not deliver a reply on %s", self.channel)
            self.refused(InvalidReply(str(exc)))
        finally:
            self.replying = False

    def handle(self, message: dict) -> None:
        raise NotImplementedError

    def refused(self, exc: ASGIProtocolError) -> None:
        """A reply could not be delivered: end the exchange as an error."""
        self.end(exc)

    def refuse_sends(self, channel: str) -> None:
        """A send to ``channel`` failed: stop sending (at once; the failure
        itself is reported by :meth:`send_failed`, later)."""

    def send_failed(self, channel: str, exc: Exception) -> None:
        raise NotImplementedError

    def log_send_failure(self, channel: str, exc: Exception, outcome: str) -> None:
        if is_channel_full(exc):
            logger.warning("Channel %s is full: %s", channel, outcome)
        else:
            logger.error(
                "Could not send to channel %s (%s: %s): %s",
                channel,
                type(exc).__name__,
                exc,
                outcome,
            )


class HTTPInstance(LayerInstance):
    """A request: one ``http.request`` with the whole body, replies
    ``{status, headers, content, more_content}``, then ``http.disconnect``."""

    __slots__ = ("chunks", "request_sent", "started", "disconnect_sent")

    def __init__(self, host: LayerHost, scope: Scope, sink: Sink) -> None:
        super().__init__(host, scope, sink)
        self.chunks: list[bytes] = []
        self.request_sent = False
        self.started = False
        self.disconnect_sent = False
        # The worker needs the whole body: let a client that waits for
        # "100 Continue" send it.
        sink.receive_requested()

    def put(self, event: Event) -> bool:
        kind = event["type"]
        if kind == "http.request":
            self.chunks.append(event.get("body", b""))
            if not event.get("more_body", False):
                self.send_request()
        elif kind == "http.disconnect":
            self.send_disconnect()
            self.host.unregister(self.channel)
            self.end_soon()
        return True

    def end_soon(self, exc: BaseException | None = None) -> None:
        if not self.replying:  # (else the reply being delivered ends it)
            super().end_soon(exc)

    def refused(self, exc: ASGIProtocolError) -> None:
        self.send_disconnect()  # (the protocol's finish() will find no instance)
        self.end(exc)

    def send_disconnect(self) -> None:
        """``http.disconnect``, once, if the workers heard of the request."""
        if self.request_sent and not self.disconnect_sent:
            self.disconnect_sent = True
            self.host.send(
                self,
                self.owner or "http.disconnect",
                {
                    "type": "http.disconnect",
                    "reply_channel": self.channel,
                    "path": self.scope["path"],
                },
            )

    def send_request(self) -> None:
        scope = self.scope
        chunks, self.chunks = self.chunks, []
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        headers = scope["headers"]
        path = scope["path"]
        query = scope["query_string"]
        self.request_sent = True
        self.host.send(
            self,
            "http.request",
            {
                "type": "http.request",
                "reply_channel": self.channel,
                "http_version": scope["http_version"],
                "method": scope["method"],
                "path": path,
                "root_path": scope["root_path"],
                "scheme": scope["scheme"],
                "query_string": query,
                "headers": list(headers),
                "body": body,
                "client": address(scope["client"]),
                "server": address(scope["server"]),
            },
            len(body) + len(path) + len(query) + headers_size(headers),
        )

    def handle(self, message: dict) -> None:
        sink = self.sink
        if WORKER_CHANNEL in message:
            self.owner = message[WORKER_CHANNEL] or None
            if len(message) == 1:
                return  # (an acknowledgement only)
        if not self.started:
            status = message.get("status")
            if status is None:
                raise InvalidReply("The first reply to a request must have a status")
            self.started = True
            sink.handle_reply(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": reply_headers(message.get("headers")),
                }
            )
        elif "status" in message:
            raise InvalidReply("A status in a later reply (the response has begun)")
        more = bool(message.get("more_content", False))
        if not more and self.owner is not None:
            # A worker that names itself ran the request to its end and needs
            # no http.disconnect for it (v1 workers still get one). (Before
            # the body goes out: finishing the response reports the end.)
            self.disconnect_sent = True
        sink.handle_reply(
            {
                "type": "http.response.body",
                "body": message.get("content", b""),
                "more_body": more,
            }
        )
        if not more:
            self.end()

    def refuse_sends(self, channel: str) -> None:
        if channel == "http.request":
            self.request_sent = False  # the workers never heard of it

    def send_failed(self, channel: str, exc: Exception) -> None:
        if channel != "http.request" or self.ended:
            # (A lost http.disconnect is not the client's problem.)
            self.log_send_failure(channel, exc, "ignored")
            return
        if is_channel_full(exc):
            status, detail = 503, "Request queue full."
        elif is_message_too_large(exc):
            status, detail = 413, "The request is too large for the channel layer."
        else:
            status, detail = 503, "The channel layer is unavailable."
        self.log_send_failure(channel, exc, f"answered {status}")
        self.respond(status, detail)

    def respond(self, status: int, detail: str) -> None:
        """Answer with an error page of daphne's own, and end."""
        content_type, body = error_page(status, detail)
        self.replying = True
        try:
            self.sink.handle_reply(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", content_type)],
                }
            )
            self.sink.handle_reply({"type": "http.response.body", "body": body})
        except ASGIProtocolError:
            pass  # (the response had begun: the protocol ends it)
        finally:
            self.replying = False
        self.end()


class WebSocketInstance(LayerInstance):
    """A WebSocket: ``websocket.connect``, ``.receive`` (numbered by
    ``order``) and ``.disconnect``; replies ``{accept, text, bytes, close}``
    (and ``worker_channel``, see the module's docstring)."""

    __slots__ = ("order", "accepted", "timer", "held")

    def __init__(self, host: LayerHost, scope: Scope, sink: Sink) -> None:
        super().__init__(host, scope, sink)
        #: Frames received so far.
        self.order = 0
        self.accepted = False
        #: Fires if the owning worker does not answer in time.
        self.timer: Any = None
        #: Messages held while the socket waits for a new worker (resumed),
        #: with their sizes.
        self.held: list[tuple[str, dict, int]] | None = None

    def put(self, event: Event) -> bool:
        if self.muted:
            if event["type"] == "websocket.disconnect":
                self.stop_timer()
                self.host.unregister(self.channel)
                self.end_soon()
            return True
        kind = event["type"]
        scope = self.scope
        if kind == "websocket.receive":
            self.order += 1
            message = {
                "type": kind,
                "reply_channel": self.channel,
                "path": scope["path"],
                "order": self.order,
            }
            data = event.get("bytes")
            if data is not None:
                message["bytes"] = data
            else:
                data = message["text"] = event["text"]
            self.forward(kind, message, len(data))
        elif kind == "websocket.connect":
            self.host.send(self, kind, *self.connect_message())
        elif kind == "websocket.disconnect":
            message = {
                "type": kind,
                "reply_channel": self.channel,
                "code": event["code"],
                "path": scope["path"],
                "order": self.order + 1,
            }
            self.stop_timer()
            if self.held is not None:
                # (Nobody took the socket back yet: tell whoever takes the
                # well-known channel, as for v1 workers.)
                self.held = None
                self.host.send(self, kind, message)
            else:
                self.host.send(self, self.owner or kind, message)
            self.host.unregister(self.channel)
            self.end_soon()
        return True

    def connect_message(self, resumed: bool = False) -> tuple[dict, int]:
        """A ``websocket.connect`` message, and about how large it is."""
        scope = self.scope
        headers = [*scope["headers"]]
        root_path = scope["root_path"]
        if root_path != self.host.config.root_path:
            # It came from a Daphne-Root-Path header, which the message
            # keeps (it has no root_path key of its own).
            headers.append((b"daphne-root-path", quote(root_path).encode()))
        path = scope["path"]
        query = scope["query_string"]
        message = {
            "type": "websocket.connect",
            "reply_channel": self.channel,
            "path": path,
            "headers": headers,
            "query_string": query,
            "client": address(scope["client"]),
            "server": address(scope["server"]),
            "order": 0,
        }
        if resumed:
            # Frames already received: the next one is order + 1.
            message["order"] = self.order
            message["resumed"] = True
        return message, len(path) + len(query) + headers_size(headers)

    def forward(self, kind: str, message: dict, size: int) -> None:
        """Send a client message to the socket's worker (or hold it)."""
        if self.held is not None:
            self.held.append((kind, message, size))
            return
        owner = self.owner
        self.host.send(self, owner or kind, message, size)
        if owner is not None:
            self.start_timer()

    # -- the owning worker's liveness ---------------------------------------------

    def start_timer(self) -> None:
        timeout = self.host.config.http_timeout
        if self.timer is None and timeout:
            self.timer = self.host.reactor.callLater(timeout, self.worker_lost)

    def stop_timer(self) -> None:
        if self.timer is not None:
            if self.timer.active():
                self.timer.cancel()
            self.timer = None

    def worker_lost(self) -> None:
        self.timer = None
        if self.ended:
            return
        logger.warning(
            "No reply from worker %s within %gs on %s: closing the socket (1011)",
            self.owner or "(any)",
            self.host.config.http_timeout,
            self.channel,
        )
        self.held = None
        if self.accepted:
            self.fail(1011)
        else:
            self.deny(503, "No worker answered.")

    def end(self, exc: BaseException | None = None) -> None:
        self.stop_timer()
        super().end(exc)

    def take_worker(self, message: dict) -> None:
        """A reply's ``worker_channel``: who runs the instance from now on."""
        owner = message.pop(WORKER_CHANNEL)
        if owner is None:
            # Handed back (its worker is stopping): another worker takes the
            # socket over from a repeated websocket.connect.
            self.owner = None
            self.held = []
            self.host.send(self, "websocket.connect", *self.connect_message(True))
            self.start_timer()
            return
        if not isinstance(owner, str):
            raise InvalidReply(f"Invalid worker_channel {owner!r}")
        self.owner = owner

    def handle(self, message: dict) -> None:
        unknown = message.keys() - WEBSOCKET_REPLY_KEYS
        if unknown:
            raise InvalidReply(f"Unknown keys in a WebSocket reply: {sorted(unknown)}")
        self.stop_timer()  # the worker is alive
        held = self.held
        if held is not None and message.get(WORKER_CHANNEL, True) is not None:
            self.held = None  # taken back: what was held goes to the new worker
        else:
            held = None
        if WORKER_CHANNEL in message:
            message = dict(message)
            self.take_worker(message)
        if held:
            for kind, waiting, size in held:
                self.forward(kind, waiting, size)
        text = message.get("text")
        data = message.get("bytes")
        if text is not None and data is not None:
            raise InvalidReply("A WebSocket reply may carry text or bytes, not both")
        close = message.get("close")
        send = self.sink.handle_reply
        if not self.accepted:
            accept = message.get("accept")
            if accept is False:
                send({"type": "websocket.close"})  # refused: 403
                return
            if accept or text is not None or data is not None:
                self.accepted = True  # (sending accepts implicitly)
                send({"type": "websocket.accept", "subprotocol": self.subprotocol()})
        if text is not None:
            send({"type": "websocket.send", "text": text})
        elif data is not None:
            send({"type": "websocket.send", "bytes": data})
        if close:
            if close is True:
                close = 1000
            elif not isinstance(close, int):
                raise InvalidReply(f"Invalid close value {close!r}")
            send({"type": "websocket.close", "code": close})

    def refused(self, exc: ASGIProtocolError) -> None:
        # The socket stays this instance's until it closes, so that the
        # workers still hear of its disconnect.
        if isinstance(exc, InvalidReply):
            if self.accepted:
                self.fail(1011)
            else:
                self.deny(500, "")

    def fail(self, code: int) -> None:
        """Close an accepted socket with ``code``."""
        self.deliver({"type": "websocket.close", "code": code})

    def deny(self, status: int, detail: str) -> None:
        """Refuse the handshake with an error page of daphne's own."""
        content_type, body = error_page(status, detail)
        self.deliver(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type)],
            },
            {"type": "websocket.http.response.body", "body": body},
        )

    def deliver(self, *events: Event) -> None:
        replying, self.replying = self.replying, True
        try:
            for event in events:
                self.sink.handle_reply(event)
        except (ASGIProtocolError, ClientDisconnected):
            pass  # (closed or refused meanwhile)
        finally:
            self.replying = replying

    def subprotocol(self) -> str | None:
        """The first subprotocol the client offers that the server speaks."""
        allowed = self.host.config.ws_protocols
        for name in self.scope["subprotocols"]:
            if name in allowed:
                return name
        return None

    def refuse_sends(self, channel: str) -> None:
        # Like the original: the workers hear nothing more of this socket,
        # not even frames already read.
        if channel != "websocket.disconnect":
            self.muted = True

    def send_failed(self, channel: str, exc: Exception) -> None:
        # (Once at most: refuse_sends muted the socket, so nothing else was
        # sent after the message that failed.)
        if channel == "websocket.disconnect" or self.ended:
            self.log_send_failure(channel, exc, "ignored")
            return
        full = is_channel_full(exc)
        if channel == "websocket.connect" and not self.accepted:
            self.log_send_failure(channel, exc, "WebSocket handshake refused (503)")
            detail = "Connection queue at capacity." if full else "Layer unavailable."
            self.deny(503, detail)
        else:
            code = 1013 if full else 1011
            self.log_send_failure(channel, exc, f"WebSocket closed ({code})")
            self.fail(code)


def address(value: list | None) -> list | None:
    """A scope's ``client`` or ``server``, as a list of the message's own."""
    return None if value is None else [*value]


def headers_size(headers: list[tuple[bytes, bytes]]) -> int:
    """The bytes of names and values in ``headers``."""
    return sum(map(len, chain.from_iterable(headers)))


def reply_headers(headers: Any) -> list[tuple[bytes, bytes]]:
    """A reply's ``headers`` as byte pairs (text is taken as latin-1)."""
    pairs = []
    try:
        for name, value in headers or ():
            if type(name) is not bytes and isinstance(name, str):
                name = name.encode("latin-1")
            if type(value) is not bytes and isinstance(value, str):
                value = value.encode("latin-1")
            pairs.append((name, value))
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise InvalidReply(f"Invalid reply headers {headers!r}: {exc}") from None
    return pairs


# -- reply readers ------------------------------------------------------------------


class Reader:
    """Receives replies for the host's connections and dispatches them."""

    description = ""

    #: Error back-off: first delay, and the longest.
    RETRY_FIRST = 0.05
    RETRY_MAX = 2.0

    def __init__(self, host: LayerHost) -> None:
        self.host = host
        self.layer = host.layer
        self.reactor = host.reactor
        self.stopped = False
        self.retry_delay = 0.0

    async def start(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped = True

    def registered(self, channel: str) -> None:
        pass

    def activity(self) -> None:
        """A message went to the workers: a reply may follow soon."""

    def unregistered(self, channel: str) -> None:
        pass

    def failed(self, exc: BaseException) -> float:
        """Log a failed receive; returns the delay before the next try."""
        if not self.retry_delay:
            logger.error(
                "Error receiving from the channel layer: %s: %s (retrying)",
                type(exc).__name__,
                exc,
            )
            self.retry_delay = self.RETRY_FIRST
        else:
            logger.debug("Channel layer receive still failing: %s", exc)
            self.retry_delay = min(self.retry_delay * 2, self.RETRY_MAX)
        return self.retry_delay

    def succeeded(self) -> None:
        if self.retry_delay:
            self.retry_delay = 0.0
            logger.info("Receiving from the channel layer again")


class PollingReader(Reader):
    """Non-blocking receives on the reactor, only while replies are awaited.

    The delay between empty polls doubles from ``MIN_DELAY`` to ``MAX_DELAY``
    and drops to zero as soon as a reply arrives."""

    MIN_DELAY = 0.001
    MAX_DELAY = 0.05
    #: Replies dispatched per reactor turn, so reads and writes interleave.
    BATCH = 64

    def __init__(self, host: LayerHost) -> None:
        super().__init__(host)
        self.call: Any = None
        #: Inside poll(): it schedules the next one itself.
        self.polling = False
        self.delay = 0.0
        self.description = (
            f"Polling the channel layer for replies on {host.prefix} "
            f"(every {self.MIN_DELAY * 1000:g} to {self.MAX_DELAY * 1000:g} ms "
            "while replies are awaited)"
        )

    def registered(self, channel: str) -> None:
        if self.call is None and not self.polling and not self.stopped:
            self.delay = 0.0
            self.call = self.reactor.callLater(0, self.poll)

    def activity(self) -> None:
        if self.delay > self.MIN_DELAY and not self.retry_delay:
            self.delay = self.MIN_DELAY
            if self.call is not None:
                self.call.reset(self.MIN_DELAY)

    def stop(self) -> None:
        super().stop()
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None

    def poll(self) -> None:
        self.call = None
        if self.stopped:
            return
        channels = [self.host.prefix]
        got = 0
        self.polling = True
        try:
            while got < self.BATCH:
                channel, message = self.layer.receive(channels, block=False)
                if channel is None:
                    break
                got += 1
                self.host.dispatch(channel, message)
        except Exception as exc:
            delay = self.failed(exc)
        else:
            self.succeeded()
            if got:
                delay = 0.0
            else:
                delay = min(max(self.delay * 2, self.MIN_DELAY), self.MAX_DELAY)
        finally:
            self.polling = False
        self.delay = delay
        if self.host.instances and not self.stopped and self.call is None:
            self.call = self.reactor.callLater(delay, self.poll)


class TwistedReader(Reader):
    """Loops on the layer's ``receive_twisted``: no polling at all.

    A layer that also offers ``receive_batch`` (non-blocking, many messages
    for one call: the in-memory layer) is drained with it first, so that a
    Deferred is made only to wait, once per wake-up rather than per reply."""

    #: Replies dispatched per drain, so reads and writes interleave.
    BATCH = 64

    def __init__(self, host: LayerHost) -> None:
        super().__init__(host)
        self.looping = False
        self.again = False
        self.channels = [host.prefix]  # (built once, not per reply)
        self.receive_batch = shortcut(
            self.layer, "receive_batch", "receive_twisted", "receive"
        )
        how = "drained in batches, " if self.receive_batch is not None else ""
        self.description = (
            f"Receiving replies on {host.prefix} through the channel layer's "
            f"Twisted extension ({how}no polling)"
        )

    async def start(self) -> None:
        self.read()

    def read(self) -> None:
        # A Deferred that has already fired runs its callback at once; loop
        # here instead of recursing once per queued reply.
        self.looping = True
        try:
            while not self.stopped:
                if self.receive_batch is not None and not self.drain():
                    return
                self.again = False
                try:
                    deferred = self.layer.receive_twisted(self.channels)
                except Exception as exc:
                    self.retry(exc)
                    return
                deferred.addCallbacks(self.got, self.lost)
                if not self.again:
                    return
        finally:
            self.looping = False

    def drain(self) -> bool:
        """Dispatch the replies already queued; False if reading goes on
        later (a full batch: after the reactor's turn; an error: after the
        back-off)."""
        try:
            replies = self.receive_batch(self.channels, self.BATCH)
        except Exception as exc:
            self.retry(exc)
            return False
        if self.retry_delay:
            self.succeeded()
        dispatch = self.host.dispatch
        for channel, message in replies:
            try:
                dispatch(channel, message)
            except Exception:
                logger.exception("Could not dispatch a reply")
        if len(replies) == self.BATCH and not self.stopped:
            self.reactor.callLater(0, self.read)
            return False
        return True

    def got(self, result: Any) -> None:
        self.succeeded()
        try:
            channel, message = result
            if channel is not None and not self.stopped:
                self.host.dispatch(channel, message)
        except Exception:
            logger.exception("Could not dispatch a reply")
        finally:
            self.next()

    def lost(self, failure: Any) -> None:
        self.retry(failure.value)

    def retry(self, exc: BaseException) -> None:
        if not self.stopped:
            self.reactor.callLater(self.failed(exc), self.read)

    def next(self) -> None:
        if self.looping:
            self.again = True
        else:
            self.read()


class AsyncReader(Reader):
    """For asyncio layers: one ``receive`` task per connection."""

    def __init__(self, host: LayerHost) -> None:
        super().__init__(host)
        self.tasks: dict[str, asyncio.Task] = {}
        self.description = "Receiving replies through the channel layer's asyncio API"

    async def start(self) -> None:
        # The layer names process-specific channels itself (Channels 4 layers
        # route them by a prefix of their own).
        name = await self.layer.new_channel("daphne.response")
        bang = name.find("!")
        self.host.prefix = name[: bang + 1] if bang >= 0 else name + "!"

    def registered(self, channel: str) -> None:
        self.tasks[channel] = self.host.loop.create_task(self.receive(channel))

    def unregistered(self, channel: str) -> None:
        task = self.tasks.pop(channel, None)
        if task is not None:
            task.cancel()

    def stop(self) -> None:
        super().stop()
        for task in self.tasks.values():
            task.cancel()
        self.tasks.clear()

    async def receive(self, channel: str) -> None:
        while not self.stopped:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await asyncio.sleep(self.failed(exc))
                continue
            self.succeeded()
            self.host.dispatch(channel, message)


class RedisReader(AsyncReader):
    """For channels_redis: one loop receives every reply of the server."""

    #: Seconds one receive blocks (the loop checks ``stopped`` in between).
    TIMEOUT = 1.0

    def __init__(self, host: LayerHost) -> None:
        super().__init__(host)
        self.task: asyncio.Task | None = None
        self.description = (
            "Receiving replies from channels_redis (one blocking pop per reply)"
        )

    async def start(self) -> None:
        await super().start()
        receiver = ExactlyOnceReceiver(
            self.layer, [self.host.prefix], timeout=self.TIMEOUT
        )
        self.task = self.host.loop.create_task(self.read(receiver))

    def registered(self, channel: str) -> None:
        pass

    def unregistered(self, channel: str) -> None:
        pass

    def stop(self) -> None:
        # (The loop ends after its current receive: cancelling it could
        # lose a reply Redis has popped.)
        self.stopped = True

    async def read(self, receiver: ExactlyOnceReceiver) -> None:
        while not self.stopped:
            try:
                got = await receiver.receive()
            except Exception as exc:
                await asyncio.sleep(self.failed(exc))
                continue
            self.succeeded()
            if got is not None:
                self.host.dispatch(*got)
