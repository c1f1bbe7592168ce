"""daphne-worker in one process, on Channels' in-memory layer.

The v1 messages a daphne front sends are put on the layer by the test, and
the worker's replies read back from it: scopes, streamed request bodies
(the v1 body channel), replies, frame order, errors and lifespan. The whole
thing with real daphne fronts, Redis and sockets is in
tests/test_channels_redis.py.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import InMemoryChannelLayer
from hypothesis import given, settings
from hypothesis import strategies as st

from daphne.layers import InMemoryChannelLayer as V1Layer
from daphne.worker import StartupFailed, Worker, build_parser, main

REPLY = "reply.test"


async def echo_app(scope, receive, send):
    if scope["type"] == "http":
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        if scope["path"] == "/raise":
            raise RuntimeError("on purpose")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"x-path", scope["path"].encode())],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"!"})
    elif scope["type"] == "websocket":
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": event["text"].upper()})
    else:
        raise RuntimeError("no lifespan here")


def http_request(path: str = "/", **extra) -> dict:
    return {
        "type": "http.request",
        "reply_channel": REPLY,
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [(b"host", b"example")],
        "body": b"start-",
        "client": ["127.0.0.1", 1234],
        "server": ["127.0.0.1", 8000],
        **extra,
    }


async def running(worker: Worker, scenario):
    task = asyncio.ensure_future(worker.run())
    try:
        while not worker.channel:
            await asyncio.sleep(0.01)
        return await asyncio.wait_for(scenario(), 10)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


def run(scenario, app=echo_app, **options):
    layer = InMemoryChannelLayer()
    worker = Worker(layer, app, receive_timeout=0.05, **options)
    return asyncio.run(running(worker, lambda: scenario(layer, worker)))


def test_http_request_with_a_streamed_body():
    async def scenario(layer, worker):
        await layer.send("http.request", http_request(body_channel="body.one"))
        await layer.send("body.one", {"content": b"middle-", "more_content": True})
        await layer.send("body.one", {"content": b"end", "more_content": False})
        first = await layer.receive(REPLY)
        second = await layer.receive(REPLY)
        return first, second, worker.channel

    first, second, channel = run(scenario)
    assert first == {
        "status": 200,
        "headers": [(b"x-path", b"/")],
        "content": b"start-middle-end",
        "more_content": True,
        "worker_channel": channel,
    }
    assert second == {"content": b"!", "more_content": False, "worker_channel": channel}


def test_an_application_error_is_a_500_reply():
    async def scenario(layer, worker):
        await layer.send("http.request", http_request("/raise"))
        return await layer.receive(REPLY)

    reply = run(scenario)
    assert reply["status"] == 500
    assert b"Traceback" not in reply["content"]


def test_websocket_frames_run_in_order_on_the_worker_channel():
    async def scenario(layer, worker):
        await layer.send(
            "websocket.connect",
            {
                "type": "websocket.connect",
                "reply_channel": REPLY,
                "path": "/ws",
                "headers": [(b"sec-websocket-protocol", b"chat, other")],
                "query_string": b"",
                "client": None,
                "server": None,
                "order": 0,
            },
        )
        accept = await layer.receive(REPLY)
        channel = accept["worker_channel"]
        base = {"type": "websocket.receive", "reply_channel": REPLY, "path": "/ws"}
        # (Sent out of order: the worker restores the order.)
        await layer.send(channel, {**base, "order": 2, "text": "two"})
        await layer.send(channel, {**base, "order": 1, "text": "one"})
        replies = [await layer.receive(REPLY) for _ in range(2)]
        await layer.send(
            channel,
            {**base, "type": "websocket.disconnect", "code": 1000, "order": 3},
        )
        return accept, replies, worker

    accept, replies, worker = run(scenario)
    assert accept == {"accept": True, "worker_channel": worker.channel}
    assert [reply["text"] for reply in replies] == ["ONE", "TWO"]


def test_lifespan_on_refuses_an_application_without_lifespan():
    layer = InMemoryChannelLayer()
    worker = Worker(layer, echo_app, lifespan="on", receive_timeout=0.05)
    with pytest.raises(StartupFailed, match="does not run lifespan"):
        asyncio.run(worker.run())


def test_command_line_defaults():
    args = build_parser().parse_args(["a:layer", "b:app"])
    assert (args.channel_layer, args.application) == ("a:layer", "b:app")
    assert (args.concurrency, args.lifespan, args.verbosity) == (100, "auto", 1)


#: Targets for the command-line refusals below.
asyncio_layer = InMemoryChannelLayer()
v1_layer = V1Layer()
not_an_application = "a string"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--concurrency", "0"], "--concurrency must be at least 1"),
        (["--receive-timeout", "0"], "--receive-timeout must be greater than 0"),
        (["--shutdown-timeout", "-1"], "--shutdown-timeout must be 0 or more"),
        (["tests.no_such_module:layer", "tests.apps:scope_route"], "no_such_module"),
        (
            ["tests.test_worker:asyncio_layer", "tests.test_worker:not_an_application"],
            "is not an ASGI application",
        ),
        (
            ["tests.test_worker:v1_layer", "tests.apps:scope_route"],
            "is not an asyncio channel layer",
        ),
    ],
)
def test_command_line_refusals_are_one_line(argv, message):
    if len(argv) == 2 and argv[0].startswith("--"):
        argv = [*argv, "tests.test_worker:asyncio_layer", "tests.apps:scope_route"]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert str(exited.value).startswith("daphne-worker: ")
    assert message in str(exited.value)


@settings(max_examples=200, deadline=None)
@given(st.permutations(range(1, 12)))
def test_frames_reach_the_application_in_order_whatever_order_they_arrive(orders):
    """The layer may reorder messages sent together (channels_redis scores
    them by send time); the worker delivers them by ``order``, the
    disconnect last."""
    from daphne.worker import WebSocketRun

    async def scenario():
        worker = Worker(InMemoryChannelLayer(), echo_app)
        run = WebSocketRun(worker, {"reply_channel": REPLY, "path": "/", "order": 0})
        last = max(orders)
        for order in orders:
            if order == last:
                run.deliver(
                    {"type": "websocket.disconnect", "code": 1000, "order": order}
                )
            else:
                run.deliver(
                    {"type": "websocket.receive", "text": str(order), "order": order}
                )
        return [run.events.get_nowait() for _ in range(run.events.qsize())]

    events = asyncio.run(scenario())
    assert events[0] == {"type": "websocket.connect"}
    assert [e.get("text") for e in events[1:-1]] == [str(i) for i in range(1, 11)]
    assert events[-1] == {"type": "websocket.disconnect", "code": 1000}


def test_stopping_hands_websockets_back_even_with_every_slot_taken():
    """With --concurrency 1 and the one slot held by a WebSocket, a stopping
    worker still ends: it hands the socket back to daphne
    (``worker_channel: None``) and tells the instance (1012)."""
    events = []

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            raise RuntimeError("no lifespan")
        await receive()
        await send({"type": "websocket.accept"})
        events.append(await receive())

    async def scenario():
        layer = InMemoryChannelLayer()
        worker = Worker(layer, app, concurrency=1, receive_timeout=0.05)
        task = asyncio.ensure_future(worker.run())
        await layer.send(
            "websocket.connect",
            {
                "type": "websocket.connect",
                "reply_channel": REPLY,
                "path": "/",
                "order": 0,
            },
        )
        accepted = await layer.receive(REPLY)
        worker.stop()
        await asyncio.wait_for(task, 10)
        return accepted, await layer.receive(REPLY), worker

    accepted, handed_back, worker = asyncio.run(scenario())
    assert accepted == {"accept": True, "worker_channel": worker.channel}
    assert handed_back == {"worker_channel": None}
    assert events == [{"type": "websocket.disconnect", "code": 1012}]
