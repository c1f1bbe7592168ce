"""daphne-worker: runs an ASGI 3 application behind a channel layer.

In channel-layer mode daphne front servers hold the connections and turn
them into ASGI v1 messages on a channel layer (see
:mod:`daphne.hosts.layer`); this is the process on the other side::

    daphne-worker myproject.asgi:channel_layer myproject.asgi:application

It takes ``http.request`` and ``websocket.connect`` messages off the layer's
well-known channels, runs one application instance for each, and answers on
the message's ``reply_channel`` in v1 reply shapes. Any number of workers, on
any number of machines, can share one layer (a Channels 4 layer:
``channels_redis``, or anything with the same asyncio API).

* **Exactly once.** With ``channels_redis``, the shared channels are read
  with :class:`daphne.layers.redis_direct.ExactlyOnceReceiver` (the layer's
  own ``receive`` can hand a message to two workers; the module says why).
* **Later messages reach the instance.** Every reply names this worker's
  own process-specific channel in ``worker_channel``; daphne sends the
  connection's later messages (``websocket.receive``, ``websocket.disconnect``,
  ``http.disconnect``) there. While daphne waits on it, a reply of
  ``worker_channel`` alone acknowledges a message the application took
  without answering, so daphne can tell a live worker from a dead one.
* **Request bodies** arrive whole in ``body`` or, per ASGI v1, in chunks on a
  ``body_channel``.
* ``--concurrency N`` instances at most run at once (a WebSocket holds one
  for its life); the worker takes no new connection while all are busy.
* **Lifespan** startup runs before the first message is taken, shutdown
  after the last instance ends.
* **SIGTERM / SIGINT**: no new connection is taken; requests in flight
  finish; each WebSocket is handed back to daphne (``worker_channel: None``),
  which asks another worker to take it over with a repeated
  ``websocket.connect`` (``resumed: True``) while the client stays
  connected. The instance here gets ``websocket.disconnect`` with code 1012
  (service restart) to clean up.
* An application that raises: 500 for a request whose response has not
  begun (else the response ends there), close 1011 for a WebSocket.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from .layers.redis_direct import ExactlyOnceReceiver, OneTripSender, is_channels_redis
from .utils import ImportTargetError, import_by_path

logger = logging.getLogger("daphne.worker")

Event = dict[str, Any]
#: The channels a worker takes new connections from.
NEW_CHANNELS = ("http.request", "websocket.connect")
#: The reply key naming this worker (see daphne.hosts.layer).
WORKER_CHANNEL = "worker_channel"

ASGI = {"version": "3.0", "spec_version": "2.3"}


class Worker:
    """Runs ``application`` for messages taken off ``layer``."""

    #: Error back-off of the receive loops: first delay, and the longest.
    RETRY_FIRST = 0.05
    RETRY_MAX = 2.0

    def __init__(
        self,
        layer: Any,
        application: Callable[..., Awaitable[None]],
        concurrency: int = 100,
        shutdown_timeout: float = 30.0,
        lifespan: str = "auto",
        receive_timeout: float = 1.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.layer = layer
        self.application = application
        self.concurrency = concurrency
        self.shutdown_timeout = shutdown_timeout
        self.lifespan = lifespan
        self.receive_timeout = receive_timeout
        #: This worker's own channel (named by the layer in :meth:`run`).
        self.channel = ""
        #: reply channel -> the run it belongs to
        self.runs: dict[str, Run] = {}
        self.state: dict[str, Any] = {}
        self.stopping: asyncio.Event | None = None
        self.slots: asyncio.Semaphore | None = None
        self.handled = 0
        #: The own channel is read until the instances have ended.
        self.draining = True
        self.redis = is_channels_redis(layer)
        self.send = OneTripSender(layer).send if self.redis else layer.send

    async def own_channel(self) -> str:
        """This worker's process-specific channel. With channels_redis, under
        a prefix of its own: the layer's prefix is shared by the receives of
        the application's consumers, which must not take these messages."""
        if self.redis:
            return f"daphne.worker.{uuid.uuid4().hex}!{uuid.uuid4().hex}"
        return await self.layer.new_channel("daphne.worker")

    # -- the life of the worker ----------------------------------------------------

    async def run(self) -> None:
        self.stopping = asyncio.Event()
        self.slots = asyncio.Semaphore(self.concurrency)
        self.channel = await self.own_channel()
        lifespan = Lifespan(self.application, self.state, self.lifespan)
        await lifespan.startup()
        takers = [asyncio.ensure_future(take) for take in self.take_loops()]
        own = asyncio.ensure_future(self.own_loop())
        logger.info(
            "Worker %s taking %s (concurrency %d)",
            self.channel,
            ", ".join(NEW_CHANNELS),
            self.concurrency,
        )
        await self.stopping.wait()
        logger.info("Stopping: no new connections; finishing those in flight")
        # The loops end by themselves within receive_timeout: cancelling a
        # receive could lose the message it is taking.
        await asyncio.gather(*takers, return_exceptions=True)
        await self.drain()
        self.draining = False
        await asyncio.gather(own, return_exceptions=True)
        await lifespan.shutdown()
        logger.info("Stopped after %d messages", self.handled)

    def stop(self) -> None:
        if self.stopping is not None and not self.stopping.is_set():
            self.stopping.set()

    async def drain(self) -> None:
        """Let requests finish and hand the WebSockets back, within
        ``shutdown_timeout``."""
        for run in list(self.runs.values()):
            if isinstance(run, WebSocketRun):
                await run.hand_back()
        tasks = [run.task for run in self.runs.values() if run.task is not None]
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=self.shutdown_timeout)
        for task in pending:
            task.cancel()
        if pending:
            logger.warning(
                "Cancelled %d instances at the shutdown timeout", len(pending)
            )
            await asyncio.gather(*pending, return_exceptions=True)

    # -- taking messages -------------------------------------------------------------

    def take_loops(self) -> list[Awaitable[None]]:
        if self.redis:
            receiver = ExactlyOnceReceiver(
                self.layer, NEW_CHANNELS, timeout=self.receive_timeout
            )
            return [self.take_loop(receiver.receive)]
        # Any other asyncio layer: its own receive, one channel per loop.
        return [self.take_loop(self.layer_receiver(name)) for name in NEW_CHANNELS]

    def layer_receiver(self, name: str) -> Callable[[], Awaitable[Any]]:
        async def receive() -> Any:
            try:
                message = await asyncio.wait_for(
                    self.layer.receive(name), self.receive_timeout
                )
            except asyncio.TimeoutError:
                return None
            return name, message

        return receive

    async def take_loop(self, receive: Callable[[], Awaitable[Any]]) -> None:
        assert self.stopping is not None and self.slots is not None
        retry = 0.0
        while not self.stopping.is_set():
            if not await self.take_slot():
                break
            if self.stopping.is_set():
                self.slots.release()
                break
            try:
                got = await receive()
            except Exception as exc:
                self.slots.release()
                retry = self.failed(exc, retry)
                await asyncio.sleep(retry)
                continue
            if retry:
                retry = 0.0
                logger.info("Receiving from the channel layer again")
            if got is None:
                self.slots.release()
                continue
            self.start(*got)

    async def take_slot(self) -> bool:
        """Wait for a free slot; ``False`` if the worker stops first (its
        WebSockets may hold every slot until they are handed back)."""
        assert self.stopping is not None and self.slots is not None
        if not self.slots.locked():
            await self.slots.acquire()
            return True
        acquire = asyncio.ensure_future(self.slots.acquire())
        stopped = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if acquire.done() and not acquire.cancelled():
            return True
        acquire.cancel()
        return False

    async def own_loop(self) -> None:
        """Messages for connections running here: to their runs."""
        if self.redis:
            prefix = self.channel[: self.channel.index("!") + 1]
            receive = ExactlyOnceReceiver(
                self.layer, [prefix], timeout=self.receive_timeout
            ).receive
        else:
            receive = self.layer_receiver(self.channel)
        retry = 0.0
        while self.draining:
            try:
                got = await receive()
            except Exception as exc:
                retry = self.failed(exc, retry)
                await asyncio.sleep(retry)
                continue
            if retry:
                retry = 0.0
                logger.info("Receiving from the channel layer again")
            if got is None:
                continue
            message = got[1]
            run = self.runs.get(message.get("reply_channel"))
            if run is None:
                if message.get("type") != "http.disconnect":  # (after every request)
                    logger.debug(
                        "%s for %s: no such connection here (any more)",
                        message.get("type"),
                        message.get("reply_channel"),
                    )
                continue
            run.deliver(message)

    def failed(self, exc: Exception, retry: float) -> float:
        if not retry:
            logger.error(
                "Error receiving from the channel layer: %s: %s (retrying)",
                type(exc).__name__,
                exc,
            )
            return self.RETRY_FIRST
        return min(retry * 2, self.RETRY_MAX)

    def start(self, channel: str, message: dict) -> None:
        """Run one instance for a message from a well-known channel."""
        assert self.slots is not None
        reply_channel = message.get("reply_channel")
        if channel not in NEW_CHANNELS or not isinstance(reply_channel, str):
            logger.error("Dropped a message on %s without a reply_channel", channel)
            self.slots.release()
            return
        self.handled += 1
        if channel == "http.request":
            run: Run = HTTPRun(self, message)
        else:
            run = WebSocketRun(self, message)
        self.runs[reply_channel] = run
        run.task = asyncio.ensure_future(run.run())
        run.task.add_done_callback(lambda _: self.finished(reply_channel, run))

    def finished(self, reply_channel: str, run: Run) -> None:
        assert self.slots is not None
        if self.runs.get(reply_channel) is run:
            del self.runs[reply_channel]
        self.slots.release()

    async def reply(self, channel: str, message: dict) -> bool:
        """Send a reply; ``False`` if the layer refused it (logged)."""
        message[WORKER_CHANNEL] = self.channel
        try:
            await self.send(channel, message)
        except Exception as exc:
            logger.error(
                "Could not reply on %s (%s: %s)", channel, type(exc).__name__, exc
            )
            return False
        return True


def scope_headers(message: dict) -> list[tuple[bytes, bytes]]:
    return [(bytes(name), bytes(value)) for name, value in message.get("headers", ())]


def address(value: Any) -> tuple[str, int] | None:
    if value is None:
        return None
    host, port = value
    return (host, port)


class Run:
    """What every application instance the worker runs holds: the message
    that started it, its reply channel, its task and its input events."""

    def __init__(self, worker: Worker, message: dict) -> None:
        self.worker = worker
        self.message = message
        self.reply_channel: str = message["reply_channel"]
        self.task: asyncio.Future | None = None
        self.events: asyncio.Queue[Event] = asyncio.Queue()


class HTTPRun(Run):
    """One ``http.request``: an instance, its body and its replies."""

    def __init__(self, worker: Worker, message: dict) -> None:
        super().__init__(worker, message)
        body_channel = message.get("body_channel")
        self.body_channel: str | None = body_channel or None
        self.events.put_nowait(
            {
                "type": "http.request",
                "body": bytes(message.get("body") or b""),
                "more_body": self.body_channel is not None,
            }
        )
        self.start: Event | None = None
        self.started = False
        self.done = False
        self.status = 0
        self.began = time.monotonic()

    def scope(self) -> dict:
        message = self.message
        path = message["path"]
        return {
            "type": "http",
            "asgi": ASGI,
            "http_version": message.get("http_version", "1.1"),
            "method": message["method"],
            "scheme": message.get("scheme", "http"),
            "path": path,
            "raw_path": None,
            "query_string": bytes(message.get("query_string") or b""),
            "root_path": message.get("root_path", ""),
            "headers": scope_headers(message),
            "client": address(message.get("client")),
            "server": address(message.get("server")),
            "state": dict(self.worker.state),
        }

    def deliver(self, message: dict) -> None:
        if message.get("type") == "http.disconnect":
            self.events.put_nowait({"type": "http.disconnect"})

    async def receive(self) -> Event:
        if self.events.empty() and self.body_channel is not None:
            chunk = await self.worker.layer.receive(self.body_channel)
            if chunk.get("closed"):
                self.body_channel = None
                return {"type": "http.disconnect"}
            more = bool(chunk.get("more_content", False))
            if not more:
                self.body_channel = None
            return {
                "type": "http.request",
                "body": bytes(chunk.get("content") or b""),
                "more_body": more,
            }
        return await self.events.get()

    async def send(self, event: Event) -> None:
        kind = event["type"]
        if self.done:
            return
        if kind == "http.response.start":
            if self.start is not None:
                raise RuntimeError("http.response.start sent twice")
            self.start = event
            return
        if kind != "http.response.body":
            return  # (extensions daphne's v1 replies cannot carry)
        if self.start is None:
            raise RuntimeError("http.response.body before http.response.start")
        more = bool(event.get("more_body", False))
        reply: dict[str, Any] = {
            "content": bytes(event.get("body", b"")),
            "more_content": more,
        }
        if not self.started:
            self.started = True
            self.status = int(self.start["status"])
            reply["status"] = self.status
            reply["headers"] = [
                (bytes(name), bytes(value))
                for name, value in self.start.get("headers", ())
            ]
        self.done = not more
        await self.worker.reply(self.reply_channel, reply)

    async def run(self) -> None:
        try:
            await self.worker.application(self.scope(), self.receive, self.send)
        except asyncio.CancelledError:
            logger.warning(
                "%s %s cancelled at shutdown",
                self.message["method"],
                self.message["path"],
            )
            raise
        except Exception:
            logger.exception(
                "Application error on %s %s",
                self.message["method"],
                self.message["path"],
            )
            await self.failed()
        else:
            if not self.done:
                logger.error(
                    "The application returned without completing the response to %s %s",
                    self.message["method"],
                    self.message["path"],
                )
                await self.failed()
        finally:
            logger.debug(
                "http.request %s %s -> %s (%.1f ms)",
                self.message["method"],
                self.message["path"],
                self.status or "-",
                (time.monotonic() - self.began) * 1000,
            )

    async def failed(self) -> None:
        if self.done:
            return
        self.done = True
        if not self.started:
            self.status = 500
            await self.worker.reply(
                self.reply_channel,
                {
                    "status": 500,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    "content": b"Internal Server Error",
                    "more_content": False,
                },
            )
        else:
            # (The response began: v1 replies cannot abort it; end it.)
            await self.worker.reply(
                self.reply_channel, {"content": b"", "more_content": False}
            )


class WebSocketRun(Run):
    """One WebSocket's instance, from ``websocket.connect`` to its end."""

    def __init__(self, worker: Worker, message: dict) -> None:
        super().__init__(worker, message)
        self.events.put_nowait({"type": "websocket.connect"})
        #: The ``order`` of the next client message to deliver; later ones
        #: wait in ``early`` (the layer may reorder messages sent together).
        self.next_order = int(message.get("order") or 0) + 1
        self.early: dict[int, Event] = {}
        self.resumed = bool(message.get("resumed"))
        self.accepted = self.resumed
        self.closed = False
        #: The instance took a client message and has not answered since:
        #: acknowledge it when it asks for the next one.
        self.unacknowledged = False
        self.handed_back = False

    def scope(self) -> dict:
        message = self.message
        headers = scope_headers(message)
        root_path = ""
        subprotocols: list[str] = []
        for name, value in headers:
            if name == b"daphne-root-path":
                root_path = unquote(value.decode("latin-1"))
            elif name == b"sec-websocket-protocol":
                subprotocols += [
                    part.strip() for part in value.decode("latin-1").split(",")
                ]
        return {
            "type": "websocket",
            "asgi": ASGI,
            "http_version": "1.1",
            "scheme": "ws",
            "path": message["path"],
            "raw_path": None,
            "query_string": bytes(message.get("query_string") or b""),
            "root_path": root_path,
            "headers": headers,
            "client": address(message.get("client")),
            "server": address(message.get("server")),
            "subprotocols": [name for name in subprotocols if name],
            "state": dict(self.worker.state),
        }

    def deliver(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "websocket.receive":
            event: Event = {"type": kind}
            if message.get("bytes") is not None:
                event["bytes"] = bytes(message["bytes"])
            else:
                event["text"] = message.get("text", "")
        elif kind == "websocket.disconnect":
            event = {"type": kind, "code": message.get("code", 1000)}
        else:
            return
        order = message.get("order")
        if not isinstance(order, int):
            self.events.put_nowait(event)
            return
        self.early[order] = event
        while self.next_order in self.early:
            self.events.put_nowait(self.early.pop(self.next_order))
            self.next_order += 1

    async def receive(self) -> Event:
        if self.unacknowledged and not self.closed:
            self.unacknowledged = False
            await self.worker.reply(self.reply_channel, {})
        event = await self.events.get()
        if event["type"] == "websocket.receive":
            logger.debug(
                "websocket.receive %s (%d bytes)",
                self.message["path"],
                len(event.get("bytes") or event.get("text") or ""),
            )
            self.unacknowledged = True
        elif event["type"] == "websocket.disconnect":
            self.closed = True
        return event

    async def send(self, event: Event) -> None:
        if self.closed or self.handed_back:
            return
        kind = event["type"]
        if kind == "websocket.accept":
            if self.accepted:
                if not self.resumed:
                    return
                # A socket taken over is open already: daphne only needs to
                # learn who runs it now (and sends it what it held).
                self.resumed = False
                reply: dict[str, Any] = {}
            else:
                self.accepted = True
                reply = {"accept": True}
        elif kind == "websocket.send":
            if event.get("bytes") is not None:
                reply = {"bytes": bytes(event["bytes"])}
            else:
                reply = {"text": event.get("text", "")}
            self.accepted = True
        elif kind == "websocket.close":
            self.closed = True
            if self.accepted:
                reply = {"close": int(event.get("code", 1000))}
            else:
                reply = {"accept": False}
        else:
            return
        self.unacknowledged = False
        await self.worker.reply(self.reply_channel, reply)

    async def run(self) -> None:
        logger.debug(
            "websocket.connect %s%s",
            self.message["path"],
            " (taken over)" if self.resumed else "",
        )
        try:
            await self.worker.application(self.scope(), self.receive, self.send)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Application error on WebSocket %s", self.message["path"])
            if not self.closed and not self.handed_back:
                self.closed = True
                reply = {"close": 1011} if self.accepted else {"accept": False}
                await self.worker.reply(self.reply_channel, reply)
        else:
            if not self.closed and not self.handed_back:
                self.closed = True
                reply = {"close": 1000} if self.accepted else {"accept": False}
                await self.worker.reply(self.reply_channel, reply)
        logger.debug("websocket ended %s", self.message["path"])

    async def hand_back(self) -> None:
        """Give the socket back to daphne for another worker to take over,
        and tell the instance it is over (1012: service restart)."""
        if self.closed or not self.accepted:
            return
        self.handed_back = True
        try:
            await self.worker.send(self.reply_channel, {WORKER_CHANNEL: None})
        except Exception as exc:
            logger.error("Could not hand %s back: %s", self.reply_channel, exc)
        self.events.put_nowait({"type": "websocket.disconnect", "code": 1012})


class Lifespan:
    """The application's lifespan protocol, for the life of the worker."""

    def __init__(
        self, application: Callable[..., Awaitable[None]], state: dict, mode: str
    ) -> None:
        self.application = application
        self.state = state
        self.mode = mode
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.replies: asyncio.Queue[Event] = asyncio.Queue()
        self.task: asyncio.Future | None = None
        self.supported = False

    async def run(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI, "state": self.state}
        try:
            await self.application(scope, self.events.get, self.replies.put)
        except Exception as exc:
            await self.replies.put({"type": "error", "exc": exc})
        else:
            await self.replies.put({"type": "returned"})

    async def startup(self) -> None:
        if self.mode == "off":
            return
        self.task = asyncio.ensure_future(self.run())
        await self.events.put({"type": "lifespan.startup"})
        reply = await self.replies.get()
        kind = reply["type"]
        if kind == "lifespan.startup.complete":
            self.supported = True
            logger.info("Application startup complete")
            return
        if kind == "lifespan.startup.failed":
            raise StartupFailed(reply.get("message", "") or "startup failed")
        if self.mode == "on":
            raise StartupFailed(f"the application does not run lifespan ({kind})")
        if kind == "error":
            logger.info(
                "The application does not run lifespan: %s: %s",
                type(reply["exc"]).__name__,
                reply["exc"],
            )

    async def shutdown(self) -> None:
        if not self.supported:
            return
        await self.events.put({"type": "lifespan.shutdown"})
        reply = await self.replies.get()
        if reply["type"] == "lifespan.shutdown.failed":
            logger.error("Application shutdown failed: %s", reply.get("message", ""))
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


class StartupFailed(RuntimeError):
    """The application's lifespan startup failed: the worker does not start."""


# -- the command line -----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="daphne-worker",
        description="Run an ASGI 3 application for daphne front servers, "
        "taking their messages off a channel layer (channel-layer mode).",
    )
    parser.add_argument(
        "channel_layer",
        metavar="CHANNEL_LAYER",
        help="the channel layer daphne serves, as module.path:object.path "
        "(e.g. myproject.asgi:channel_layer)",
    )
    parser.add_argument(
        "application",
        metavar="APPLICATION",
        help="the ASGI 3 application to run, as module.path:object.path",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=100,
        help="application instances run at once, at most; a WebSocket holds "
        "one for its life (default: 100)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="seconds SIGTERM waits for instances in flight before "
        "cancelling them (default: 30)",
    )
    parser.add_argument(
        "--lifespan",
        choices=("auto", "on", "off"),
        default="auto",
        help="run the application's lifespan startup and shutdown: auto (if "
        "it supports them), on (required) or off (default: auto)",
    )
    parser.add_argument(
        "--receive-timeout",
        type=float,
        default=1.0,
        help="seconds one receive on the layer blocks; SIGTERM takes effect "
        "within it (default: 1)",
    )
    parser.add_argument(
        "-v",
        "--verbosity",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="0: warnings and errors, 1: start and stop, 2: one line per "
        "handled message (default: 1)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """The ``daphne-worker`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.verbosity == 0 else logging.INFO,
        format="%(asctime)-15s %(levelname)-8s %(message)s",
    )
    if args.verbosity >= 2:
        logger.setLevel(logging.DEBUG)
    if args.concurrency < 1:
        sys.exit("daphne-worker: --concurrency must be at least 1")
    if not args.receive_timeout > 0:
        # (0 would make a Redis pop block for ever: the worker could not stop.)
        sys.exit("daphne-worker: --receive-timeout must be greater than 0")
    if not args.shutdown_timeout >= 0:
        sys.exit("daphne-worker: --shutdown-timeout must be 0 or more")
    sys.path.insert(0, ".")
    try:
        application = import_by_path(args.application)
        layer = import_by_path(args.channel_layer)
    except ImportTargetError as exc:
        sys.exit(f"daphne-worker: {exc}")
    if not callable(application):
        sys.exit(f"daphne-worker: {args.application} is not an ASGI application")
    if not asyncio.iscoroutinefunction(getattr(layer, "receive", None)):
        sys.exit(
            f"daphne-worker: {args.channel_layer} is not an asyncio channel layer "
            "(a Channels 4 layer such as channels_redis's RedisChannelLayer)"
        )
    worker = Worker(
        layer,
        application,  # type: ignore[arg-type]
        concurrency=args.concurrency,
        shutdown_timeout=args.shutdown_timeout,
        lifespan=args.lifespan,
        receive_timeout=args.receive_timeout,
    )
    try:
        asyncio.run(serve(worker))
    except StartupFailed as exc:
        sys.exit(f"daphne-worker: application startup failed: {exc}")


async def serve(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    await worker.run()


if __name__ == "__main__":
    main()
