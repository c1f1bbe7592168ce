"""AppHost: runs ASGI 3 applications (and ASGI 2 ones through asgiref).

Each connection-level exchange gets one :class:`AppInstance`: an asyncio task
running ``app(scope, receive, send)`` on the reactor's event loop. The instance
queues client events with a bound (the protocol stops reading when it is
full), makes ``send`` wait while the transport is paused, and reports its end
to the protocol, which turns an early end or an exception into a 500 or a
closed connection. :class:`Lifespan` drives the ``lifespan`` scope.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.compatibility import double_to_single_callable, guarantee_single_callable

from ..config import Config
from ..utils import user_location
from . import Event, Scope, Sink

logger = logging.getLogger(__name__)


class AppHost:
    """Starts one :class:`AppInstance` per request or WebSocket."""

    def __init__(
        self,
        application: Any,
        config: Config,
        reactor: Any,
        loop: asyncio.AbstractEventLoop | None = None,
        interface: str = "auto",
    ) -> None:
        if interface == "asgi3":
            self.application = application
        elif interface == "asgi2":
            self.application = double_to_single_callable(application)
        else:
            self.application = guarantee_single_callable(application)
        self.config = config
        self.reactor = reactor
        self._loop = loop
        #: Filled by the lifespan startup; copied into every scope (ASGI
        #: "lifespan state" extension).
        self.state: dict[str, Any] = {}
        #: Instances still running, so that shutdown can wait for them.
        self.instances: set[AppInstance] = set()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_event_loop()
        return self._loop

    def start(self, scope: Scope, sink: Sink) -> AppInstance:
        if self.state:
            scope["state"] = dict(self.state)
        instance = AppInstance(self, scope, sink)
        self.instances.add(instance)
        return instance

    async def close(self, timeout: float) -> None:
        """Give running instances ``timeout`` seconds to end, then cancel them."""
        tasks = [instance.task for instance in self.instances]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        if pending:
            logger.warning("Cancelling %d application instance(s)", len(pending))
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=1.0)


class AppInstance:
    """One application call and the queues between it and its protocol."""

    __slots__ = (
        "host",
        "sink",
        "queue",
        "final",
        "waiter",
        "reading_paused",
        "send_paused",
        "drain",
        "task",
        "kill_call",
        "gone",
    )

    def __init__(self, host: AppHost, scope: Scope, sink: Sink) -> None:
        self.host = host
        self.sink = sink
        # A list, not a deque: an empty deque keeps a 600-byte block, and
        # this queue is empty on almost every idle WebSocket. It holds at most
        # max_app_queue events, so pop(0) is as cheap as popleft().
        self.queue: list[Event] = []
        #: The disconnect event, repeated for every receive after it.
        self.final: Event | None = None
        self.waiter: asyncio.Future | None = None
        self.reading_paused = False
        self.send_paused = False
        self.drain: asyncio.Future | None = None
        self.kill_call: Any = None
        #: The connection is gone: sends are dropped.
        self.gone = False
        # (host._loop first: the property is a call, on every request.)
        loop = host._loop if host._loop is not None else host.loop
        self.task = loop.create_task(self._run(scope))

    async def _run(self, scope: Scope) -> None:
        try:
            await self.host.application(scope, self.receive, self.send)
        except BaseException as exc:  # reported to the protocol, never lost
            self._finished(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self._finished(None)

    def _finished(self, exc: BaseException | None) -> None:
        if self.kill_call is not None and self.kill_call.active():
            self.kill_call.cancel()
        self.host.instances.discard(self)
        self.sink.application_finished(exc)

    # -- the application's callables ---------------------------------------

    async def receive(self) -> Event:
        queue = self.queue
        while not queue:
            if self.final is not None:
                await asyncio.sleep(0)  # a receive loop must not starve the loop
                return self.final
            self.sink.receive_requested()
            waiter = self.waiter
            if waiter is None or waiter.done():
                # (done: an earlier receive() was cancelled, taking it along)
                waiter = self.waiter = self.host.loop.create_future()
            await waiter
        event = queue.pop(0)
        if self.reading_paused and len(queue) <= self.host.config.max_app_queue // 2:
            self.reading_paused = False
            self.sink.resume_reading()
        return event

    async def send(self, event: Event) -> None:
        delivered = self.sink.handle_reply(event)
        if self.send_paused:
            if self.drain is None or self.drain.done():
                self.drain = self.host.loop.create_future()
            await self.drain
        elif self.gone or delivered is False:
            # The exchange is over: sends return at once, so yield anyway or a
            # loop that only sends would starve the loop (and its timers).
            await asyncio.sleep(0)

    # -- called by the protocol --------------------------------------------

    def put(self, event: Event) -> bool:
        if event["type"].endswith(".disconnect"):
            self.final = event
        else:
            self.queue.append(event)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if len(self.queue) >= self.host.config.max_app_queue:
            self.reading_paused = True
            return False
        return True

    def pause_sending(self) -> None:
        self.send_paused = True

    def resume_sending(self) -> None:
        self.send_paused = False
        drain = self.drain
        if drain is not None:
            self.drain = None
            if not drain.done():
                drain.set_result(None)

    def disconnected(self) -> None:
        self.gone = True
        self.resume_sending()
        if self.task.done() or self.kill_call is not None:
            return
        self.kill_call = self.host.reactor.callLater(
            self.host.config.application_close_timeout, self._kill
        )

    def _kill(self) -> None:
        if not self.task.done():
            logger.warning(
                "Application instance %r outlived its connection by %ss; cancelling it",
                self.task,
                self.host.config.application_close_timeout,
            )
            self.task.cancel()


class LifespanFailure(Exception):
    """The application reported (or caused) a failed lifespan event."""


class Lifespan:
    """Runs the ``lifespan`` scope: one instance for the server's lifetime."""

    def __init__(self, host: AppHost, mode: str) -> None:
        self.host = host
        self.mode = mode
        self.supported = mode != "off"
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._replies: asyncio.Queue[Event] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def startup(self) -> None:
        if not self.supported:
            return
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.host.state,
        }
        self._task = self.host.loop.create_task(self._run(scope))
        await self._exchange("startup")

    async def shutdown(self) -> None:
        if not self.supported or self._task is None:
            return
        if self._task.done():
            logger.info("The lifespan task had already ended; no shutdown event")
            return
        await self._exchange("shutdown")

    async def _exchange(self, phase: str) -> None:
        await self._events.put({"type": f"lifespan.{phase}"})
        reply = await self._replies.get()
        kind = reply["type"]
        if kind == f"lifespan.{phase}.complete":
            return
        if kind == f"lifespan.{phase}.failed":
            message = reply.get("message") or "no message given"
            raise LifespanFailure(f"Lifespan {phase} failed: {message}")
        if kind == "exception":
            exc = reply["exc"]
            if self.mode == "auto" and phase == "startup" and not reply["answered"]:
                logger.info(
                    "The application does not support lifespan (%s: %s, at %s); "
                    "not sending lifespan events",
                    type(exc).__name__,
                    exc,
                    user_location(exc),
                )
                self.supported = False
                return
            # (The exception is the cause: whoever reports this failure can
            # show where in the application it was raised.)
            raise LifespanFailure(
                f"Lifespan {phase} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if kind == "returned":
            self.supported = False
            if phase == "startup" and self.mode == "on":
                raise LifespanFailure("Lifespan startup failed: application returned")
            return
        raise LifespanFailure(f"Unexpected lifespan message {kind!r}")

    async def _run(self, scope: Scope) -> None:
        received = answered = 0

        async def receive() -> Event:
            nonlocal received
            event = await self._events.get()
            received += 1
            return event

        async def send(message: Event) -> None:
            nonlocal answered
            answered += 1
            await self._replies.put(message)

        try:
            await self.host.application(scope, receive, send)
        except Exception as exc:
            if answered and answered >= received:
                # Every event was answered (e.g. after startup completed):
                # no exchange will report this, so say it now.
                logger.error("Exception in the lifespan application", exc_info=exc)
            await self._replies.put(
                {"type": "exception", "exc": exc, "answered": answered}
            )
        else:
            await self._replies.put({"type": "returned"})
