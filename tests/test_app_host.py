"""AppHost, AppInstance and Lifespan on a real asyncio loop, without a network.

The protocol side is a :class:`FakeSink` that records what the host calls on
it; the reactor (only used for the application close timeout) is a Twisted
``Clock`` advanced by hand. The loop is driven with ``run_until_complete`` so
every step is deterministic. (Two tests put the real ``HTTP11Connection`` on
the other side, through :mod:`tests.harness`; what every host must do alike
is in ``test_both_hosts.py``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from daphne.config import Config
from daphne.hosts import ASGIProtocolError
from daphne.hosts.app import AppHost, AppInstance, Lifespan, LifespanFailure
from tests.harness import Harness

HTTP_SCOPE = {"type": "http", "method": "GET", "path": "/"}
REQUEST = {"type": "http.request", "body": b"", "more_body": False}
DISCONNECT = {"type": "http.disconnect"}
START = {"type": "http.response.start", "status": 200, "headers": []}
BODY = {"type": "http.response.body", "body": b"ok"}


class FakeSink:
    """The protocol side of one instance, recording every call."""

    def __init__(self) -> None:
        self.replies: list[dict] = []
        self.receive_requests = 0
        self.resumes = 0
        self.finished: list[BaseException | None] = []
        self.reply_error: Exception | None = None

    def handle_reply(self, event: dict) -> None:
        self.replies.append(event)
        if self.reply_error is not None:
            raise self.reply_error

    def receive_requested(self) -> None:
        self.receive_requests += 1

    def resume_reading(self) -> None:
        self.resumes += 1

    def application_finished(self, exc: BaseException | None) -> None:
        self.finished.append(exc)


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.wait(pending))
    loop.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def settle(loop: asyncio.AbstractEventLoop, rounds: int = 10) -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(rounds):
        loop.run_until_complete(asyncio.sleep(0))


def run(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    """Run ``coro`` to completion; a hang fails the test instead of blocking."""
    return loop.run_until_complete(asyncio.wait_for(coro, 5))


def make_host(app, loop, clock, **options: Any) -> AppHost:
    return AppHost(app, Config(**options), clock, loop=loop)


def start(app, loop, clock, scope=None, **options):
    host = make_host(app, loop, clock, **options)
    sink = FakeSink()
    instance = host.start(dict(scope or HTTP_SCOPE), sink)
    return instance, sink


@pytest.fixture
def served():
    """``served(app, **options)``: the app behind a real ``HTTP11Connection``."""
    made = []

    def served(app, **options) -> Harness:
        made.append(Harness("app", side={"application": app}, **options))
        return made[-1]

    yield served
    for harness in made:
        harness.close()


async def forever() -> None:
    await asyncio.Event().wait()


async def idle_app(scope, receive, send) -> None:
    """An application that never returns and never reads on its own."""
    await forever()


# -- running an application ----------------------------------------------------


def test_asgi3_app_sees_scope_receive_and_send(loop, clock):
    seen = {}

    async def app(scope, receive, send):
        seen["scope"] = scope
        seen["event"] = await receive()
        await send(START)
        await send(BODY)

    scope = {"type": "http", "path": "/x"}
    sink = FakeSink()
    instance = make_host(app, loop, clock).start(scope, sink)
    assert isinstance(instance, AppInstance)
    instance.put(REQUEST)
    settle(loop)
    assert seen == {"scope": scope, "event": REQUEST}
    assert sink.replies == [START, BODY]
    assert sink.finished == [None]


@pytest.mark.parametrize("interface", ["asgi3", "asgi2"])
def test_forced_interface(loop, clock, interface):
    """--interface overrides the guess: a plain function returning a coroutine
    looks like ASGI 2 to asgiref, and may be either."""
    calls = []

    async def respond(receive, send):
        calls.append(await receive())
        await send(START)

    if interface == "asgi3":

        def app(scope, receive, send):
            return respond(receive, send)

    else:

        def app(scope):
            return respond

    host = AppHost(app, Config(), clock, loop=loop, interface=interface)
    sink = FakeSink()
    instance = host.start(dict(HTTP_SCOPE), sink)
    instance.put(REQUEST)
    settle(loop)
    assert calls == [REQUEST]
    assert sink.replies == [START]


def test_asgi2_double_callable_class_runs_through_asgiref(loop, clock):
    calls = []

    class LegacyApp:
        def __init__(self, scope):
            calls.append(("init", scope["path"]))

        async def __call__(self, receive, send):
            calls.append(("call", await receive()))
            await send(START)

    instance, sink = start(LegacyApp, loop, clock)
    instance.put(REQUEST)
    settle(loop)
    assert calls == [("init", "/"), ("call", REQUEST)]
    assert sink.replies == [START]
    assert sink.finished == [None]


def test_receive_returns_events_in_order_then_repeats_disconnect(loop, clock):
    received = []

    async def app(scope, receive, send):
        for _ in range(6):
            received.append(await receive())

    instance, sink = start(app, loop, clock)
    events = [
        {"type": "http.request", "body": b"%d" % n, "more_body": True} for n in range(3)
    ]
    for event in events:
        instance.put(event)
    instance.put(DISCONNECT)
    settle(loop)
    assert received == [*events, DISCONNECT, DISCONNECT, DISCONNECT]
    assert sink.finished == [None]


def test_receive_waits_for_put_and_asks_the_sink_for_more(loop, clock):
    received = []

    async def app(scope, receive, send):
        received.append(await receive())

    instance, sink = start(app, loop, clock)
    settle(loop)
    assert received == []
    assert sink.receive_requests == 1
    assert sink.finished == []
    instance.put(REQUEST)
    settle(loop)
    assert received == [REQUEST]
    assert sink.finished == [None]


def test_put_returns_false_at_max_app_queue_and_resumes_at_half(loop, clock):
    gate: asyncio.Queue = asyncio.Queue()
    received = []

    async def app(scope, receive, send):
        while True:
            await gate.get()
            received.append(await receive())

    instance, sink = start(app, loop, clock, max_app_queue=4)
    events = [{"type": "http.request", "body": b"%d" % n} for n in range(5)]
    assert [instance.put(e) for e in events] == [True, True, True, False, False]
    gate.put_nowait(None)
    gate.put_nowait(None)
    settle(loop)
    assert len(received) == 2
    assert sink.resumes == 0  # three still queued, more than half of four
    gate.put_nowait(None)
    settle(loop)
    assert sink.resumes == 1  # two queued: half of max_app_queue
    gate.put_nowait(None)
    gate.put_nowait(None)
    settle(loop)
    assert received == events
    assert sink.resumes == 1  # reported once, not on every receive


def test_put_accepts_again_after_the_queue_drains(loop, clock):
    instance, sink = start(idle_app, loop, clock, max_app_queue=2)
    assert instance.put(REQUEST) is True
    assert instance.put(REQUEST) is False
    run(loop, instance.receive())
    assert sink.resumes == 1
    assert instance.put(REQUEST) is False
    run(loop, instance.receive())
    run(loop, instance.receive())
    assert instance.put(REQUEST) is True


def test_send_waits_while_sending_is_paused(loop, clock):
    progress = []

    async def app(scope, receive, send):
        await send(START)
        progress.append("start sent")
        await send(BODY)
        progress.append("body sent")

    instance, sink = start(app, loop, clock)
    instance.pause_sending()
    settle(loop)
    assert sink.replies == [START]  # handed over, but send() does not return
    assert progress == []
    assert sink.finished == []
    instance.resume_sending()
    settle(loop)
    assert progress == ["start sent", "body sent"]
    assert sink.replies == [START, BODY]
    assert sink.finished == [None]


def test_send_does_not_wait_when_not_paused(loop, clock):
    async def app(scope, receive, send):
        await send(START)
        await send(BODY)

    instance, sink = start(app, loop, clock)
    instance.pause_sending()
    instance.resume_sending()
    settle(loop)
    assert sink.replies == [START, BODY]


def test_disconnected_releases_a_paused_send(loop, clock):
    async def app(scope, receive, send):
        await send(START)
        await send(BODY)

    instance, sink = start(app, loop, clock)
    instance.pause_sending()
    settle(loop)
    assert sink.replies == [START]
    instance.put(DISCONNECT)
    instance.disconnected()
    settle(loop)
    assert sink.replies == [START, BODY]
    assert sink.finished == [None]


def test_app_outliving_disconnect_is_cancelled_after_close_timeout(loop, clock):
    async def app(scope, receive, send):
        await forever()

    instance, sink = start(app, loop, clock, application_close_timeout=10)
    settle(loop)
    instance.disconnected()
    clock.advance(9.9)
    settle(loop)
    assert not instance.task.done()
    assert sink.finished == []
    clock.advance(0.1)
    settle(loop)
    assert instance.task.cancelled()
    assert len(sink.finished) == 1
    assert isinstance(sink.finished[0], asyncio.CancelledError)


def test_app_ending_within_close_timeout_cancels_the_kill_timer(loop, clock):
    async def app(scope, receive, send):
        while (await receive())["type"] != "http.disconnect":
            pass

    instance, sink = start(app, loop, clock, application_close_timeout=10)
    settle(loop)
    instance.put(DISCONNECT)
    instance.disconnected()
    assert len(clock.getDelayedCalls()) == 1
    settle(loop)
    assert sink.finished == [None]
    assert clock.getDelayedCalls() == []


def test_disconnected_twice_schedules_one_kill(loop, clock):
    instance, sink = start(idle_app, loop, clock)
    settle(loop)
    instance.disconnected()
    instance.disconnected()
    assert len(clock.getDelayedCalls()) == 1


def test_disconnected_after_app_finished_schedules_nothing(loop, clock):
    async def app(scope, receive, send):
        return None

    instance, sink = start(app, loop, clock)
    settle(loop)
    assert sink.finished == [None]
    instance.disconnected()
    assert clock.getDelayedCalls() == []


def test_app_exception_is_reported_to_the_sink(loop, clock):
    error = ValueError("broken app")

    async def app(scope, receive, send):
        raise error

    instance, sink = start(app, loop, clock)
    settle(loop)
    assert sink.finished == [error]
    assert instance.task.done()


def test_rejected_event_raises_in_app_send(loop, clock):
    caught = []

    async def app(scope, receive, send):
        try:
            await send({"type": "nonsense"})
        except ASGIProtocolError as exc:
            caught.append(exc)
            raise

    instance, sink = start(app, loop, clock)
    sink.reply_error = ASGIProtocolError("not allowed")
    settle(loop)
    assert caught == [sink.reply_error]
    assert sink.finished == [sink.reply_error]


def test_receive_works_after_a_cancelled_receive(loop, clock):
    """E.g. ``asyncio.wait_for(receive(), timeout)`` timing out once."""
    received = []

    async def app(scope, receive, send):
        first = asyncio.ensure_future(receive())
        await asyncio.sleep(0)
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        received.append(await receive())

    instance, sink = start(app, loop, clock)
    settle(loop)
    assert sink.finished == []  # still waiting in the second receive()
    instance.put(REQUEST)
    settle(loop)
    assert received == [REQUEST]
    assert sink.finished == [None]


def test_send_waits_again_after_a_cancelled_paused_send(loop, clock):
    async def app(scope, receive, send):
        first = asyncio.ensure_future(send(START))
        await asyncio.sleep(0)
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await send(BODY)

    instance, sink = start(app, loop, clock)
    instance.pause_sending()
    settle(loop)
    assert sink.replies == [START, BODY]
    assert sink.finished == []  # second send() waits for resume_sending()
    instance.resume_sending()
    settle(loop)
    assert sink.finished == [None]


def test_app_returning_with_full_queue_never_resumes_reading(loop, clock):
    """AppInstance only reports room in its queue from receive(): the protocol
    must lift its own read pause when the exchange ends (see
    test_read_pause_from_full_queue_is_lifted_when_the_exchange_ends)."""

    async def app(scope, receive, send):
        await send(START)
        await send(BODY)

    instance, sink = start(app, loop, clock, max_app_queue=1)
    assert instance.put(REQUEST) is False
    settle(loop)
    assert sink.finished == [None]
    assert sink.resumes == 0


def test_send_after_disconnect_yields_to_other_tasks(loop, clock):
    """Sends to a gone connection return at once, but still yield: an app
    that only sends cannot starve the other tasks on the loop."""
    order = []

    async def app(scope, receive, send):
        for _ in range(3):
            await send(BODY)
            order.append("app")

    async def other():
        for _ in range(3):
            order.append("other")
            await asyncio.sleep(0)

    instance, sink = start(app, loop, clock)
    instance.disconnected()
    run(loop, other())
    settle(loop)
    assert sink.finished == [None]
    assert order[:3] != ["app"] * 3, order
    assert sorted(order) == ["app"] * 3 + ["other"] * 3


def test_app_sending_in_a_loop_after_disconnect_is_cancelled_by_the_close_timeout(
    loop, clock
):
    sent = 0

    async def app(scope, receive, send):
        nonlocal sent
        while sent < 100_000:  # bounded only so that a regression fails, not hangs
            await send(BODY)
            sent += 1

    async def close_timeout_passes():
        await asyncio.sleep(0)
        clock.advance(10)

    instance, sink = start(app, loop, clock, application_close_timeout=10)
    instance.disconnected()
    run(loop, close_timeout_passes())
    settle(loop)
    assert instance.task.cancelled()
    assert len(sink.finished) == 1
    assert isinstance(sink.finished[0], asyncio.CancelledError)
    assert sent < 100_000


def test_host_close_cancels_instances_still_running_after_the_timeout(loop, clock):
    host = make_host(idle_app, loop, clock)
    sinks = [FakeSink(), FakeSink()]
    instances = [host.start(dict(HTTP_SCOPE), sink) for sink in sinks]
    settle(loop)
    run(loop, host.close(0.05))
    assert all(instance.task.cancelled() for instance in instances)
    for sink in sinks:
        assert len(sink.finished) == 1
        assert isinstance(sink.finished[0], asyncio.CancelledError)
    assert host.instances == set()


def test_host_close_lets_instances_ending_in_time_finish(loop, clock):
    async def app(scope, receive, send):
        await asyncio.sleep(0.01)

    host = make_host(app, loop, clock)
    sink = FakeSink()
    instance = host.start(dict(HTTP_SCOPE), sink)
    settle(loop)
    assert host.instances == {instance}
    run(loop, host.close(5))
    assert not instance.task.cancelled()
    assert sink.finished == [None]
    assert host.instances == set()


def test_final_send_returns_though_the_transport_is_paused(served):
    """With the real HTTP/1.1 protocol: the transport pauses (the client reads
    slowly) just before the app's last send. That send completes the
    response, so it must not wait for a drain that nothing will report."""
    gate = asyncio.Event()
    progress = []

    async def app(scope, receive, send):
        await send(START)
        await gate.wait()
        await send(BODY)
        progress.append("final send returned")

    srv = served(app)
    srv.conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    srv.conn.protocol.pauseProducing()
    gate.set()
    srv.settle()
    transport = srv.conn.transport
    assert transport.value().endswith(b"\r\n\r\nok")
    assert progress == ["final send returned"]


def test_send_after_the_exchange_failed_yields_while_the_connection_closes(served):
    """The client reads slowly (the transport is paused) and --http-timeout
    ends the exchange mid-stream: sends are dropped from then on, but the
    connection only goes once the client reads or close_timeout aborts it. A
    streaming loop must not keep the event loop to itself meanwhile."""
    order = []

    async def app(scope, receive, send):
        await send(START)
        for _ in range(4):
            await send({**BODY, "more_body": True})
            order.append("app")

    async def other():
        for _ in range(3):
            order.append("other")
            await asyncio.sleep(0)

    srv = served(app, http_timeout=5, transport=StringTransport())
    # (a StringTransport's loseConnection() never completes)
    srv.conn.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    srv.conn.protocol.pauseProducing()  # the client is not reading
    srv.settle()
    assert order == []  # the first body send waits for the transport
    srv.clock.advance(5)  # http_timeout: the exchange fails, the close begins
    assert srv.conn.transport.disconnecting
    assert not srv.conn.protocol.disconnected
    srv.side.run(other())
    srv.settle()
    assert order[:4] != ["app"] * 4, order


# -- lifespan -------------------------------------------------------------------


def lifespan_app(*, startup="complete", shutdown="complete", log=None, state=None):
    """A lifespan-aware app answering each phase as told."""

    async def app(scope, receive, send):
        if scope["type"] != "lifespan":
            await send(START)
            return
        while True:
            message = await receive()
            if log is not None:
                log.append(message["type"])
            phase = message["type"].rsplit(".", 1)[1]
            answer = startup if phase == "startup" else shutdown
            if phase == "startup" and state:
                scope["state"].update(state)
            if answer == "complete":
                await send({"type": f"lifespan.{phase}.complete"})
            else:
                await send({"type": f"lifespan.{phase}.failed", "message": answer})
            if phase == "shutdown":
                return

    return app


def test_lifespan_startup_and_shutdown_complete(loop, clock):
    log = []
    host = make_host(lifespan_app(log=log), loop, clock)
    lifespan = Lifespan(host, "auto")
    assert run(loop, lifespan.startup()) is None
    assert log == ["lifespan.startup"]
    assert run(loop, lifespan.shutdown()) is None
    assert log == ["lifespan.startup", "lifespan.shutdown"]
    assert lifespan.supported


def test_lifespan_scope_is_lifespan_type_with_state(loop, clock):
    scopes = []

    async def app(scope, receive, send):
        scopes.append(scope)
        await receive()
        await send({"type": "lifespan.startup.complete"})

    host = make_host(app, loop, clock)
    run(loop, Lifespan(host, "on").startup())
    assert scopes[0]["type"] == "lifespan"
    assert scopes[0]["asgi"]["version"] == "3.0"
    assert scopes[0]["state"] is host.state


def test_lifespan_startup_failed_raises_with_message(loop, clock):
    host = make_host(lifespan_app(startup="database unreachable"), loop, clock)
    with pytest.raises(LifespanFailure, match="startup failed: database unreachable"):
        run(loop, Lifespan(host, "auto").startup())


def test_lifespan_shutdown_failed_raises_with_message(loop, clock):
    host = make_host(lifespan_app(shutdown="flush failed"), loop, clock)
    lifespan = Lifespan(host, "on")
    run(loop, lifespan.startup())
    with pytest.raises(LifespanFailure, match="shutdown failed: flush failed"):
        run(loop, lifespan.shutdown())


def test_lifespan_auto_treats_raising_app_as_unsupported(loop, clock):
    calls = []

    async def app(scope, receive, send):
        calls.append(scope["type"])
        raise ValueError("only http is supported")

    host = make_host(app, loop, clock)
    lifespan = Lifespan(host, "auto")
    assert run(loop, lifespan.startup()) is None
    assert not lifespan.supported
    assert run(loop, lifespan.shutdown()) is None
    settle(loop)
    assert calls == ["lifespan"]


def test_lifespan_auto_treats_raise_after_receive_as_unsupported(loop, clock):
    async def app(scope, receive, send):
        await receive()
        raise ValueError("Django can only handle ASGI/HTTP connections")

    lifespan = Lifespan(make_host(app, loop, clock), "auto")
    assert run(loop, lifespan.startup()) is None
    assert not lifespan.supported


def test_lifespan_on_mode_raising_app_is_a_failure(loop, clock):
    async def app(scope, receive, send):
        raise ValueError("only http is supported")

    lifespan = Lifespan(make_host(app, loop, clock), "on")
    with pytest.raises(LifespanFailure, match="ValueError: only http is supported"):
        run(loop, lifespan.startup())


def test_lifespan_auto_app_raising_after_answering_is_a_failure(loop, clock):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise RuntimeError("crash in shutdown")

    lifespan = Lifespan(make_host(app, loop, clock), "auto")
    run(loop, lifespan.startup())
    with pytest.raises(LifespanFailure, match="crash in shutdown"):
        run(loop, lifespan.shutdown())


def test_lifespan_returning_app_is_unsupported_in_auto_mode(loop, clock):
    async def app(scope, receive, send):
        return None

    lifespan = Lifespan(make_host(app, loop, clock), "auto")
    assert run(loop, lifespan.startup()) is None
    assert not lifespan.supported
    assert run(loop, lifespan.shutdown()) is None


def test_lifespan_returning_app_fails_in_on_mode(loop, clock):
    async def app(scope, receive, send):
        return None

    lifespan = Lifespan(make_host(app, loop, clock), "on")
    with pytest.raises(LifespanFailure, match="application returned"):
        run(loop, lifespan.startup())


def test_lifespan_off_never_calls_the_app(loop, clock):
    calls = []

    async def app(scope, receive, send):
        calls.append(scope)

    lifespan = Lifespan(make_host(app, loop, clock), "off")
    run(loop, lifespan.startup())
    run(loop, lifespan.shutdown())
    settle(loop)
    assert calls == []


def test_app_returning_after_startup_lets_shutdown_finish(loop, clock):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.complete"})

    lifespan = Lifespan(make_host(app, loop, clock), "on")
    run(loop, lifespan.startup())
    assert run(loop, lifespan.shutdown()) is None


def test_lifespan_state_is_copied_into_each_request_scope(loop, clock):
    host = make_host(lifespan_app(state={"db": "pool"}), loop, clock)
    run(loop, Lifespan(host, "auto").startup())
    first = {"type": "http", "path": "/1"}
    host.start(first, FakeSink())
    assert first["state"] == {"db": "pool"}
    first["state"]["db"] = "changed by request"
    first["state"]["extra"] = 1
    second = {"type": "http", "path": "/2"}
    host.start(second, FakeSink())
    assert second["state"] == {"db": "pool"}
    assert host.state == {"db": "pool"}
    settle(loop)


def test_request_scope_has_no_state_without_lifespan_state(loop, clock):
    host = make_host(lifespan_app(), loop, clock)
    scope = {"type": "http", "path": "/"}
    host.start(scope, FakeSink())
    assert "state" not in scope
    settle(loop)


def test_lifespan_exception_after_startup_is_logged_when_it_happens(
    loop, clock, caplog
):
    """An app that raises after startup.complete is reported at once (with its
    traceback), and shutdown later skips the exchange instead of failing."""

    async def app(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.complete"})
        raise RuntimeError("boom after startup")

    lifespan = Lifespan(make_host(app, loop, clock), "auto")
    with caplog.at_level(logging.ERROR):
        run(loop, lifespan.startup())
        settle(loop)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "boom after startup" in str(errors[0].exc_info[1])
    run(loop, lifespan.shutdown())  # must neither hang nor raise
