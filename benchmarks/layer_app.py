"""The channel layer served in the benchmark's "channel layer mode" sections.

Channel-layer servers (the original Daphne 1.4.2, and daphne's own
channel-layer mode) are started as ``daphne ... layer_app:channel_layer``
with ``benchmarks/`` as their working directory. Importing this module:

* creates an in-memory ASGI v1 channel layer with a capacity of 100 messages
  per channel (``BENCH_LAYER_CAPACITY``), exposed as :data:`channel_layer`:
  daphne's own ``daphne.layers.InMemoryChannelLayer`` where it exists,
  otherwise asgiref 1.1's ``asgiref.inmemory.ChannelLayer`` (Daphne 1.4.2's
  virtualenv);
* starts ``BENCH_LAYER_WORKERS`` (default 2) daemon worker threads, in the
  server's own process (an in-memory layer cannot be shared across
  processes), that serve what ``app.py`` serves, ASGI v1 style, with
  :func:`v1_answers.handle` (the answers every channel-layer row gives).

About ``block=True``: asgiref 1.1.2's in-memory ``receive`` ignores ``block``
and always returns at once, ``(None, None)`` when nothing is queued. So after
an empty receive a worker sleeps, starting at 0.5 ms and doubling up to 5 ms
while nothing comes, instead of spinning on the CPU it shares with the server
(the server itself polls its reply channel every 50 ms when idle). A layer
whose ``receive(..., block=True)`` really blocks simply never gets there.

Standard library plus the layer's package; no Django, no Channels.
"""

import os
import sys
import threading
import time

from v1_answers import CHANNELS, handle

try:  # daphne's own layer (in daphne's virtualenv)
    from daphne.layers import InMemoryChannelLayer as LayerClass
except ImportError:
    try:  # the original, in Daphne 1.4.2's virtualenv
        from asgiref.inmemory import ChannelLayer as LayerClass
    except ImportError as exc:
        raise ImportError(
            "layer_app needs daphne.layers.InMemoryChannelLayer or asgiref 1.1's "
            "asgiref.inmemory.ChannelLayer (pip install 'asgiref==1.1.2')"
        ) from exc

CAPACITY = int(os.environ.get("BENCH_LAYER_CAPACITY", "100"))
WORKERS = int(os.environ.get("BENCH_LAYER_WORKERS", "2"))

IDLE_MIN = 0.0005  # seconds slept after the first empty receive
IDLE_MAX = 0.005  # ... doubling up to this while nothing comes

channel_layer = LayerClass(capacity=CAPACITY)


def work(layer):
    """One worker thread: receive, answer, and back off while idle."""
    idle = IDLE_MIN
    while True:
        try:
            channel, message = layer.receive(CHANNELS, block=True)
            if channel is None:
                time.sleep(idle)
                idle = min(idle * 2, IDLE_MAX)
                continue
            idle = IDLE_MIN
            handle(layer, channel, message)
        except Exception as exc:  # keep serving; the log shows what went wrong
            print(f"layer_app: worker error: {exc!r}", file=sys.stderr, flush=True)
            time.sleep(IDLE_MAX)


def start_workers(layer, count):
    threads = []
    for number in range(count):
        thread = threading.Thread(
            target=work, args=(layer,), name=f"layer-worker-{number}", daemon=True
        )
        thread.start()
        threads.append(thread)
    return threads


workers = start_workers(channel_layer, WORKERS)
