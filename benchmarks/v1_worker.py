"""A minimal ASGI v1 worker process, in the manner of Channels 1.x's
``runworker``, for Daphne 1.4.2's Redis row of the channel-layer sections.

``python v1_worker.py MODULE:LAYER`` (run in ``benchmarks/``, in the Daphne
1.4.2 virtualenv) imports the layer and, until SIGTERM or SIGINT, receives
from the standard v1 channels (``http.request``, ``websocket.connect``, ...)
with ``receive(channels, block=True)`` and answers each message on its
``reply_channel`` with :func:`v1_answers.handle`: the same answers as every
other channel-layer row. A layer whose blocking receive returns at once with
nothing (asgiref 1.1's in-memory one) gets a short sleep instead of a spin.

Standard library plus the layer's package; no Django, no Channels.
"""

import argparse
import importlib
import signal
import sys
import time

from v1_answers import CHANNELS, handle

IDLE_SLEEP = 0.001  # after an empty receive (a layer that does not block)
ERROR_SLEEP = 0.1  # after a failed receive or answer


def load(target):
    module_name, _, attribute = target.partition(":")
    if not attribute:
        sys.exit(f"v1_worker: {target!r} is not MODULE:ATTRIBUTE")
    return getattr(importlib.import_module(module_name), attribute)


def stop(signum, frame):
    raise SystemExit(0)


def run(layer):
    # Stop at once, even in the middle of a blocking receive (asgi_redis
    # blocks for up to 5 s): the exception unwinds out of it.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        try:
            channel, message = layer.receive(CHANNELS, block=True)
            if channel is None:
                time.sleep(IDLE_SLEEP)
                continue
            handle(layer, channel, message)
        except Exception as exc:  # keep serving; the log shows what went wrong
            print(f"v1_worker: error: {exc!r}", file=sys.stderr, flush=True)
            time.sleep(ERROR_SLEEP)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layer", help="the channel layer, as MODULE:ATTRIBUTE")
    args = parser.parse_args()
    sys.path.insert(0, ".")
    run(load(args.layer))


if __name__ == "__main__":
    main()
