"""WebSocket load client for the benchmark harness (a process of its own).

A minimal RFC 6455 client written straight on asyncio protocols (uvloop when
it is importable): frames are built once per connection and each echo is
answered from ``data_received`` without a coroutine switch, so the client
stays cheap enough not to be the bottleneck. It reports its own CPU time so
that claim can be checked on every run.

Modes (each prints JSON on stdout, one object per line):

``echo``
    Opens ``--connections`` WebSockets, then each sends ``--messages`` text
    messages of ``--size`` bytes one at a time, waiting for the echo before
    the next. Prints round trips/s, latency percentiles and client CPU time.
    A handshake answered with anything but ``101`` prints
    ``{"supported": false, ...}`` and exits 0: the server has no WebSocket.

``idle``
    Opens ``--connections`` WebSockets and holds them: prints
    ``{"event": "ready", ...}`` once all are open, then waits until standard
    input closes (or ``--hold`` seconds pass), closes them all and prints
    ``{"event": "done", ...}``. The harness reads the server's memory while
    the connections are held.

``--deflate`` offers permessage-deflate (as browsers do): messages go both
ways compressed (the client with zlib level 6, at the windows the server
answered), and in ``idle`` mode every connection first echoes one message, so
that the server holds the zlib state a chatting socket has. A server that
declines the offer is reported like one without WebSocket support.

Every run is bounded by ``--timeout`` seconds; traffic goes to ``--host``,
which must be a loopback address.
"""

import argparse
import asyncio
import base64
import contextlib
import ipaddress
import json
import os
import sys
import time
import zlib

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
RSV1 = 0x40  # the first frame of a compressed message (RFC 7692)
DEFLATE_TAIL = b"\x00\x00\xff\xff"


class HandshakeRefused(Exception):
    """The server answered the upgrade request with something other than 101."""

    def __init__(self, status, reason):
        super().__init__(f"handshake answered {status} {reason}".strip())
        self.status = status
        self.reason = reason


def mask(payload, key):
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(len(payload), "big")


def client_frame(opcode, payload, key):
    """One final, masked frame, as a client must send it."""
    length = len(payload)
    if length < 126:
        head = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    return head + key + mask(payload, key)


def parse_frames(buffer):
    """Split complete frames off ``buffer``: ([(fin, opcode, payload)], rest)."""
    frames = []
    pos = 0
    end = len(buffer)
    while end - pos >= 2:
        first, second = buffer[pos], buffer[pos + 1]
        length = second & 0x7F
        header = 2
        if length == 126:
            if end - pos < 4:
                break
            length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
            header = 4
        elif length == 127:
            if end - pos < 10:
                break
            length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
            header = 10
        key = None
        if second & 0x80:
            if end - pos < header + 4:
                break
            key = buffer[pos + header : pos + header + 4]
            header += 4
        if end - pos < header + length:
            break
        payload = buffer[pos + header : pos + header + length]
        if key is not None:
            payload = mask(payload, key)
        frames.append((first & 0x80, first & 0x4F, payload))
        pos += header + length
    return frames, buffer[pos:]


class Connection(asyncio.Protocol):
    """One client WebSocket: handshake, then echo or idle."""

    def __init__(self, host, port, path, deflate=False):
        loop = asyncio.get_running_loop()
        offer = (
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            if deflate
            else ""
        )
        self.request = (
            f"GET {path} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"{offer}\r\n"
        ).encode("ascii")
        self.deflate = deflate
        #: zlib objects once the server agreed to permessage-deflate.
        self.compressor = None
        self.inflater = None
        self.compressed = False  # the message being received
        self.key = os.urandom(4)
        self.transport = None
        self.buffer = b""
        self.fragments = []
        self.is_open = False
        self.opened = loop.create_future()
        self.closed = loop.create_future()
        self.finished = loop.create_future()
        self.on_message = None
        self.close_sent = False

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data):
        if self.is_open:
            self.buffer = self.buffer + data if self.buffer else data
            self.handle_frames()
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > 65536:
                self.fail_handshake(0, "response head too long")
            return
        head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            self.fail_handshake(0, f"bad status line {status_line!r}")
            return
        if status != 101:
            self.fail_handshake(status, parts[2] if len(parts) > 2 else "")
            return
        if self.deflate and not self.agree_deflate(head):
            self.fail_handshake(101, "permessage-deflate declined")
            return
        self.is_open = True
        self.opened.set_result(None)
        if self.buffer:
            self.handle_frames()

    def connection_lost(self, exc):
        self.is_open = False
        if not self.opened.done():
            self.opened.set_exception(
                ConnectionError(f"closed during handshake: {exc or 'EOF'}")
            )
        if self.on_message is not None and not self.finished.done():
            self.finished.set_exception(
                ConnectionError(f"connection lost: {exc or 'EOF'}")
            )
        if not self.closed.done():
            self.closed.set_result(None)

    # -- frames --------------------------------------------------------------

    def fail_handshake(self, status, reason):
        if not self.opened.done():
            self.opened.set_exception(HandshakeRefused(status, reason))
        self.transport.close()

    def agree_deflate(self, head):
        """Set up compression from the 101's answer; False if it declined."""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() != b"sec-websocket-extensions":
                continue
            params = {}
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                params[key] = val.strip('"')
            if "permessage-deflate" not in params:
                continue
            server_bits = int(params.get("server_max_window_bits") or 15)
            client_bits = int(params.get("client_max_window_bits") or 15)
            self.inflater = zlib.decompressobj(-server_bits)
            self.compressor = zlib.compressobj(6, zlib.DEFLATED, -client_bits)
            self.takeover = "client_no_context_takeover" not in params
            self.client_bits = client_bits
            return True
        return False

    def message_frame(self, payload):
        """A text frame for ``payload``, compressed if that was agreed."""
        if self.compressor is None:
            return client_frame(OP_TEXT, payload, self.key)
        if not self.takeover:
            self.compressor = zlib.compressobj(6, zlib.DEFLATED, -self.client_bits)
        compressor = self.compressor
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return client_frame(RSV1 | OP_TEXT, data[:-4], self.key)

    def handle_frames(self):
        frames, self.buffer = parse_frames(self.buffer)
        for fin, opcode, payload in frames:
            if opcode & RSV1:
                opcode &= 0x0F
                self.compressed = True
            if opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
                if not fin:
                    self.fragments.append(payload)
                    continue
                if self.fragments:
                    payload = b"".join(self.fragments) + payload
                    self.fragments = []
                if self.compressed:
                    self.compressed = False
                    payload = self.inflater.decompress(payload + DEFLATE_TAIL)
                if self.on_message is not None:
                    self.on_message(payload)
            elif opcode == OP_PING:
                self.transport.write(client_frame(OP_PONG, payload, self.key))
            elif opcode == OP_CLOSE:
                if not self.close_sent:
                    self.close_sent = True
                    self.transport.write(client_frame(OP_CLOSE, payload[:2], self.key))
                self.transport.close()

    def close(self):
        if self.transport is None or self.transport.is_closing():
            return
        if self.is_open and not self.close_sent:
            self.close_sent = True
            self.transport.write(
                client_frame(OP_CLOSE, (1000).to_bytes(2, "big"), self.key)
            )
        else:
            self.transport.close()

    # -- echo ----------------------------------------------------------------

    def start_echo(self, payload, messages, latencies):
        """Send ``payload`` ``messages`` times, one round trip at a time."""
        deflate = self.compressor is not None
        frame = self.message_frame(payload)
        write = self.transport.write
        clock = time.perf_counter
        remaining = messages
        record = latencies.append
        sent_at = 0.0

        def on_message(data):
            nonlocal remaining, sent_at
            now = clock()
            if data != payload:
                self.finished.set_exception(ValueError("echo does not match"))
                self.on_message = None
                return
            record(now - sent_at)
            remaining -= 1
            if remaining:
                sent_at = clock()
                # (a compressed message differs each time: context takeover)
                write(self.message_frame(payload) if deflate else frame)
            else:
                self.on_message = None
                self.finished.set_result(None)

        self.on_message = on_message
        sent_at = clock()
        write(frame)


# -- running -------------------------------------------------------------------


async def open_connections(args, count, concurrency=50):
    """Open ``count`` WebSockets; the first alone, as the support probe."""
    loop = asyncio.get_running_loop()

    async def open_one():
        _, connection = await loop.create_connection(
            lambda: Connection(args.host, args.port, args.path, args.deflate),
            args.host,
            args.port,
        )
        await connection.opened
        return connection

    first = await open_one()
    connections = [first]
    gate = asyncio.Semaphore(concurrency)

    async def gated():
        async with gate:
            return await open_one()

    if count > 1:
        connections += await asyncio.gather(*(gated() for _ in range(count - 1)))
    return connections


async def close_connections(connections, wait=2.0):
    for connection in connections:
        connection.close()
    pending = [c.closed for c in connections if not c.closed.done()]
    if pending:
        await asyncio.wait(pending, timeout=wait)
    for connection in connections:
        if connection.transport is not None and not connection.closed.done():
            connection.transport.abort()


def percentile(ordered, fraction):
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return None
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def run_echo(args):
    started = time.perf_counter()
    connections = await open_connections(args, args.connections)
    open_seconds = time.perf_counter() - started
    payload = b"x" * args.size
    latencies = []
    cpu_before = os.times()
    began = time.perf_counter()
    for connection in connections:
        connection.start_echo(payload, args.messages, latencies)
    await asyncio.gather(*(c.finished for c in connections))
    elapsed = time.perf_counter() - began
    cpu_after = os.times()
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    await close_connections(connections)
    latencies.sort()
    round_trips = len(latencies)

    def ms(value):
        return None if value is None else value * 1000.0

    emit(
        {
            "supported": True,
            "connections": len(connections),
            "messages": args.messages,
            "size": args.size,
            "round_trips": round_trips,
            "seconds": elapsed,
            "round_trips_per_s": round_trips / elapsed if elapsed else None,
            "p50_ms": ms(percentile(latencies, 0.50)),
            "p99_ms": ms(percentile(latencies, 0.99)),
            "max_ms": ms(latencies[-1] if latencies else None),
            "open_seconds": open_seconds,
            "client_cpu_s": cpu,
            "client_cpu_pct": 100.0 * cpu / elapsed if elapsed else None,
        }
    )


async def run_idle(args):
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    connections = await open_connections(args, args.connections)
    if args.deflate:
        # One message each, so that the server's zlib state exists.
        chat = b'{"type": "chat.message", "text": "hello there"}'
        for connection in connections:
            connection.start_echo(chat, 1, [])
        await asyncio.gather(*(c.finished for c in connections))
    emit(
        {
            "event": "ready",
            "supported": True,
            "connections": len(connections),
            "open_seconds": time.perf_counter() - started,
        }
    )
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(reader.read(), timeout=args.hold)
    dropped = sum(1 for c in connections if c.closed.done())
    await close_connections(connections)
    emit({"event": "done", "dropped": dropped})


async def main_async(args):
    runner = run_echo if args.mode == "echo" else run_idle
    try:
        await asyncio.wait_for(runner(args), timeout=args.timeout)
    except HandshakeRefused as exc:
        emit(
            {
                "event": "unsupported",
                "supported": False,
                "status": exc.status,
                "reason": exc.reason,
            }
        )
        return 0
    except asyncio.TimeoutError:
        emit({"event": "error", "error": f"timed out after {args.timeout} s"})
        return 1
    except (OSError, ValueError) as exc:
        emit({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="WebSocket load client")
    parser.add_argument("mode", choices=("echo", "idle"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=32, help="bytes per message")
    parser.add_argument(
        "--hold", type=float, default=60.0, help="idle: longest hold in seconds"
    )
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--deflate", action="store_true", help="offer permessage-deflate"
    )
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    args = parser.parse_args(argv)
    if not ipaddress.ip_address(args.host).is_loopback:
        parser.error("--host must be a loopback address")
    if args.connections < 1 or args.messages < 1:
        parser.error("--connections and --messages must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if args.loop == "uvloop":
                raise
        else:
            return uvloop.run(main_async(args))
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
