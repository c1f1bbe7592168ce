"""Access logging for daphne.

``AccessLogGenerator`` receives the server's per-request events and writes
them to a text stream as Common Log Format-style lines, one per event.
"""

from __future__ import annotations

import datetime
from typing import Any, TextIO

__all__ = ["AccessLogGenerator", "describe_client", "format_client"]

# Month names are spelled out here rather than using strftime's %b, which
# follows the process locale.
_MONTHS = (
    "",
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)

_WEBSOCKET_VERBS = {
    "connecting": "WSCONNECTING",
    "connected": "WSCONNECT",
    "rejected": "WSREJECT",
    "disconnected": "WSDISCONNECT",
}


def format_client(client: list | None) -> str | None:
    """A scope's ``client`` as log lines show it: ``host:port``,
    ``[host]:port`` for IPv6, None when unknown (UNIX sockets)."""
    if client is None:
        return None
    if ":" in client[0]:
        return f"[{client[0]}]:{client[1]}"
    return f"{client[0]}:{client[1]}"


def describe_client(client: list | None) -> str:
    """A scope's ``client`` for log messages: as :func:`format_client`, or
    ``a UNIX socket peer`` when there is no address."""
    return format_client(client) or "a UNIX socket peer"


class AccessLogGenerator:
    """Writes one access log line per server event to ``stream``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        """Log a server event; unknown protocols and actions are ignored."""
        if protocol == "http":
            if action == "complete":
                self.write_entry(
                    host=details.get("client"),
                    date=datetime.datetime.now(),
                    request=(
                        f"{details['method']} {details['path']} {details['protocol']}"
                        if "protocol" in details
                        else f"{details['method']} {details['path']}"
                    ),
                    status=details.get("status"),
                    length=details.get("size"),
                )
        elif protocol == "websocket":
            verb = _WEBSOCKET_VERBS.get(action)
            if verb is not None:
                self.write_entry(
                    host=details.get("client"),
                    date=datetime.datetime.now(),
                    request=f"{verb} {details['path']}",
                )

    def write_entry(
        self,
        host: str | None,
        date: datetime.datetime,
        request: str,
        status: int | None = None,
        length: int | None = None,
        ident: str | None = None,
        user: str | None = None,
    ) -> None:
        """Format one log line and write it to the stream, then flush."""
        if not request.isprintable():
            # Keep one event on one line whatever the client put in the path.
            request = request.encode("unicode_escape").decode("ascii")
        self.stream.write(
            f"{host or '-'} {ident or '-'} {user or '-'} "
            f"[{date.day:02d}/{_MONTHS[date.month]}/{date.year:04d}:"
            f"{date.hour:02d}:{date.minute:02d}:{date.second:02d}] "
            f'"{request}" {"-" if status is None else status} {length or "-"}\n'
        )
        self.stream.flush()
