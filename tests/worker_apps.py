"""Applications for the ``--workers`` tests (tests/test_workers.py).

``application`` answers every request with the serving process's PID as JSON.
``/hold?dir=D&name=N`` first writes ``D/started-N`` (holding the PID), then
waits until ``D/release`` exists: the test decides when a request ends, so
nothing depends on how long anything takes. ``&block=1`` waits with
``time.sleep``, so the worker can serve nothing else meanwhile. ``/busy?ms=M``
keeps its worker busy (``time.sleep``) for M milliseconds, as work on the
CPU would. Lifespan
startup leaves a file behind too (:func:`lifespan`). With a ``broken`` file
in ``$WORKER_TEST_DIR``, the module fails to import (a bad deployment).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from tests.apps import query

POLL = 0.01

if (Path(os.environ.get("WORKER_TEST_DIR", "/nonexistent")) / "broken").exists():
    raise RuntimeError("broken on purpose (the test wrote the 'broken' file)")


async def lifespan(receive, send) -> None:
    """Startup writes ``$WORKER_TEST_DIR/lifespan-PID``, when that is set."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            folder = os.environ.get("WORKER_TEST_DIR")
            if folder:
                (Path(folder) / f"lifespan-{os.getpid()}").touch()
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    params = query(scope)
    if scope["path"] == "/hold":
        folder = Path(params["dir"])
        (folder / f"started-{params['name']}").write_text(str(os.getpid()))
        while not (folder / "release").exists():
            if params.get("block"):
                time.sleep(POLL)
            else:
                await asyncio.sleep(POLL)
    elif scope["path"] == "/busy":
        time.sleep(int(params["ms"]) / 1000)
    body = json.dumps({"pid": os.getpid()}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
