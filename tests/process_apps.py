"""An application that says which process serves it: for the tests of the
processes around the server (``--reload``, systemd socket activation)."""

from __future__ import annotations

import json
import os

from daphne.reloader import CHILD_ENV
from daphne.systemd import VARIABLES

#: The variables a served application must not inherit.
HIDDEN = (*VARIABLES, CHILD_ENV)


async def application(scope: dict, receive, send) -> None:
    """Any HTTP request: its pid, and which of :data:`HIDDEN` it sees."""
    if scope["type"] != "http":
        return
    body = json.dumps(
        {
            "pid": os.getpid(),
            "environ": {
                name: os.environ[name] for name in HIDDEN if name in os.environ
            },
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
